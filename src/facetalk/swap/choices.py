"""Allowed option values, importable without OpenCV (the CLI's --help stays light)."""

COLOR_MODES = ("none", "mean", "histogram")
BLEND_MODES = ("feather", "poisson")
TARGET_FACES = ("largest", "all")  # or a face index
