"""What `facetalk eval` shows: a terminal table, a JSON document and an openness plot."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from ..atomic import replacing
from ..errors import OutputError
from .run import EvalResult

# (key in ModeResult.metrics, column title, format); ratios read against 1, r against 1.
COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("openness_r", "r", "{:+.2f}"),
    ("openness_spread", "spread", "{:.2f}"),
    ("av_offset", "offset", "{:+.0f}"),
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
# Per-clip summary of a suite: the product's figures and the baselines' r beside them.
SUITE_COLUMNS: tuple[tuple[str, str, str, str], ...] = (
    ("photo", "openness_r", "r photo", "{:+.2f}"),
    ("video", "openness_r", "r video", "{:+.2f}"),
    ("energy", "openness_r", "r energy", "{:+.2f}"),
    ("frozen", "openness_r", "r frozen", "{:+.2f}"),
    ("video", "openness_spread", "spread video", "{:.2f}"),
    ("frozen", "openness_spread", "spread frozen", "{:.2f}"),
    ("video", "av_offset", "offset", "{:+.0f}"),
    ("video", "lmd", "LMD video", "{:.3f}"),
    ("frozen", "lmd", "LMD frozen", "{:.3f}"),
    ("video", "identity_mean", "id video", "{:.3f}"),
    ("photo", "identity_mean", "id photo", "{:.3f}"),
    ("video", "sharpness_ratio", "sharp", "{:.2f}"),
    ("video", "jitter_ratio", "jitter", "{:.2f}"),
    ("video", "psnr", "PSNR", "{:.1f}"),
    # mode identity against the zero-shot photo (columns appear when identity ran)
    ("identity", "openness_r", "r identity", "{:+.2f}"),
    ("identity", "openness_spread", "spread identity", "{:.2f}"),
    ("photo", "lmd", "LMD photo", "{:.3f}"),
    ("identity", "lmd", "LMD identity", "{:.3f}"),
    ("photo", "sharpness_ratio", "sharp photo", "{:.2f}"),
    ("identity", "sharpness_ratio", "sharp identity", "{:.2f}"),
    ("identity", "identity_mean", "id identity", "{:.3f}"),
    ("identity-video", "lmd", "LMD identity-video", "{:.3f}"),
    ("identity-video", "sharpness_ratio", "sharp identity-video", "{:.2f}"),
    ("identity-video", "openness_r", "r identity-video", "{:+.2f}"),
)


def _fmt(value: float | None, fmt: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if math.isinf(value):
        return "inf"
    return fmt.format(value)


def _grid(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    line = lambda cells: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))  # noqa: E731
    return "\n".join([line(header), "  ".join("-" * w for w in widths), *[line(r) for r in rows]])


def format_table(result: EvalResult) -> str:
    """Rows = the real clip and each mode, columns = metrics; '-' where not measurable."""
    rows = [["real", *[_fmt(result.real_metrics.get(k), f) for k, _, f in COLUMNS], "-"]]
    for mode, res in result.modes.items():
        if res.error:
            rows.append([mode, f"failed: {res.error}"] + [""] * len(COLUMNS))
            continue
        rtf = res.render_seconds / (result.real.n_frames / result.real.fps)
        rows.append([mode, *[_fmt(res.metrics.get(k), f) for k, _, f in COLUMNS], f"{rtf:.2f}"])
    for mode, why in result.skipped.items():
        rows.append([mode, why] + [""] * len(COLUMNS))
    header = ["mode", *[title for _, title, _ in COLUMNS], "render s/s"]
    failed = [r for r in rows if len(r) > 1 and (r[1].startswith("failed") or r[1] in result.skipped.values())]
    body = _grid(header, [r for r in rows if r not in failed])
    notes = [f"{r[0]}: {r[1]}" for r in failed]
    r = result.real
    head = (f"{r.source.name}: {r.n_frames} frames, {r.width}x{r.height}, {r.fps:.2f} fps, "
            f"lip-sync from {'transcript' if result.transcript else 'audio only'}")
    if result.identity:
        b = result.identity
        head += (f"; identity {b['ref']} learnt from the first {b['train_seconds']:.1f} s "
                 f"({b['frames_used']} frames used, {b['seconds']:.1f} s), every mode measured after it")
    return "\n".join([head, body, *notes])


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
    """PNG of mouth openness over time: the real clip in black, one line per mode."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    p = Path(path)
    if not p.absolute().parent.is_dir():
        raise OutputError(f"cannot write {p}: folder {p.absolute().parent} does not exist")
    r = result.real
    seconds = r.n_frames / r.fps
    fig, ax = plt.subplots(figsize=(max(8.0, min(24.0, seconds * 0.8)), 3.6), dpi=100)
    t = np.arange(r.n_frames) / r.fps
    ax.plot(t, r.openness, color="black", lw=2.2, label="real")
    colours = {"photo": "tab:orange", "video": "tab:blue", "identity": "tab:purple", "identity-video": "tab:pink",
               "energy": "tab:green", "frozen": "tab:grey"}
    for mode, res in result.modes.items():
        if res.error or len(res.openness) == 0:
            continue
        r_txt = _fmt(res.metrics.get("openness_r"), "{:+.2f}")
        ax.plot(np.arange(len(res.openness)) / r.fps, res.openness, lw=1.2, color=colours.get(mode),
                label=f"{mode} (r {r_txt})")
    ax.set_xlabel("seconds")
    ax.set_ylabel("mouth openness (inner-lip gap / IOD)")
    ax.set_title(f"{r.source.name}: generated vs real mouth openness")
    ax.set_xlim(0, seconds)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right", fontsize=8, ncol=5)
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


def format_suite(rows: list[tuple[str, dict[str, float] | None, str | None]]) -> str:
    """One line per clip (name, summary figures or its error) and the mean of each column
    over the clips that have it. Columns no clip has a figure for are left out."""
    cols = [c for c in SUITE_COLUMNS if any(row is not None and np.isfinite(row[c[2]]) for _, row, _ in rows)]
    header = ["clip", *[t for _, _, t, _ in cols]]
    lines, notes = [], []
    for name, row, err in rows:
        if row is None:
            notes.append(f"{name}: failed: {err}")
            continue
        lines.append([name, *[_fmt(row[t], f) for _, _, t, f in cols]])
    means = []
    for _, _, t, f in cols:
        vals = [row[t] for _, row, _ in rows if row is not None and np.isfinite(row[t])]
        means.append(_fmt(float(np.mean(vals)), f) if vals else "-")
    return "\n".join([_grid(header, [*lines, ["mean", *means]]), *notes])
