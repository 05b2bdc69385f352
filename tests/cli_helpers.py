"""Running the `facetalk` command in-process and checking its one-line errors."""

from __future__ import annotations

from facetalk.cli import main


def run_cli(capsys, *args) -> tuple[int, str, str]:
    """facetalk ARGS in this process: (exit code, stdout, stderr)."""
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, err: str, *words: str) -> str:
    """Exit code 2 and exactly one line on stderr, no traceback, holding every word
    (case-insensitive); returns the line."""
    assert code == 2, err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line, got: {err!r}"
    assert lines[0].startswith("facetalk: error:") and "Traceback" not in err
    for w in words:
        assert w.lower() in lines[0].lower(), f"{w!r} not in {lines[0]!r}"
    return lines[0]
