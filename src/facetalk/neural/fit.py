"""`facetalk identity train`: fit a LoRA adapter for an identity (or a small model of its
own) and save it as a NEW version of the identity.

Versions are immutable and written atomically (identity.registry), and an adapter is
training output for a version, so it is not added to the version it was trained from: a
new version is staged with the source version's data files (hard links where the file
system allows, else copies), the adapter's two files, and identity.json with the source's
entries plus an "adapter" entry (kind, base name and sha256, rank, alpha, target modules,
parameter counts, training settings and time) and "derived_from". The registry hashes
every file into "files" as for any version. The new version is not made the latest unless
asked (promote), like any later version.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from ..identity.model import ADAPTER_KEY, DATA_FILES, LIPS_HEAD_FILE
from ..identity.registry import BUILDER_KEYS, Registry
from .check import ModelError
from .config import ModelConfig, TrainSettings

TRAINING_DIR = "training"  # under the facetalk home: checkpoints of adapter runs in progress


@dataclass
class FitResult:
    ref: str  # the new version
    source: str  # the version it was trained from
    kind: str  # "lora" or "model"
    parameters: int  # adapter (or own model) parameters
    base_parameters: int  # 0 for a model of its own
    bytes: int  # adapter_model.safetensors (or model.safetensors) size
    base_bytes: int
    steps: int
    seconds: float
    seconds_per_step: float
    crops: int
    promoted: bool
    losses: dict
    previews: Path | None = None  # preview PNGs of the run, kept under the home's training/ folder

    def summary(self) -> str:
        share = (f", {self.parameters / self.base_parameters:.2%} of the base's {self.base_parameters:,} parameters, "
                 f"file 1/{self.base_bytes / max(self.bytes, 1):.0f} of the base's") if self.base_parameters else ""
        latest = " (latest)" if self.promoted else f" (not the latest: 'facetalk identity promote {self.ref}')"
        return (f"created {self.ref}{latest} from {self.source}: {self.kind} of {self.parameters:,} parameters"
                f"{share}; {self.steps} steps on {self.crops} crops in {self.seconds:.0f} s "
                f"({self.seconds_per_step:.2f} s/step)" + (f"; previews in {self.previews}" if self.previews else ""))


def default_base(home: Path) -> Path:
    """The only base model under home/models, or InputError saying what to give."""
    from .store import models_dir

    root = models_dir(home)
    found = sorted(p for p in root.iterdir() if (p / "config.json").is_file()) if root.is_dir() else []
    if len(found) == 1:
        return found[0]
    if not found:
        raise InputError(f"no base model in {root}: train one with 'facetalk base train', give one with --base DIR, "
                         "or train a model of the person's own with --from-scratch")
    raise InputError(f"several base models in {root} ({', '.join(p.name for p in found)}): choose one with --base DIR")


def fit_identity(
    registry: Registry,
    ref: str,
    base: Path | None = None,
    rank: int = 8,
    alpha: float = 16.0,
    targets: list[str] | None = None,
    footage: list[str] | None = None,
    settings: TrainSettings | None = None,
    device: str = "auto",
    amp: bool = True,
    from_scratch: ModelConfig | None = None,
    max_crops: int = 3000,
    trust_pickle: bool = False,
    resume: bool = True,
    on_step: Callable | None = None,
    promote: bool = False,
    log: Callable[[str], None] | None = None,
    models=None,
) -> FitResult:
    """Train an adapter for identity `ref` on `base` (or, with from_scratch, a small model
    of its own) and save the new version; see the module docstring."""
    from .data import concat, samples_from_identity, samples_from_video
    from .store import load_base, resolve_device

    settings = settings or TrainSettings(lr=1e-3)
    name, version = registry.resolve(ref)
    source = f"{name}@v{version}"
    identity = registry.load(source)
    dev = resolve_device(device)
    if from_scratch is None:
        if rank < 1:
            raise InputError(f"--rank {rank} must be at least 1")
        base_dir = Path(base) if base is not None else default_base(registry.home)
        loaded = load_base(base_dir, device=dev, trust_pickle=trust_pickle)
        size = loaded.config.size
    else:
        loaded, size = None, from_scratch.size
    parts = [samples_from_identity(identity, size, max_crops)]
    for f in footage or []:
        if log:
            log(f"tracking {f} ...")
        part = samples_from_video(f, size, models, limit=max_crops)
        if len(part) == 0:
            raise InputError(f"no face found in --footage {f}")
        parts.append(part)
    samples = concat(parts)
    samples.person[:] = 0  # one person
    samples.names = [source]
    work = registry.home / TRAINING_DIR / f"{name}-v{version}-{'scratch' if loaded is None else loaded.sha256[:12]}"
    t0 = time.perf_counter()
    if loaded is None:
        entry, result, files, n_params = _fit_scratch(samples, work, from_scratch, settings, dev, amp, resume,
                                                      on_step, source)
        base_params = base_bytes = 0
    else:
        entry, result, files, n_params, base_params, base_bytes = _fit_lora(
            loaded, samples, work, rank, alpha, targets, settings, amp, resume, on_step, source)
    entry["training"] |= {"seconds": round(time.perf_counter() - t0, 1), "device": dev, "crops": len(samples),
                          "footage": [identity.ref] + [Path(f).name for f in footage or []]}
    with registry.stage(name) as st:
        for f in DATA_FILES + ((LIPS_HEAD_FILE,) if (identity.path / LIPS_HEAD_FILE).is_file() else ()):
            _link_or_copy(identity.path / f, st.path / f)  # the person's lip head, if any, goes along
        for f, path in files.items():
            shutil.move(str(path), str(st.path / f))
        st.manifest.update({k: identity.manifest[k] for k in BUILDER_KEYS})
        st.manifest.update({k: v for k, v in identity.manifest.items()
                            if k not in st.manifest and k not in ("schema", "name", "version", "facetalk", "created",
                                                                  "files", ADAPTER_KEY, "derived_from")})
        st.manifest[ADAPTER_KEY] = entry
        st.manifest["derived_from"] = source
    for leftover in (work / "adapter", work / "model"):  # emptied by the moves above; previews/ stay
        if not any(leftover.glob("previews/*")):
            shutil.rmtree(leftover, ignore_errors=True)
    previews = next((p for p in (work / "previews", work / "model" / "previews") if p.is_dir()), None)
    if promote:
        registry.promote(st.ref)
    own_bytes = (registry.path(name, st.version) / ("adapter_model.safetensors" if loaded is not None
                                                    else "model.safetensors")).stat().st_size
    return FitResult(st.ref, source, entry["kind"], n_params, base_params, own_bytes, base_bytes, result.steps,
                     result.seconds, result.seconds_per_step, len(samples), promote, result.losses, previews)


def _fit_lora(loaded, samples, work: Path, rank, alpha, targets, settings, amp, resume, on_step, source):
    from .adapters import lora_parameters, save_adapter
    from .train import train_adapter

    targets = targets or loaded.config.default_targets(rank)
    n_base = sum(p.numel() for p in loaded.module.parameters())
    weights = loaded.folder / "model.safetensors"
    base_bytes = weights.stat().st_size if weights.is_file() else 0
    peft_model, result = train_adapter(loaded, samples, work, rank, alpha, targets, settings, name="default",
                                       amp=amp, resume=resume, on_step=on_step)
    out = work / "adapter"
    files = save_adapter(peft_model, "default", out, loaded)
    n_params = lora_parameters(peft_model, "default")
    entry = {
        "kind": "lora",
        "base": {"name": loaded.name, "sha256": loaded.sha256, "parameters": n_base, "size": loaded.config.size},
        "rank": rank, "alpha": alpha, "target_modules": sorted(peft_model.peft_config["default"].target_modules),
        "parameters": n_params,
        "training": settings.to_dict() | {"steps_done": result.steps, "final_losses": result.losses},
    }
    return entry, result, files, n_params, n_base, base_bytes


def _fit_scratch(samples, work: Path, config: ModelConfig, settings, dev, amp, resume, on_step, source):
    from .train import train_scratch

    folder = work / "model"
    result = train_scratch(samples, folder, config, settings, dev, amp, name=source, resume=resume, on_step=on_step)
    import json

    cfg = json.loads((folder / "config.json").read_text())
    files = {"config.json": folder / "config.json", "model.safetensors": folder / "model.safetensors"}
    entry = {"kind": "model", "model": config.to_dict(), "sha256": cfg["weights"]["sha256"],
             "parameters": cfg["parameters"], "training": settings.to_dict() | {"steps_done": result.steps,
                                                                                "final_losses": result.losses}}
    return entry, result, files, cfg["parameters"]


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def adapter_entry(identity) -> dict | None:
    """The identity version's "adapter" entry (None: it has no neural model)."""
    entry = identity.manifest.get(ADAPTER_KEY)
    return entry if isinstance(entry, dict) else None


def shared_base_dir(identity, base: str | Path | None, home: Path | None = None) -> Path | None:
    """The base model folder a neural render of identity runs on, when it is one several
    identities can share: None for an identity with a model of its own (and no --base)."""
    entry = adapter_entry(identity) if identity is not None else None
    if entry is not None and entry.get("kind") == "model" and base is None:
        return None
    if entry is not None and entry.get("kind") == "lora":
        return base_for(identity, Path(base) if base is not None else None, home)
    return Path(base) if base is not None else None


def base_for(identity, base: Path | None, home: Path | None = None) -> Path:
    """The base model folder an identity's adapter was trained on: `base` if given, else
    the folder under home/models recording the stamped sha256."""
    from .store import find_base, models_dir

    entry = adapter_entry(identity)
    if base is not None:
        return Path(base)
    if entry is None or entry.get("kind") != "lora":
        raise ModelError(f"{identity.ref} has no adapter: train one with 'facetalk identity train {identity.name} "
                         "--base DIR'")
    b = entry.get("base") or {}
    found = find_base(b.get("name"), str(b.get("sha256")), home)
    if found is None:
        raise ModelError(f"{identity.ref}'s adapter was trained on base model {b.get('name')} (sha256 "
                         f"{str(b.get('sha256'))[:12]}), which is not in {models_dir(home)}: give its folder with --base")
    return found
