"""LoRA identity adapters on a frozen base model, in peft's own format.

An adapter folder holds peft's adapter_config.json and adapter_model.safetensors, written by
PeftModel.save_pretrained; adapter_config.json's base_model_name_or_path is our stamp
"facetalk-base:NAME@sha256:HEX" of the base's weights file. Loading checks the files first
(check.check_adapter: names, rank, target modules, sizes against the base's layers, the
base's sha256), then reads the safetensors file itself and hands the tensors to peft
(set_peft_model_state_dict), so peft never opens a pickle.

BaseModelPool: one base loaded once, any number of adapters loaded into it by name, the
active one switched per job with set_adapter; merged(name) gives a separate copy with the
adapter fused into the weights (faster per frame, no switching). A long-lived worker keeps
one pool and passes it to every NeuralRenderer it makes; there is no module-level cache.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from pathlib import Path

import torch
from torch import nn

from .check import (
    ADAPTER_CONFIG,
    ADAPTER_FILES,
    ADAPTER_WEIGHTS,
    AdapterFiles,
    ModelError,
    check_adapter,
    stamp,
)
from .model import MouthUNet
from .store import LoadedBase, load_base


def lora_config(rank: int, alpha: float, targets: list[str]):
    """peft LoraConfig over the named layers (full names: config.ModelConfig.layer_names)."""
    from peft import LoraConfig

    return LoraConfig(r=int(rank), lora_alpha=alpha, target_modules=list(targets), lora_dropout=0.0, bias="none",
                      init_lora_weights=True)


def attach(module: nn.Module, config, name: str):
    """module wrapped by peft with a new (zero-effect) LoRA adapter `name`; only the LoRA
    weights are trainable. module is changed in place (its layers get LoRA wrappers)."""
    from peft import get_peft_model

    return get_peft_model(module, config, adapter_name=name)


def lora_parameters(peft_model, name: str) -> int:
    return sum(p.numel() for n, p in peft_model.named_parameters() if f".{name}." in n and "lora_" in n)


def save_adapter(peft_model, name: str, folder: Path, base: LoadedBase) -> dict[str, Path]:
    """Write adapter `name` of peft_model into folder as adapter_config.json +
    adapter_model.safetensors (peft's save_pretrained, safetensors), stamped with the
    base's name and sha256. Returns the two paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cfg = peft_model.peft_config[name]
    cfg.base_model_name_or_path = stamp(base.name, base.sha256)
    with tempfile.TemporaryDirectory(prefix=".adapter-", dir=folder) as tmp:
        peft_model.save_pretrained(tmp, safe_serialization=True, selected_adapters=[name], save_embedding_layers=False)
        src = Path(tmp) if name == "default" else Path(tmp) / name
        out = {}
        for f in ADAPTER_FILES:
            shutil.move(str(src / f), str(folder / f))
            out[f] = folder / f
    return out


def read_adapter(folder: Path, base: LoadedBase, label: str | None = None, fix: str | None = None,
                 err: type[Exception] = ModelError):
    """(LoraConfig, tensors, AdapterFiles) of a checked adapter folder fitting base."""
    from peft import LoraConfig
    from safetensors.torch import load_file

    kw = {"fix": fix} if fix else {}
    files = check_adapter(folder, label=label, base_shapes=base.shapes, base_sha256=base.sha256, err=err, **kw)
    known = {k.rsplit(".", 1)[0] for k in base.shapes}  # module names
    missing = [t for t in files.targets if not any(k == t or k.endswith("." + t) for k in known)]
    if missing and isinstance(files.config.get("target_modules"), list):
        raise err(f"{label or folder}: {ADAPTER_CONFIG} targets {', '.join(missing)}, which the base model does not "
                  "have; it was trained for another architecture")
    # built from the JSON check_adapter already read, never from_pretrained: given a path
    # that is not a folder, that would look the name up on the Hugging Face hub
    import dataclasses

    fields = {f.name for f in dataclasses.fields(LoraConfig)}
    config = LoraConfig(**{k: v for k, v in files.config.items() if k in fields and k != "peft_type"})
    config.inference_mode = True
    config.base_model_name_or_path = None  # the stamp is checked above; peft would only warn about it
    try:
        tensors = load_file(str(files.weights))
    except Exception as e:  # noqa: BLE001 - the parser's own errors
        raise err(f"{label or folder}: {ADAPTER_WEIGHTS} does not load ({' '.join(str(e).split())[:160]})") from None
    return config, tensors, files


def _load_into(peft_model, name: str, tensors: dict[str, torch.Tensor], label: str, err: type[Exception]) -> None:
    from peft import set_peft_model_state_dict

    result = set_peft_model_state_dict(peft_model, tensors, adapter_name=name)
    unexpected = [k for k in getattr(result, "unexpected_keys", []) if "lora_" in k]
    if unexpected:
        raise err(f"{label}: {ADAPTER_WEIGHTS} holds weights for layers the adapter config does not target "
                  f"({unexpected[0]}); the two files are from different adapters")


class BaseModelPool:
    """A base model loaded once, with LoRA adapters loaded into it by name.

    add(name, folder) checks and loads an adapter; run(name, ...) switches to it
    (set_adapter; None: the bare base) and runs the model, under one lock, so renders of
    several jobs may share the pool; merged(name) is a separate copy with the adapter fused.
    """

    def __init__(self, base: LoadedBase | str | Path, device: str = "cpu", trust_pickle: bool = False) -> None:
        if not isinstance(base, LoadedBase):
            base = load_base(base, device=device, trust_pickle=trust_pickle)
        self.base = base
        self.device = base.device
        self._state = {k: v.detach().clone() for k, v in base.module.state_dict().items()}
        self._peft = None
        self._adapters: dict[str, AdapterFiles] = {}
        self._merged: dict[str, MouthUNet] = {}
        self._active: str | None = None
        self.lock = threading.RLock()

    @property
    def adapters(self) -> list[str]:
        return list(self._adapters)

    def info(self, name: str) -> AdapterFiles:
        return self._adapters[name]

    def add(self, name: str, folder: str | Path, label: str | None = None) -> AdapterFiles:
        """Check and load the adapter in folder under `name` (again if already loaded)."""
        label = label or f"adapter {folder}"
        config, tensors, files = read_adapter(Path(folder), self.base, label=label)
        with self.lock:
            if name in self._adapters:
                self.remove(name)
            if self._peft is None:
                self._peft = attach(self.base.module, config, name)
            else:
                self._peft.add_adapter(name, config)
            _load_into(self._peft, name, tensors, label, ModelError)
            self._peft.eval()
            self._peft.requires_grad_(False)
            self._adapters[name] = files
            self._active = None
            self._set(name)
        return files

    def remove(self, name: str) -> None:
        with self.lock:
            if name in self._adapters and self._peft is not None:
                if self._active == name:
                    self._active = None
                others = [a for a in self._adapters if a != name]
                if others:
                    self._set(others[0])
                self._peft.delete_adapter(name)
            self._adapters.pop(name, None)
            self._merged.pop(name, None)

    def _set(self, name: str | None) -> None:
        if name == self._active:
            return
        if name is not None:
            if name not in self._adapters:
                raise ModelError(f"adapter {name!r} is not loaded in this base model pool")
            self._peft.set_adapter(name)
            self._peft.requires_grad_(False)
        self._active = name

    def module(self, name: str | None):
        """The callable model for adapter name (None: the base alone); call under `lock`."""
        if name is None or self._peft is None:
            return self.base.module
        self._set(name)
        return self._peft

    def run(self, name: str | None, masked: torch.Tensor, reference: torch.Tensor, cond: torch.Tensor,
            merge: bool = False) -> torch.Tensor:
        """The model's output for adapter name (None: the bare base); merge: through the fused copy."""
        with torch.inference_mode():
            if merge and name is not None:
                return self.merged(name)(masked, reference, cond)
            with self.lock:
                if name is None and self._peft is not None:
                    with self._peft.disable_adapter():
                        return self.base.module(masked, reference, cond)
                return self.module(name)(masked, reference, cond)

    def merged(self, name: str) -> MouthUNet:
        """A separate copy of the base with adapter `name` fused into its weights (made once)."""
        with self.lock:
            if name in self._merged:
                return self._merged[name]
            if name not in self._adapters:
                raise ModelError(f"adapter {name!r} is not loaded in this base model pool")
            config, tensors, _ = read_adapter(self._adapters[name].folder, self.base)
            fresh = MouthUNet(self.base.config)
            fresh.load_state_dict(self._state)
            fresh.to(self.device)
            wrapped = attach(fresh, config, name)
            _load_into(wrapped, name, tensors, str(self._adapters[name].folder), ModelError)
            module = wrapped.merge_and_unload().eval().requires_grad_(False)
            self._merged[name] = module
            return module

    def sizes(self, name: str) -> dict[str, int]:
        """Parameters and file sizes of the base and of adapter name."""
        files = self._adapters[name]
        lora = sum(r * (cin * self._kernel(m) + cout) for m, (r, cin, cout) in files.modules.items())
        return {"base_parameters": sum(v.numel() for v in self._state.values()),
                "adapter_parameters": lora,
                "base_bytes": self.base.folder.joinpath("model.safetensors").stat().st_size
                if self.base.folder.joinpath("model.safetensors").is_file() else 0,
                "adapter_bytes": files.weights.stat().st_size}

    def _kernel(self, module: str) -> int:
        w = self.base.shapes.get(f"{module}.weight", ())
        return int(w[2] * w[3]) if len(w) == 4 else 1
