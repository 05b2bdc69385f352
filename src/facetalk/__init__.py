"""facetalk: local-first talking-head video from a photo or video and speech.

    from facetalk import RenderRequest, render
    result = render(RenderRequest(face="portrait.jpg", audio="speech.wav", output="out.mp4"))

The names below load on first use, so `import facetalk` (and `facetalk --help`) stays
light; nothing loads a model at import time.
"""

__version__ = "0.1.0"

_LAZY = {
    "render": "pipeline",
    "RenderRequest": "pipeline",
    "RenderResult": "pipeline",
    "RunContext": "context",
    "FacetalkError": "errors",
    "InputError": "errors",
    "NoFaceError": "errors",
    "OutputError": "errors",
    "SpeechError": "errors",
    "Cancelled": "errors",
}
__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'facetalk' has no attribute {name!r}")
