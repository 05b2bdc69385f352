"""Files that appear whole or not at all."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """A hidden temporary name beside path (.NAME.<random>.part), to write to; renamed onto
    path when the block ends without an exception, removed when it raises. An OSError
    (disk full, no permission) propagates for the caller to name the file and the fix.

        with replacing(out) as tmp:
            tmp.write_text(text)
    """
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.part")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)  # gone already after the rename
