"""Checks of base-model folders and LoRA adapter folders on their files alone (safetensors
headers, JSON, sha256), without torch: shared by the loader and the identity registry.

Every problem is one line naming the file and the fix (a ModelError, or whatever error
type the caller passes: the registry raises IdentityError).

Only safetensors weights are read. A pickle file (.pth, .pt, .bin, ...) is refused with a
message naming --trust-pickle; the loader then reads it with torch.load(weights_only=True).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import FacetalkError
from ..identity.model import DATA_FILES, MANIFEST
from .config import ARCHITECTURE, CONFIG_FILE, PICKLE_SUFFIXES, WEIGHTS_FILE

ADAPTER_CONFIG = "adapter_config.json"  # peft's names (peft.utils.constants)
ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_FILES = (ADAPTER_CONFIG, ADAPTER_WEIGHTS)
STAMP_PREFIX = "facetalk-base:"  # adapter_config.json base_model_name_or_path = facetalk-base:NAME@sha256:HEX
_STAMP = re.compile(r"facetalk-base:(?P<name>[^@]*)@sha256:(?P<sha>[0-9a-f]{64})")
_LORA_KEY = re.compile(r"(?:base_model\.model\.)?(?P<module>.+)\.lora_(?P<part>[AB])\.weight")


class ModelError(FacetalkError):
    """A base model or adapter that is missing, broken, or does not fit (one line: the file and the fix)."""


def sha256_file(path: Path) -> str:
    with Path(path).open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def stamp(name: str, sha256: str) -> str:
    """What an adapter records of its base (peft's base_model_name_or_path)."""
    return f"{STAMP_PREFIX}{name}@sha256:{sha256}"


def parse_stamp(text: object) -> tuple[str, str] | None:
    """(base name, base sha256) of a stamp, None when it is not one."""
    m = _STAMP.fullmatch(str(text or ""))
    return (m.group("name"), m.group("sha")) if m else None


def tensor_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every tensor in a safetensors file (its header only). Raises
    ValueError (or the library's error) when the file is not a readable safetensors file."""
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as f:
        return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}


def _reason(e: BaseException) -> str:
    text = getattr(e, "strerror", None) or str(e) or type(e).__name__
    return " ".join(str(text).split())[:160]


def _renamed(folder: Path, wanted: str, suffix: str) -> str | None:
    """Another file of the same kind in folder: what `wanted` was probably renamed to."""
    others = sorted(p.name for p in folder.iterdir()
                    if p.is_file() and p.name != wanted and p.suffix == suffix
                    and p.name not in (CONFIG_FILE, WEIGHTS_FILE, MANIFEST, *ADAPTER_FILES, *DATA_FILES))
    return others[0] if others else None


def _pickles(folder: Path, stem: str | None = None) -> list[Path]:
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and p.suffix in PICKLE_SUFFIXES and (stem is None or p.stem == stem))


def _read_json(path: Path, label: str, fix: str, err: type[Exception]) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except PermissionError:
        raise err(f"{label}: {path.name} is not readable (permission denied): run 'chmod u+r {path}'") from None
    except (OSError, UnicodeDecodeError) as e:
        raise err(f"{label}: cannot read {path.name} ({_reason(e)}); {fix}") from None
    except json.JSONDecodeError as e:
        raise err(f"{label}: {path.name} is not valid JSON (line {e.lineno}: {e.msg}); {fix}") from None
    if not isinstance(data, dict):
        raise err(f"{label}: {path.name} is not a JSON object; {fix}")
    return data


# -- base models ------------------------------------------------------------------------


@dataclass(frozen=True)
class BaseFiles:
    """A checked base folder: its config.json, the weights file to read, its sha256, and
    whether the weights are a pickle the user chose to trust."""

    folder: Path
    config: dict
    weights: Path
    sha256: str
    pickle: bool = False

    @property
    def name(self) -> str:
        return str(self.config.get("name") or self.folder.name)


def check_base(folder: str | Path, trust_pickle: bool = False, err: type[Exception] = ModelError) -> BaseFiles:
    """Check a base model folder: config.json (architecture facetalk-mouth-unet) and
    model.safetensors with the sha256 config.json records; a pickle weights file only
    with trust_pickle."""
    folder = Path(folder)
    label = f"base model {folder}"
    retrain = f"train it again with 'facetalk base train ... -o {folder}'"
    if not folder.is_dir():
        raise err(f"{label} does not exist: give the folder 'facetalk base train -o' wrote (config.json + {WEIGHTS_FILE})")
    cfg_path = folder / CONFIG_FILE
    if not cfg_path.is_file():
        other = _renamed(folder, CONFIG_FILE, ".json")
        hint = f"rename {other} back to {CONFIG_FILE}" if other else retrain
        raise err(f"{label}: {CONFIG_FILE} is missing; {hint}")
    config = _read_json(cfg_path, label, retrain, err)
    if config.get("architecture") != ARCHITECTURE or not isinstance(config.get("model"), dict):
        raise err(f"{label}: {CONFIG_FILE} does not describe a {ARCHITECTURE} model; {retrain}")
    weights = folder / WEIGHTS_FILE
    recorded = (config.get("weights") or {}).get("sha256")
    if not weights.is_file():
        pickles = _pickles(folder)
        if pickles:
            if not trust_pickle:
                raise err(f"{label}: {pickles[0].name} is a pickle file, which can run code when loaded; facetalk "
                          f"reads only {WEIGHTS_FILE}: convert it, or pass --trust-pickle if you trust its source "
                          "(it is then read with weights_only=True)")
            return BaseFiles(folder, config, pickles[0], sha256_file(pickles[0]), pickle=True)
        other = _renamed(folder, WEIGHTS_FILE, ".safetensors")
        hint = f"rename {other} back to {WEIGHTS_FILE}" if other else retrain
        raise err(f"{label}: {WEIGHTS_FILE} is missing; {hint}")
    try:
        sha = sha256_file(weights)
    except OSError as e:
        raise err(f"{label}: cannot read {WEIGHTS_FILE} ({_reason(e)}); {retrain}") from None
    if recorded is not None and sha != recorded:
        raise err(f"{label}: {WEIGHTS_FILE} has changed or is corrupted (its sha256 differs from {CONFIG_FILE}); "
                  f"{retrain}")
    try:
        tensor_shapes(weights)
    except Exception as e:  # noqa: BLE001 - the parser's own errors
        raise err(f"{label}: {WEIGHTS_FILE} is not a readable safetensors file ({_reason(e)}); {retrain}") from None
    return BaseFiles(folder, config, weights, sha)


# -- adapters ---------------------------------------------------------------------------


@dataclass(frozen=True)
class AdapterFiles:
    """A checked adapter folder: peft's adapter_config.json as a dict, the weights file,
    the LoRA modules it holds (module name -> (rank, in, out)), and its base stamp."""

    folder: Path
    config: dict
    weights: Path
    modules: dict[str, tuple[int, int, int]]
    base_name: str | None
    base_sha256: str | None

    @property
    def rank(self) -> int:
        return int(self.config["r"])

    @property
    def targets(self) -> list[str]:
        t = self.config.get("target_modules")
        return sorted(t) if isinstance(t, list) else [str(t)]


def check_adapter(
    folder: str | Path,
    label: str | None = None,
    base_shapes: dict[str, tuple[int, ...]] | None = None,
    base_sha256: str | None = None,
    trust_pickle: bool = False,
    fix: str = "train it again with 'facetalk identity train'",
    err: type[Exception] = ModelError,
) -> AdapterFiles:
    """Check a peft LoRA adapter folder: adapter_config.json (LORA, r, lora_alpha,
    target_modules, the base stamp), adapter_model.safetensors (readable; every lora_A /
    lora_B pair of the config's rank), and, given the base's tensor shapes and sha256,
    that it was trained on that base and fits its layers."""
    folder = Path(folder)
    label = label or f"adapter {folder}"
    cfg_path, weights = folder / ADAPTER_CONFIG, folder / ADAPTER_WEIGHTS
    if not cfg_path.is_file():
        other = _renamed(folder, ADAPTER_CONFIG, ".json")
        hint = f"rename {other} back to {ADAPTER_CONFIG}" if other else fix
        raise err(f"{label}: {ADAPTER_CONFIG} is missing (peft's adapter config); {hint}")
    if not weights.is_file():
        pickles = _pickles(folder)
        if pickles:
            raise err(f"{label}: {pickles[0].name} is a pickle file, which can run code when loaded; adapters are "
                      f"read only as {ADAPTER_WEIGHTS}: save the adapter with safe_serialization "
                      f"(peft's default), or {fix}")
        other = _renamed(folder, ADAPTER_WEIGHTS, ".safetensors")
        hint = f"rename {other} back to {ADAPTER_WEIGHTS}" if other else fix
        raise err(f"{label}: {ADAPTER_WEIGHTS} is missing; {hint}")
    config = _read_json(cfg_path, label, fix, err)
    if str(config.get("peft_type", "")).upper() != "LORA":
        raise err(f"{label}: {ADAPTER_CONFIG} is not a LoRA adapter (peft_type {config.get('peft_type')!r}); {fix}")
    r = config.get("r")
    if not isinstance(r, int) or isinstance(r, bool) or r < 1 or not isinstance(config.get("lora_alpha"), (int, float)):
        raise err(f"{label}: {ADAPTER_CONFIG} has no valid rank r / lora_alpha; {fix}")
    targets = config.get("target_modules")
    if not targets or not isinstance(targets, (list, str)):
        raise err(f"{label}: {ADAPTER_CONFIG} names no target_modules; {fix}")
    try:
        shapes = tensor_shapes(weights)
    except PermissionError:
        raise err(f"{label}: {ADAPTER_WEIGHTS} is not readable (permission denied): run 'chmod u+r {weights}'") from None
    except Exception as e:  # noqa: BLE001 - the parser's own errors
        raise err(f"{label}: {ADAPTER_WEIGHTS} is unreadable or corrupted, not a safetensors file "
                  f"({_reason(e)}); {fix}") from None
    modules: dict[str, dict[str, tuple[int, ...]]] = {}
    for key, shape in shapes.items():
        m = _LORA_KEY.fullmatch(key)
        if m is None:
            raise err(f"{label}: {ADAPTER_WEIGHTS} holds {key!r}, which is not a LoRA weight; {fix}")
        modules.setdefault(m.group("module"), {})[m.group("part")] = shape
    if not modules:
        raise err(f"{label}: {ADAPTER_WEIGHTS} holds no LoRA weights; {fix}")
    fitted: dict[str, tuple[int, int, int]] = {}
    for module, parts in sorted(modules.items()):
        if set(parts) != {"A", "B"}:
            raise err(f"{label}: {ADAPTER_WEIGHTS} has lora_{'AB'.replace(''.join(parts), '')} missing for {module}; {fix}")
        a, b = parts["A"], parts["B"]
        if a[0] != r or b[1] != r:
            raise err(f"{label}: {module} has rank {a[0]} in {ADAPTER_WEIGHTS} but r={r} in {ADAPTER_CONFIG}; "
                      f"the two files are from different adapters: {fix}")
        fitted[module] = (r, int(a[1]), int(b[0]))
    base = parse_stamp(config.get("base_model_name_or_path"))
    base_name, stamped_sha = base if base else (None, None)
    if base_sha256 is not None:
        if stamped_sha is None:
            raise err(f"{label}: {ADAPTER_CONFIG} does not say which base model it was trained on "
                      f"(base_model_name_or_path); {fix}")
        if stamped_sha != base_sha256:
            raise err(f"{label}: it was trained on base {base_name} (sha256 {stamped_sha[:12]}), not this base "
                      f"(sha256 {base_sha256[:12]}): give that base with --base, or {fix} on this base")
    if base_shapes is not None:
        for module, (rank, cin, cout) in fitted.items():
            w = base_shapes.get(f"{module}.weight")
            if w is None:
                raise err(f"{label}: {ADAPTER_WEIGHTS} adapts layer {module}, which the base model does not have; "
                          f"it was trained for another architecture: {fix}")
            a_in = shapes[_key(shapes, module, "A")][1]
            if len(w) == 4:
                kernel = tuple(shapes[_key(shapes, module, "A")][2:])
                ok = w[1] == a_in and w[0] == cout and kernel == tuple(w[2:])
            else:
                ok = w[1] == a_in and w[0] == cout
            if not ok:
                raise err(f"{label}: size mismatch at {module}: the adapter is {a_in}->{cout} channels, the base "
                          f"layer {w[1]}->{w[0]}; it was trained for another base: {fix}")
    return AdapterFiles(folder, config, weights, fitted, base_name, stamped_sha)


def _key(shapes: dict, module: str, part: str) -> str:
    for prefix in ("base_model.model.", ""):
        k = f"{prefix}{module}.lora_{part}.weight"
        if k in shapes:
            return k
    raise KeyError(module)
