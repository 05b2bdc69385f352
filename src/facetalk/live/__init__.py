"""Live: a talking face that speaks as the sound arrives (see session.py).

prepare_face -> LiveFace (once per viewer); LiveSession(face, LiveOptions) takes speech in
chunks and gives LiveFrame objects a fixed delay behind it; run.run_file streams a file
through a session (the `facetalk live` command, the benchmark and the tests).
"""

from .face import LiveFace, prepare_face
from .session import LEVELS, MIN_DELAY_S, LiveFrame, LiveOptions, LiveSession, Pacer
from .run import LiveResult, feed_file, run_file

__all__ = ["LEVELS", "MIN_DELAY_S", "LiveFace", "LiveFrame", "LiveOptions", "LiveResult", "LiveSession", "Pacer",
           "feed_file", "prepare_face", "run_file"]
