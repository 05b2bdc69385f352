"""Where facetalk keeps what it learns (identities): $FACETALK_HOME, else the user data folder."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path


def facetalk_home(environ: Mapping[str, str] | None = None) -> Path:
    """$FACETALK_HOME when set and not empty, else platformdirs' user data folder for facetalk.

    Read on every call (no caching), so a test or a second run in one process can point
    facetalk elsewhere by changing the environment.
    """
    env = os.environ if environ is None else environ
    value = env.get("FACETALK_HOME", "")
    if value:
        return Path(value).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("facetalk", appauthor=False))
