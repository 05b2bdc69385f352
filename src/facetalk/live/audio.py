"""Speech as it arrives -> mouth opening and width, 100 rows a second, final a fixed time
behind the audio.

LiveMouth takes 16 kHz mono samples in any chunk sizes. It cuts them into the speech
stage's own frames (25 ms windows every 10 ms, lips.features), so its log-mel rows are
those that `log_mel` gives for the whole file; runs them through the lip model's stream
(LipModel.stream(): predictions `lookahead` rows behind); and closes the mouth where
there is no voice near (the gate of motion.learned, made causal: the voice detector
follows the speech level and noise floor as they come instead of a whole clip's
percentiles, and the gate's reach fits inside the model's own look-ahead, so it adds no
delay). Memory is constant: only rows not yet read are kept.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from ..lips.features import LOG_FLOOR, _block_power
from ..lips.model import LipModel
from ..motion.learned import SILENCE_REACH_S
from ..speech.acoustic import HOP, MIN_SPEECH_DB, MIN_SPEECH_RANGE_DB, SILENT_DB, WINDOW, frame_levels
from ..types import ANALYSIS_RATE, SAMPLE_RATE

PAD = (WINDOW - HOP) // 2  # samples of silence before the first window (as frame_signal)
GATE_SIGMA = 3.0  # rows: the gate's softening (motion.learned uses the same)
FLOOR_RISE_DB = 0.1  # per row the noise floor may rise (10 dB/s); it falls at once
PEAK_FALL_DB = 0.01  # per row the speech level estimate may fall (1 dB/s); it rises at once
FLOOR_PRIOR_DB = MIN_SPEECH_DB  # a quiet room until the microphone says otherwise
HANGOVER_ROWS = 5


class StreamVoice:
    """Causal voice activity, one decision per row: above a threshold between a running
    noise floor and a running speech level (speech.acoustic.voice_activity's rule)."""

    def __init__(self) -> None:
        self.floor = FLOOR_PRIOR_DB
        self.peak = SILENT_DB
        self._since_voice = HANGOVER_ROWS + 1

    def push(self, level_db: np.ndarray) -> np.ndarray:
        out = np.zeros(len(level_db), bool)
        for i, lv in enumerate(level_db):
            lv = float(lv)
            if lv > SILENT_DB + 1:
                self.floor = min(lv, self.floor + FLOOR_RISE_DB)
                self.peak = max(lv, self.peak - PEAK_FALL_DB)
            above = False
            if self.peak >= MIN_SPEECH_DB and self.peak - self.floor >= MIN_SPEECH_RANGE_DB:
                above = lv > self.floor + max(6.0, 0.35 * (self.peak - self.floor))
            self._since_voice = 0 if above else self._since_voice + 1
            out[i] = self._since_voice <= HANGOVER_ROWS
        return out


class LiveMouth:
    """Push samples; read (open, width) rows that are final: row r (time r / 100 s) is
    final once the samples up to r / 100 + lookahead + 17.5 ms have been pushed.

    rows() -> (start_row, (k, 2) float64): open and width already multiplied by the
    voice gate, the rows made final since the last call."""

    def __init__(self, model: LipModel, gate: bool = True) -> None:
        """gate=False: the model's predictions as they are (no voice gate; for checks)."""
        self.model = model
        self.gate = gate
        self.stream = model.stream()
        self.lookahead = model.arch.lookahead
        self.voice = StreamVoice()
        self._buf = np.zeros(PAD, np.float32)  # padded samples from padded index _buf0
        self._buf0 = 0
        self._next_row = 0  # next mel row to cut
        self._samples = 0
        self._pred: deque[np.ndarray] = deque()  # predictions not yet gated
        self._pred_row = 0  # row of _pred[0]
        self._voiced: deque[bool] = deque()  # voicing from row _voiced_row on
        self._voiced_row = 0
        self._reach = int(round(SILENCE_REACH_S * ANALYSIS_RATE))
        self._smooth = int(np.ceil(3 * GATE_SIGMA))
        w = np.exp(-0.5 * (np.arange(-self._smooth, self._smooth + 1) / GATE_SIGMA) ** 2)
        self._weights = w / w.sum()
        self._out_row = 0  # next gated row to give
        self.ended = False

    @property
    def delay_rows(self) -> int:
        """Rows of audio beyond a row needed before it is final (model and gate)."""
        return max(self.lookahead, self._reach + self._smooth)

    @property
    def samples(self) -> int:
        return self._samples

    def push(self, samples: np.ndarray) -> None:
        x = np.asarray(samples, dtype=np.float32).ravel()
        if self.ended:
            raise ValueError("audio pushed after end()")
        self._samples += len(x)
        self._buf = np.concatenate([self._buf, x])
        self._cut(final=False)

    def end(self) -> None:
        """The audio is over: pad with silence (as the whole-file path does) and make every row final."""
        if self.ended:
            return
        m = int(np.ceil(self._samples * ANALYSIS_RATE / SAMPLE_RATE))
        need = (m - 1) * HOP + WINDOW - (self._buf0 + len(self._buf))
        if need > 0:
            self._buf = np.concatenate([self._buf, np.zeros(need, np.float32)])
        self._cut(final=False, limit=m)
        self._add_pred(self.stream.finish())
        self.ended = True
        self._total_rows = m

    def _cut(self, final: bool, limit: int | None = None) -> None:
        avail = self._buf0 + len(self._buf)
        n = max(0, (avail - WINDOW) // HOP + 1 - self._next_row)
        if limit is not None:
            n = min(n, limit - self._next_row)
        if n <= 0:
            return
        start = self._next_row * HOP - self._buf0
        idx = start + np.arange(n)[:, None] * HOP + np.arange(WINDOW)[None, :]
        frames = self._buf[idx]
        mel = np.log(_block_power(frames) + LOG_FLOOR).astype(np.float32)
        self._voiced.extend(self.voice.push(frame_levels(frames)).tolist())
        self._next_row += n
        drop = self._next_row * HOP - self._buf0
        self._buf = self._buf[drop:]
        self._buf0 += drop
        self._add_pred(self.stream.push(mel))

    def _add_pred(self, pred: np.ndarray) -> None:
        for row in np.asarray(pred, np.float64):
            self._pred.append(row)

    def rows(self) -> tuple[int, np.ndarray]:
        """The rows made final since the last call (gated), from row `start` on."""
        start = self._out_row
        known_voice = self._voiced_row + len(self._voiced)  # voicing known for rows < this
        pred_end = self._pred_row + len(self._pred)
        if self.ended:
            last = min(pred_end, getattr(self, "_total_rows", pred_end))
        else:
            last = min(pred_end, known_voice - self._reach - self._smooth)
        out = []
        voiced = np.asarray(self._voiced, bool)
        for r in range(start, max(start, last)):
            # near[t]: voice within reach of t; gate[r]: near softened over +-smooth rows
            lo = r - self._smooth - self._reach
            hi = r + self._smooth + self._reach + 1
            v = np.zeros(hi - lo, bool)
            a, b = max(lo, self._voiced_row), min(hi, known_voice)
            if b > a:
                v[a - lo:b - lo] = voiced[a - self._voiced_row:b - self._voiced_row]
            near = np.array([v[j:j + 2 * self._reach + 1].any() for j in range(2 * self._smooth + 1)])
            gate = float(np.clip(np.dot(self._weights, near), 0.0, 1.0)) if self.gate else 1.0
            out.append(self._pred[r - self._pred_row] * gate)
        self._out_row = max(start, last)
        # forget what no later row needs
        while self._pred and self._pred_row < self._out_row:
            self._pred.popleft()
            self._pred_row += 1
        keep_from = self._out_row - self._smooth - self._reach
        while self._voiced and self._voiced_row < keep_from:
            self._voiced.popleft()
            self._voiced_row += 1
        return start, (np.array(out, np.float64).reshape(-1, 2))

    @property
    def total_rows(self) -> int | None:
        """Rows of the whole audio once ended, else None."""
        return getattr(self, "_total_rows", None) if self.ended else None
