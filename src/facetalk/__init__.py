"""facetalk: local-first talking-head video from a photo or video and speech."""

__version__ = "0.1.0"
