"""What `facetalk eval` shows: a terminal table, a JSON document and an openness plot."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from ..atomic import replacing
from ..errors import OutputError
from .run import EvalResult

# Lip sync, per mode: Pearson r of the re-detected mouth opening and width, generated vs
# real, at lag 0 ("r0": what a viewer sees) beside the best r within +-max_lag frames
# ("r best", at "lag" frames, + = generated late). r best well above r0 is a mouth that
# follows the speech out of step: the viewer sees r0.
# (key in ModeResult.metrics, column title, format); ratios read against 1, r against 1.
LIP_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("openness_r", "r0 open", "{:+.2f}"),
    ("offset_r", "r best open", "{:+.2f}"),
    ("av_offset", "lag open", "{:+.0f}"),
    ("width_r", "r0 width", "{:+.2f}"),
    ("width_offset_r", "r best width", "{:+.2f}"),
    ("width_offset", "lag width", "{:+.0f}"),
    ("openness_spread", "spread", "{:.2f}"),
)
# Likeness and picture quality, per mode.
QUALITY_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("lmd", "LMD", "{:.3f}"),
    ("identity_mean", "id mean", "{:.3f}"),
    ("identity_max", "id max", "{:.3f}"),
    ("identity_drift", "id drift", "{:+.3f}"),
    ("sharpness_ratio", "sharp", "{:.2f}"),
    ("jitter_ratio", "jitter", "{:.2f}"),
    ("psnr", "PSNR", "{:.1f}"),
    ("ssim", "SSIM", "{:.3f}"),
    ("faces", "faces", "{:.0%}"),
)
COLUMNS: tuple[tuple[str, str, str], ...] = LIP_COLUMNS + QUALITY_COLUMNS
LIP_KEYS = frozenset(k for k, _, _ in LIP_COLUMNS)
LIP_NOTE = ("r0: r with the real mouth at lag 0 (what a viewer sees); r best: the best r within +-{max_lag} frames,"
            " at lag (+ = generated late)\nopen: inner-lip gap, width: corner to corner, both over inter-ocular"
            " distance; spread: opening sd over the real one's (1 = moves as much)")
# Per-clip summary of a suite. Lip-sync figures of every mode (shown as one row per clip
# and mode, so the modes read side by side), titled "<lip column title> <mode>":
SUITE_LIP_MODES: tuple[str, ...] = ("photo", "rules", "video", "identity", "identity-video", "energy", "frozen")
SUITE_COLUMNS: tuple[tuple[str, str, str, str], ...] = (
    *((mode, key, f"{title} {mode}", fmt) for mode in SUITE_LIP_MODES for key, title, fmt in LIP_COLUMNS),
    # likeness and quality: the product's figures and the baselines' beside them
    ("video", "lmd", "LMD video", "{:.3f}"),
    ("frozen", "lmd", "LMD frozen", "{:.3f}"),
    ("video", "identity_mean", "id video", "{:.3f}"),
    ("photo", "identity_mean", "id photo", "{:.3f}"),
    ("video", "sharpness_ratio", "sharp", "{:.2f}"),
    ("video", "jitter_ratio", "jitter", "{:.2f}"),
    ("video", "psnr", "PSNR", "{:.1f}"),
    # mode identity against the zero-shot photo (columns appear when identity ran)
    ("photo", "lmd", "LMD photo", "{:.3f}"),
    ("identity", "lmd", "LMD identity", "{:.3f}"),
    ("photo", "sharpness_ratio", "sharp photo", "{:.2f}"),
    ("identity", "sharpness_ratio", "sharp identity", "{:.2f}"),
    ("identity", "identity_mean", "id identity", "{:.3f}"),
    ("identity-video", "lmd", "LMD identity-video", "{:.3f}"),
    ("identity-video", "sharpness_ratio", "sharp identity-video", "{:.2f}"),
)


def _fmt(value: float | None, fmt: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if math.isinf(value):
        return "inf"
    return fmt.format(value)


def _grid(header: list[str], rows: list[list[str]], left: int = 1) -> str:
    """Text table; the first `left` columns (names) flush left, the figures flush right."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    line = lambda cells: "  ".join(c.ljust(w) if i < left else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))  # noqa: E731
    return "\n".join([line(header), "  ".join("-" * w for w in widths), *[line(r) for r in rows]])


def _mode_rows(result: EvalResult, columns: tuple[tuple[str, str, str], ...], rtf: bool) -> list[list[str]]:
    """The real clip's row and one per mode that has numbers; rtf adds render s/s."""
    rows = [["real", *[_fmt(result.real_metrics.get(k), f) for k, _, f in columns], *(["-"] if rtf else [])]]
    for mode, res in result.modes.items():
        if res.error:
            continue
        cells = [mode, *[_fmt(res.metrics.get(k), f) for k, _, f in columns]]
        if rtf:
            cells.append(f"{res.render_seconds / (result.real.n_frames / result.real.fps):.2f}")
        rows.append(cells)
    return rows


def format_table(result: EvalResult) -> str:
    """Rows = the real clip and each mode; a lip-sync table (LIP_COLUMNS) over a likeness
    and quality one (QUALITY_COLUMNS); '-' where not measurable. Failed and skipped modes
    are listed under them with why."""
    lips = _grid(["mode", *[t for _, t, _ in LIP_COLUMNS]], _mode_rows(result, LIP_COLUMNS, rtf=False))
    quality = _grid(["mode", *[t for _, t, _ in QUALITY_COLUMNS], "render s/s"],
                    _mode_rows(result, QUALITY_COLUMNS, rtf=True))
    notes = [f"{mode}: failed: {res.error}" for mode, res in result.modes.items() if res.error]
    notes += [f"{mode}: {why}" for mode, why in result.skipped.items()]
    r = result.real
    head = (f"{r.source.name}: {r.n_frames} frames, {r.width}x{r.height}, {r.fps:.2f} fps, "
            f"lip-sync from {'transcript' if result.transcript else 'audio only'}")
    if result.identity:
        b = result.identity
        head += (f"; identity {b['ref']} learnt from the first {b['train_seconds']:.1f} s "
                 f"({b['frames_used']} frames used, {b['seconds']:.1f} s), every mode measured after it")
    return "\n".join([head, "", "lip sync", lips, LIP_NOTE.format(max_lag=result.max_lag), "",
                      "likeness and quality", quality, *notes])


def _clean(value):
    """JSON-safe: NaN -> null, inf -> "inf", numpy -> Python."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, np.ndarray):
        return _clean(value.tolist())
    if isinstance(value, (np.floating, float)):
        v = float(value)
        return None if math.isnan(v) else ("inf" if v == math.inf else "-inf" if v == -math.inf else v)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, Path):
        return str(value)
    return value


def to_dict(result: EvalResult) -> dict:
    """The whole evaluation as plain JSON data; openness curves are per frame (NaN: null)."""
    r = result.real
    return _clean({
        "clip": r.source, "evaluated": r.video if r.video != r.source else r.source,
        "frames": r.n_frames, "fps": r.fps, "width": r.width, "height": r.height,
        "seconds": r.n_frames / r.fps, "transcript": result.transcript,
        "landmarks": "raw per-frame dlib landmarks (face.track.track_faces, smoothing off), same on both sides",
        "wall_seconds": result.seconds,
        "max_lag": result.max_lag,
        "real": {"metrics": result.real_metrics, "openness": np.round(r.openness, 4)},
        "modes": {
            m: {"metrics": res.metrics, "error": res.error, "render_seconds": res.render_seconds,
                "timings": res.timings, "speech_method": res.speech_method,
                "openness": np.round(res.openness, 4)}
            for m, res in result.modes.items()
        },
        "skipped": result.skipped,
        "identity": result.identity,
    })


def write_json(data: dict | list, path: str | Path) -> Path:
    """Write JSON atomically; OutputError if the folder is missing or read-only."""
    p = Path(path)
    if not p.absolute().parent.is_dir():
        raise OutputError(f"cannot write {p}: folder {p.absolute().parent} does not exist")
    try:
        with replacing(p) as tmp:
            tmp.write_text(json.dumps(data, indent=1, allow_nan=False), encoding="utf-8")
    except OSError as e:
        raise OutputError(f"cannot write {p}: {e.strerror} (choose another path)") from None
    return p


def plot_openness(result: EvalResult, path: str | Path) -> Path:
    """PNG of mouth openness over time: the real clip in black, one line per mode,
    labelled with its opening r0 and r best (at its lag) and its width r0."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    p = Path(path)
    if not p.absolute().parent.is_dir():
        raise OutputError(f"cannot write {p}: folder {p.absolute().parent} does not exist")
    r = result.real
    seconds = r.n_frames / r.fps
    fig, ax = plt.subplots(figsize=(max(8.0, min(24.0, seconds * 0.8)), 4.6), dpi=100)
    t = np.arange(r.n_frames) / r.fps
    ax.plot(t, r.openness, color="black", lw=2.2, label="real")
    colours = {"photo": "tab:orange", "rules": "tab:red", "video": "tab:blue", "identity": "tab:purple",
               "identity-video": "tab:pink", "energy": "tab:green", "frozen": "tab:grey"}
    for mode, res in result.modes.items():
        if res.error or len(res.openness) == 0:
            continue
        m = res.metrics
        label = (f"{mode}: r0 {_fmt(m.get('openness_r'), '{:+.2f}')}, r best {_fmt(m.get('offset_r'), '{:+.2f}')}"
                 f" at lag {_fmt(m.get('av_offset'), '{:+.0f}')}, r0 width {_fmt(m.get('width_r'), '{:+.2f}')}")
        ax.plot(np.arange(len(res.openness)) / r.fps, res.openness, lw=1.2, color=colours.get(mode), label=label)
    ax.set_xlabel("seconds")
    ax.set_ylabel("mouth openness (inner-lip gap / IOD)")
    ax.set_title(f"{r.source.name}: generated vs real mouth openness\n"
                 f"r0: r at lag 0 (what a viewer sees); r best: best r within ±{result.max_lag} frames, "
                 f"at lag (+ = generated late)", fontsize=9)
    ax.set_xlim(0, seconds)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), fontsize=7, ncol=2, frameon=False)
    fig.tight_layout()
    try:
        fig.savefig(p)
    except OSError as e:
        raise OutputError(f"cannot write {p}: {e.strerror} (choose another path)") from None
    finally:
        plt.close(fig)
    return p


def suite_row(result: EvalResult) -> dict[str, float]:
    """The summary figures of one clip, keyed by SUITE_COLUMNS title."""
    row = {}
    for mode, key, title, _ in SUITE_COLUMNS:
        res = result.modes.get(mode)
        row[title] = res.metrics.get(key, float("nan")) if res is not None and not res.error else float("nan")
    return row


def _mean_cell(rows: list[tuple[str, dict[str, float] | None, str | None]], title: str, fmt: str) -> str:
    vals = [row[title] for _, row, _ in rows if row is not None and np.isfinite(row.get(title, np.nan))]
    return _fmt(float(np.mean(vals)), fmt) if vals else "-"


def format_suite(rows: list[tuple[str, dict[str, float] | None, str | None]], max_lag: int = 10) -> str:
    """Lip sync as one line per clip and mode (LIP_COLUMNS), then likeness and quality as
    one line per clip, each closed by the mean over the clips that have a figure; clips
    that failed are listed with their error. Modes and columns no clip has a figure for
    are left out. rows: (clip name, suite_row or None, error or None)."""
    def has(title: str) -> bool:
        return any(row is not None and np.isfinite(row.get(title, np.nan)) for _, row, _ in rows)

    title = {(m, k): t for m, k, t, _ in SUITE_COLUMNS if k in LIP_KEYS}
    modes = [m for m in SUITE_LIP_MODES if any(has(title[m, k]) for k, _, _ in LIP_COLUMNS)]
    lip_lines = []
    for name, row, _ in [*rows, ("mean", None, None)]:
        if name != "mean" and row is None:
            continue
        for i, mode in enumerate(modes):
            cells = [name if i == 0 else "", mode]
            for key, _, fmt in LIP_COLUMNS:
                t = title[mode, key]
                cells.append(_mean_cell(rows, t, fmt) if row is None else _fmt(row.get(t), fmt))
            lip_lines.append(cells)
    parts = []
    if modes:
        parts += ["lip sync", _grid(["clip", "mode", *[t for _, t, _ in LIP_COLUMNS]], lip_lines, left=2),
                  LIP_NOTE.format(max_lag=max_lag), ""]
    cols = [c for c in SUITE_COLUMNS if c[1] not in LIP_KEYS and has(c[2])]
    lines = [[name, *[_fmt(row[t], f) for _, _, t, f in cols]] for name, row, _ in rows if row is not None]
    means = [_mean_cell(rows, t, f) for _, _, t, f in cols]
    parts += ["likeness and quality", _grid(["clip", *[t for _, _, t, _ in cols]], [*lines, ["mean", *means]])]
    parts += [f"{name}: failed: {err}" for name, row, err in rows if row is None]
    return "\n".join(parts)
