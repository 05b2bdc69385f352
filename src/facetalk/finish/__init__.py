"""Finishing stages: colour grading, face detail, provenance label.

    from facetalk.finish import Finisher, FinishOptions, provenance_metadata

    finisher = Finisher(FinishOptions(lut="look.cube", enhance=True), width, height)
    frame = finisher.apply(frame, landmarks, k)          # per frame, after the composite
    tags = provenance_metadata(renderer="warp", job_id=job, label=options.label_description(),
                               finish=options.describe())  # VideoWriter(metadata=tags)

Order per frame: enhance (face detail, facetalk.finish.enhance) -> enhancer (an ONNX face
restoration model, facetalk.finish.restore) -> LUT (facetalk.finish.lut) -> the visible
label (facetalk.finish.label), last so no grade tints it. The names below load on first
use, so importing the package stays light.
"""

_LAZY = {
    "Finisher": "chain",
    "FinishOptions": "options",
    "LABEL_CORNERS": "options",
    "provenance_metadata": "provenance",
}
__all__ = list(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
