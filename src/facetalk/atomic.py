"""Files that appear whole or not at all."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def replacing(path: Path, keep_suffix: bool = False) -> Iterator[Path]:
    """A hidden temporary name beside path (.NAME.<random>.part), to write to; renamed onto
    path when the block ends without an exception, removed when it raises. An OSError
    (disk full, no permission) propagates for the caller to name the file and the fix.
    keep_suffix: .STEM.<random>.part.SUFFIX instead, for writers that go by the suffix
    (and the name jobs.outputs.clean_partials knows for videos).

        with replacing(out) as tmp:
            tmp.write_text(text)
    """
    path = Path(path)
    token = secrets.token_hex(4)
    name = f".{path.stem}.{token}.part{path.suffix}" if keep_suffix else f".{path.name}.{token}.part"
    tmp = path.with_name(name)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)  # gone already after the rename
