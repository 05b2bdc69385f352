"""The neural mouth renderer's model, its LoRA identity adapters, training and loading.

torch and peft are imported only inside this package's modules (and render/neural.py),
never by `import facetalk` or at CLI start-up: install them with `pip install facetalk[neural]`.

Modules:
- data: aligned face crops, the lower-half mask and the mouth-shape drawing (numpy only);
- check: adapter and base-model file checks on safetensors headers (no torch), shared with
  the identity registry;
- model: the U-Net (MouthUNet) and the patch discriminator (torch);
- store: a base model folder on disk (config.json + model.safetensors, sha256-checked);
- adapters: LoRA adapters (peft) saved, checked, loaded, switched and merged; BaseModelPool;
- train: base, adapter and from-scratch training with checkpoints and resume;
- cli: `facetalk base ...` and `facetalk identity train`.
"""

NEURAL_EXTRA_HINT = "install the neural extra: pip install 'facetalk[neural]' (torch==2.13.0 and peft)"


def require_torch():
    """Import torch, or raise FacetalkError naming the extra to install."""
    try:
        import torch
    except ImportError:  # pragma: no cover - the extra is installed where tests run
        from ..errors import FacetalkError

        raise FacetalkError(f"the neural renderer needs torch: {NEURAL_EXTRA_HINT}") from None
    return torch
