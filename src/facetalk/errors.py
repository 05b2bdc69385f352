"""Errors a user can cause. The CLI prints their one-line message and exits with code 2."""

from __future__ import annotations


class FacetalkError(Exception):
    """Base of every error caused by input, options or the environment (never a bug).

    The message is one line that names the file or option at fault and, where there
    is one, the fix.
    """

    exit_code = 2


class InputError(FacetalkError):
    """A file given by the user is missing, unreadable, truncated or of an unsupported kind."""


class NoFaceError(FacetalkError):
    """No usable face where one is required (a photo, the reference of a render)."""


class SpeechError(FacetalkError):
    """Audio or transcript that cannot drive lip-sync (zero length, undecodable words)."""


class OutputError(FacetalkError):
    """The output cannot be written (folder missing or read-only, disk full)."""


class Cancelled(FacetalkError):
    """The run was cancelled through its context."""


class IdentityError(FacetalkError):
    """An identity that is unknown, or a version that is broken on disk (a missing,
    renamed, changed or unreadable file, a schema this facetalk does not read)."""
