"""A base model on disk: a folder with config.json and model.safetensors.

config.json: {"architecture", "name", "model": ModelConfig, "weights": {"file", "sha256",
"size"}, "parameters", "training": {settings, data, steps, seconds, device}, "facetalk",
"created"}. The sha256 of model.safetensors is what adapters are stamped with; loading
checks it (check.check_base). Default location: $FACETALK_HOME/models/<name>/.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import torch

from .. import __version__
from .check import BaseFiles, ModelError, check_base, sha256_file, tensor_shapes
from .config import ARCHITECTURE, CONFIG_FILE, WEIGHTS_FILE, ModelConfig
from .model import MouthUNet, count_parameters


def models_dir(home: Path | None = None) -> Path:
    """$FACETALK_HOME/models: where base models live by default."""
    from ..home import facetalk_home

    return Path(home or facetalk_home()) / "models"


@dataclass
class LoadedBase:
    """A base model in memory: the module (eval mode, frozen), its config, the sha256 of
    its weights file (what adapters are stamped with), its name and folder."""

    module: MouthUNet
    config: ModelConfig
    sha256: str
    name: str
    folder: Path
    shapes: dict[str, tuple[int, ...]]
    device: str = "cpu"


def save_base(module: MouthUNet, folder: Path, name: str | None = None, training: dict | None = None) -> str:
    """Write module's weights and config.json into folder (atomically: a temporary folder
    beside it, renamed over it). Returns the weights' sha256."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        state = {k: v.detach().to("cpu").contiguous() for k, v in module.state_dict().items()}
        save_file(state, str(tmp / WEIGHTS_FILE), metadata={"format": "pt", "architecture": ARCHITECTURE})
        sha = sha256_file(tmp / WEIGHTS_FILE)
        config = {
            "architecture": ARCHITECTURE,
            "name": name or folder.name,
            "model": module.model_config.to_dict(),
            "weights": {"file": WEIGHTS_FILE, "sha256": sha, "size": (tmp / WEIGHTS_FILE).stat().st_size},
            "parameters": count_parameters(module),
            "training": training or {},
            "facetalk": __version__,
            "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        # keep what else the folder holds (checkpoint/, previews/, data cache)
        if folder.is_dir():
            for p in folder.iterdir():
                if p.name not in (WEIGHTS_FILE, CONFIG_FILE):
                    os.replace(p, tmp / p.name)
            old = folder.parent / f".{folder.name}.old-{os.getpid()}"
            os.rename(folder, old)
            os.rename(tmp, folder)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return sha


def load_base(folder: str | Path, device: str = "cpu", trust_pickle: bool = False) -> LoadedBase:
    """Check and load a base model folder (see check.check_base); the module is in eval
    mode with every parameter frozen."""
    files = check_base(folder, trust_pickle=trust_pickle)
    return _load(files, device)


def _load(files: BaseFiles, device: str) -> LoadedBase:
    try:
        config = ModelConfig.from_dict(files.config["model"])
    except (TypeError, ValueError) as e:
        raise ModelError(f"base model {files.folder}: {CONFIG_FILE} has an invalid model entry ({e})") from None
    if files.pickle:
        try:
            state = torch.load(files.weights, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001
            raise ModelError(f"base model {files.folder}: {files.weights.name} does not load with weights_only=True "
                             f"({' '.join(str(e).split())[:160]}): it is not a plain state dict") from None
        if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
            state = state["state_dict"]
        state = {k.replace("module.", "", 1) if k.startswith("module.") else k: v for k, v in state.items()}
        shapes = {k: tuple(v.shape) for k, v in state.items()}
    else:
        from safetensors.torch import load_file

        state = load_file(str(files.weights))
        shapes = tensor_shapes(files.weights)
    module = MouthUNet(config)
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = " ".join(str(e).split())[:200]
        raise ModelError(f"base model {files.folder}: {files.weights.name} does not fit the architecture in "
                         f"{CONFIG_FILE} ({first})") from None
    module.eval().requires_grad_(False).to(device)
    return LoadedBase(module, config, files.sha256, files.name, files.folder, shapes, device)


def find_base(name: str | None, sha256: str, home: Path | None = None) -> Path | None:
    """The folder under models/ holding the base with this weights sha256 (its own name first)."""
    root = models_dir(home)
    if not root.is_dir():
        return None
    candidates = ([root / name] if name else []) + sorted(p for p in root.iterdir() if p.is_dir())
    for folder in candidates:
        try:
            cfg = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if (cfg.get("weights") or {}).get("sha256") == sha256:
            return folder
    return None


def resolve_device(device: str | None) -> str:
    """'cuda' when asked for (and present), else 'cpu'; 'auto' picks cuda when present."""
    if device in (None, "", "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelError(f"--device {device}: no CUDA GPU is available here (this torch is "
                         f"{torch.__version__}); use --device cpu")
    if device != "cpu" and not device.startswith("cuda"):
        raise ModelError(f"unknown --device {device!r}: use cpu or cuda")
    return device
