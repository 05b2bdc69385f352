"""The lip model without torch: speech log-mel -> the speaker-normalised mouth opening
and width, 100 rows a second, in plain numpy.

The network is a stack of causal dilated 1-D convolutions (lips.train builds the same
stack in torch). Its output for time t is read `lookahead` rows later, so each prediction
sees a fixed span of past speech and `lookahead` rows (lookahead * 10 ms) of future speech.
Input rows are first normalised by a running per-band mean (a prior from the training
data, then the recording's own mean over its last few seconds): gain and microphone
colour do not reach the network, and the same recursion runs on a whole file or a stream.
One code path serves both: a whole file is a stream fed in blocks, so memory stays flat
with the length of the audio and a stream gives exactly the file's result.

On disk a model is a folder: config.json (architecture, normalisation, training data,
metrics, and the sha256 and size of the weights) + model.safetensors. Loading checks
both and refuses anything else in one line (LipModelError).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..errors import FacetalkError
from ..neural.check import sha256_file  # noqa: F401 - also what lips.train and the tests use
from .features import N_MELS

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
ARCHITECTURE = "facetalk-lips-tcn"
OUTPUTS = ("open", "width")  # speaker-normalised: open 0 closed .. 1 the speaker's wide-open; width in SDs
DEFAULT_DIR = Path(__file__).parent / "default"
BLOCK = 2000  # rows per block of a whole file (20 s)


class LipModelError(FacetalkError):
    """A lip model folder that is missing, incomplete, altered or of another architecture."""


@dataclass(frozen=True)
class Arch:
    """The convolution stack: a first layer of width `first_kernel`, then one residual
    block per dilation (kernel `kernel`), then a 1x1 output layer."""

    n_mels: int = N_MELS
    channels: int = 48
    first_kernel: int = 5
    kernel: int = 3
    dilations: tuple[int, ...] = (1, 2, 4, 8, 16)
    lookahead: int = 24  # rows of future speech each prediction sees (10 ms each)

    @property
    def receptive(self) -> int:
        """Rows of input one output row depends on (past and future together)."""
        return 1 + (self.first_kernel - 1) + sum((self.kernel - 1) * d for d in self.dilations)

    def to_dict(self) -> dict:
        return {"n_mels": self.n_mels, "channels": self.channels, "first_kernel": self.first_kernel,
                "kernel": self.kernel, "dilations": list(self.dilations), "lookahead": self.lookahead}

    @classmethod
    def from_dict(cls, d: dict) -> "Arch":
        return cls(int(d["n_mels"]), int(d["channels"]), int(d["first_kernel"]), int(d["kernel"]),
                   tuple(int(x) for x in d["dilations"]), int(d["lookahead"]))


@dataclass(frozen=True)
class Norm:
    """Running mean of the input: starts at `mean` (the training data's) as if it had
    been seen for `prior` rows, then follows the recording, at most `memory` rows back."""

    mean: np.ndarray  # (n_mels,) float32
    scale: np.ndarray  # (n_mels,) float32: spread of the normalised training input
    prior: float = 50.0
    memory: float = 300.0

    def to_dict(self) -> dict:
        return {"mean": [round(float(x), 5) for x in self.mean], "scale": [round(float(x), 5) for x in self.scale],
                "prior": self.prior, "memory": self.memory}

    @classmethod
    def from_dict(cls, d: dict) -> "Norm":
        return cls(np.asarray(d["mean"], np.float32), np.asarray(d["scale"], np.float32),
                   float(d["prior"]), float(d["memory"]))


def running_normalise(mel: np.ndarray, norm: Norm, state: tuple[np.ndarray, float] | None = None
                      ) -> tuple[np.ndarray, tuple[np.ndarray, float]]:
    """(t, n_mels) log-mel -> normalised rows, and the state to carry into the next rows.

    mean += (x - mean) / weight, with weight growing by one per row from the prior up to
    the memory: a running mean that starts from the training data's and becomes an
    exponential average of the last `memory` rows. Once the weight is at its cap the
    recursion is a fixed one-pole filter, run by scipy's lfilter."""
    from scipy.signal import lfilter

    mean, weight = (norm.mean.astype(np.float64), norm.prior) if state is None else state
    mean = mean.copy()
    x = np.asarray(mel, dtype=np.float64)
    means = np.empty_like(x)
    i = 0
    while i < len(x) and weight + 1.0 < norm.memory:  # the growing part: at most `memory` rows
        weight += 1.0
        mean += (x[i] - mean) / weight
        means[i] = mean
        i += 1
    if i < len(x):
        weight = norm.memory
        a = 1.0 / weight
        means[i:], _ = lfilter([a], [1.0, -(1.0 - a)], x[i:], axis=0, zi=((1.0 - a) * mean)[None])
        mean = means[-1].copy()
    out = ((x - means) / norm.scale).astype(np.float32)
    return out, (mean, weight)


def _layers(arch: Arch) -> list[tuple[str, int, int]]:
    """(weight name prefix, kernel, dilation) of each convolution, in order."""
    out = [("inp", arch.first_kernel, 1)]
    out += [(f"blocks.{i}", arch.kernel, d) for i, d in enumerate(arch.dilations)]
    return out


def _gelu(x: np.ndarray) -> np.ndarray:
    # torch.nn.GELU(approximate="tanh"), as trained
    return 0.5 * x * (1.0 + np.tanh(0.7978845608028654 * (x + 0.044715 * x**3)))


class LipStream:
    """The model over a stream: push log-mel rows as they arrive, get predictions back.

    push(rows) returns the predictions that the rows so far make final: prediction for
    time t needs input up to t + lookahead, so the stream runs `lookahead` rows behind
    its input. finish() pads the end with silence and returns the rest. Every row in
    gives exactly one row out over the life of the stream, (k, 2) float32 each time.
    """

    def __init__(self, model: "LipModel", hidden: bool = False) -> None:
        self.model = model
        self.hidden = hidden
        self._norm_state: tuple[np.ndarray, float] | None = None
        arch = model.arch
        # per layer: the last (kernel - 1) * dilation input columns (causal history), zeros at start
        self._hist = [np.zeros(((k - 1) * d, model.width_in(name)), np.float32) for name, k, d in _layers(arch)]
        self._skip = arch.lookahead  # the first outputs are for times before 0
        self._floor: np.ndarray | None = None

    def push(self, mel: np.ndarray) -> np.ndarray:
        """Rows of log-mel in; the predictions they make final out, (k, 2) (or the hidden
        features, (k, channels), for a stream made with hidden=True)."""
        with self.model.one_blas_thread():
            return self._push(mel)

    def _push(self, mel: np.ndarray) -> np.ndarray:
        mel = np.asarray(mel, dtype=np.float32).reshape(-1, self.model.arch.n_mels)
        if len(mel):
            low = mel.min(axis=0)
            self._floor = low if self._floor is None else np.minimum(self._floor, low)
        x, self._norm_state = running_normalise(mel, self.model.norm, self._norm_state)
        y = self._forward(x)
        if self._skip:
            cut = min(self._skip, len(y))
            y, self._skip = y[cut:], self._skip - cut
        return y

    def finish(self) -> np.ndarray:
        """The last `lookahead` predictions, with silence (the quietest row seen) after the end."""
        n = self.model.arch.lookahead - self._skip
        if n <= 0 or self._floor is None:
            return np.zeros((0, self.model.arch.channels if self.hidden else len(OUTPUTS)), np.float32)
        with self.model.one_blas_thread():
            return self._push(np.repeat(self._floor[None], self.model.arch.lookahead, axis=0))[:n]

    def _forward(self, x: np.ndarray) -> np.ndarray:
        p = self.model.params
        for li, (name, k, d) in enumerate(_layers(self.model.arch)):
            full = np.concatenate([self._hist[li], x], axis=0)  # (hist + t, c_in)
            if self._hist[li].shape[0]:
                self._hist[li] = full[-self._hist[li].shape[0]:]
            t = len(x)
            taps = self.model.taps[name]  # (k, c_in, c_out), contiguous: BLAS, not numpy's strided loop
            y = np.broadcast_to(p[f"{name}.conv.bias"], (t, taps.shape[2])).copy()
            for j in range(k):
                off = j * d
                y += full[off:off + t] @ taps[j]
            y = _gelu(y)
            x = y if name == "inp" else x + y  # residual blocks keep the width
        if self.hidden:
            return x
        return x @ self.model.taps["out"][0] + p["out.bias"]


@dataclass
class LipModel:
    """A loaded lip model: architecture, input normalisation, weights (numpy float32),
    its config as read, and the sha256 of its weights file."""

    arch: Arch
    norm: Norm
    params: dict[str, np.ndarray]
    config: dict
    sha256: str
    taps: dict[str, np.ndarray] = field(init=False, repr=False)
    _blas: object = field(init=False, repr=False, default=None)

    def __post_init__(self) -> None:
        # each convolution's weights as (kernel, c_in, c_out) matrices, one per tap
        names = [name for name, _, _ in _layers(self.arch)] + ["out"]
        self.taps = {n: np.ascontiguousarray(self.params[f"{n}.conv.weight" if n != "out" else "out.weight"]
                                             .transpose(2, 1, 0)) for n in names}

    def width_in(self, name: str) -> int:
        return self.arch.n_mels if name == "inp" else self.arch.channels

    def stream(self, hidden: bool = False) -> LipStream:
        return LipStream(self, hidden)

    def predict(self, mel: np.ndarray) -> np.ndarray:
        """(m, n_mels) log-mel of a whole recording -> (m, 2) open and width, one row per
        input row; the same as streaming it, fed in blocks so memory does not grow."""
        return self._run(mel, hidden=False)

    def hidden(self, mel: np.ndarray) -> np.ndarray:
        """(m, channels) the features the output layer reads (its input), one row per input
        row: what a per-person output head is fitted on."""
        return self._run(mel, hidden=True)

    def _run(self, mel: np.ndarray, hidden: bool) -> np.ndarray:
        s = self.stream(hidden)
        with self.one_blas_thread():
            parts = [s._push(mel[b:b + BLOCK]) for b in range(0, len(mel), BLOCK)]
        parts.append(s.finish())
        return np.concatenate(parts).astype(np.float32)

    def one_blas_thread(self):
        """A context in which BLAS runs on one thread. These matrices are small (48 x 48):
        a second BLAS thread only spins, and on a machine busy rendering frames that made
        the model 30x slower (0.5 -> 15 ms a product, measured on 2 cores)."""
        from threadpoolctl import ThreadpoolController

        if self._blas is None:
            self._blas = ThreadpoolController()
        return self._blas.limit(limits=1, user_api="blas")


def expected_shapes(arch: Arch) -> dict[str, tuple[int, ...]]:
    shapes = {}
    for name, k, _ in _layers(arch):
        c_in = arch.n_mels if name == "inp" else arch.channels
        shapes[f"{name}.conv.weight"] = (arch.channels, c_in, k)
        shapes[f"{name}.conv.bias"] = (arch.channels,)
    shapes["out.weight"] = (len(OUTPUTS), arch.channels, 1)
    shapes["out.bias"] = (len(OUTPUTS),)
    return shapes


def load_lip_model(folder: str | Path) -> LipModel:
    """Load and check a lip model folder; LipModelError names what is wrong in one line."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    folder = Path(folder)
    cfg_path = folder / CONFIG_FILE
    if not cfg_path.is_file():
        raise LipModelError(f"lip model {folder} has no {CONFIG_FILE}")
    try:
        config = json.loads(cfg_path.read_text(encoding="utf-8"))
        if config.get("architecture") != ARCHITECTURE:
            raise LipModelError(f"lip model {folder}: architecture {config.get('architecture')!r}, "
                                f"expected {ARCHITECTURE!r}")
        arch, norm = Arch.from_dict(config["arch"]), Norm.from_dict(config["norm"])
        weights = config["weights"]
        wfile = folder / weights["file"]
    except (ValueError, KeyError, TypeError) as e:
        raise LipModelError(f"lip model {cfg_path} is not a valid config ({type(e).__name__}: {e})") from None
    if not wfile.is_file():
        raise LipModelError(f"lip model {folder} lacks its weights file {weights['file']}")
    if wfile.stat().st_size != weights.get("size") or sha256_file(wfile) != weights.get("sha256"):
        raise LipModelError(f"lip model weights {wfile} do not match the sha256 in {CONFIG_FILE} "
                            "(altered or from another model); reinstall facetalk or retrain it")
    try:
        params = {k: v.astype(np.float32) for k, v in load_file(str(wfile)).items()}
    except (SafetensorError, OSError) as e:
        raise LipModelError(f"lip model weights {wfile} cannot be read: {e}") from None
    want = expected_shapes(arch)
    got = {k: tuple(v.shape) for k, v in params.items()}
    if got != want:
        raise LipModelError(f"lip model weights {wfile} do not fit its architecture "
                            f"({sorted(set(want) ^ set(got)) or 'shapes differ'})")
    if norm.mean.shape != (arch.n_mels,) or norm.scale.shape != (arch.n_mels,):
        raise LipModelError(f"lip model {cfg_path}: normalisation does not have {arch.n_mels} bands")
    return LipModel(arch, norm, params, config, weights["sha256"])


@lru_cache(maxsize=4)
def _cached(folder: str, mtime_ns: int) -> LipModel:
    return load_lip_model(folder)


def lip_model(folder: str | Path | None = None) -> LipModel:
    """The lip model in folder (default: the one shipped in the package), loaded once per
    process and folder state (a model is read-only data; a changed file is loaded again)."""
    folder = Path(folder) if folder is not None else DEFAULT_DIR
    cfg = folder / CONFIG_FILE
    wts = folder / WEIGHTS_FILE
    stamp = sum(p.stat().st_mtime_ns + p.stat().st_size for p in (cfg, wts) if p.exists())
    return _cached(str(folder.resolve()), stamp)
