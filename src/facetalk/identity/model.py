"""What one identity version holds, file by file, and the loaded form a render uses.

A version folder (identities/<name>/v<N>/) holds:

- identity.json: the manifest (MANIFEST_KEYS below): schema, facetalk version, created
  time, consent, the source footage (file name, size, sha256), frame counts (used and
  skipped, by reason), the person's mouth-shape table, training settings, and "files":
  {file name: {"sha256": ..., "size": ...}} for every data file below;
- mouth_bank.safetensors: the MouthBank (identity.bank);
- face.safetensors: "embedding" (128,) float32 reference face embedding, "embeddings"
  (m, 128) the per-frame ones it is the mean of, "neutral" (68, 2) float32 canonical
  closed neutral face, "clip_landmarks" (n, 68, 2) float32 the tracked landmarks of
  every frame of face.mp4 (NaN rows where no face), so a render need not track it again;
- reference.png: the best frontal, mouth-closed frame (the face source for --still);
- face.mp4: a clip of the footage to loop as the face source (H.264, no audio).

A version made by `facetalk identity train` (a new version: versions never change) also
holds OPTIONAL_FILES, listed in "files" like the data files, and an "adapter" entry in
identity.json saying what they are (facetalk.neural.fit):
- adapter_config.json + adapter_model.safetensors: a LoRA adapter in peft's format for the
  `neural` renderer, stamped with its base model's name and sha256 ("kind": "lora");
- config.json + model.safetensors: a small model of the person's own, trained from scratch
  ("kind": "model", the format of a base model folder).

A version may also hold the person's own lip head (facetalk.lips.adapt), fitted by
`identity create` (or `identity train-lips`) on the footage's sound and mouth:
- lips_head.safetensors: the lip model's output layer refitted to the person, stamped with
  the lip model's sha256; listed in "files" like the others, and described by the "lips"
  entry of identity.json ("kind": "head", the lip model's sha256, taps, held-out r). A
  version without it says in its "lips" entry why ("kind": "generic": too little footage,
  or no gain on held-out parts of it) or has no entry (made before lip heads).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..types import MOUTH_PARAMS, Shape
from .bank import MouthBank

if TYPE_CHECKING:
    from ..lips.adapt import LipHead

SCHEMA_VERSION = 1
MANIFEST = "identity.json"
BANK_FILE = "mouth_bank.safetensors"
FACE_FILE = "face.safetensors"
REFERENCE_FILE = "reference.png"
CLIP_FILE = "face.mp4"
DATA_FILES = (BANK_FILE, FACE_FILE, REFERENCE_FILE, CLIP_FILE)
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")  # peft's names
MODEL_FILES = ("config.json", "model.safetensors")  # a model of the person's own (base folder format)
LIPS_HEAD_FILE = "lips_head.safetensors"  # facetalk.lips.adapt.HEAD_FILE
OPTIONAL_FILES = ADAPTER_FILES + MODEL_FILES + (LIPS_HEAD_FILE,)
ADAPTER_KEY = "adapter"  # identity.json entry describing the neural renderer's optional files
LIPS_KEY = "lips"  # identity.json entry describing the lip head (or why there is none)
# Top-level keys every identity.json has.
MANIFEST_KEYS = ("schema", "name", "version", "facetalk", "created", "consent", "footage", "frames",
                 "shapes", "settings", "files")


@dataclass(frozen=True)
class Identity:
    """A loaded, verified identity version.

    shapes: (len(Shape), len(MOUTH_PARAMS)) float32, the person's target mouth vector
    per Rhubarb shape, rows in Shape order (replaces motion.shapes.target_table()).
    """

    name: str
    version: int
    path: Path
    manifest: dict
    shapes: np.ndarray
    bank: MouthBank
    embedding: np.ndarray
    neutral: np.ndarray
    clip_landmarks: np.ndarray  # (n, 68, 2) float32 per frame of the clip, NaN where no face
    lips: LipHead | None = None  # the person's own lip head (None: the generic lip model)

    @property
    def ref(self) -> str:
        return f"{self.name}@v{self.version}"

    @property
    def reference(self) -> Path:
        return self.path / REFERENCE_FILE

    @property
    def clip(self) -> Path:
        return self.path / CLIP_FILE


def shapes_to_json(table: np.ndarray) -> dict[str, dict[str, float]]:
    """The shape table as {shape: {param: value}} for identity.json."""
    return {s.value: {p: round(float(v), 4) for p, v in zip(MOUTH_PARAMS, row)} for s, row in zip(Shape, table)}


def shapes_from_json(data: dict) -> np.ndarray:
    """Inverse of shapes_to_json. Raises ValueError on a missing shape or parameter."""
    rows = []
    for s in Shape:
        row = data.get(s.value)
        if not isinstance(row, dict) or any(p not in row for p in MOUTH_PARAMS):
            raise ValueError(f"shape table lacks shape {s.value} or one of its parameters")
        rows.append([float(row[p]) for p in MOUTH_PARAMS])
    return np.asarray(rows, dtype=np.float32)
