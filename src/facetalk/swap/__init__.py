"""Face swap: put a source person's face into a target video or photo, driven by the
target's landmarks (facetalk swap).

    from facetalk.swap import SwapRequest, swap
    result = swap(SwapRequest(sources=["a.jpg"], target="b.mp4", output="out.mp4"))

The names load on first use, so importing the package (the CLI does) stays light.
"""

_LAZY = {"SwapRequest": "api", "SwapResult": "api", "swap": "api"}
__all__ = list(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
