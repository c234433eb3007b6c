"""The model families `fit` can train, by name, and `build_model` to rebuild one from
its saved ``config``. It sits above the three family modules, which know nothing of it."""
from __future__ import annotations

from .base import BaseVAE
from .rot_vae import RotVAE
from .shift_vae import ShiftVAE
from .vae import VAE

MODEL_CLASSES: dict[str, type[BaseVAE]] = {"vae": VAE, "shift": ShiftVAE, "rotation": RotVAE}
#: The names ``fit(model=...)`` takes.
MODELS = tuple(MODEL_CLASSES)


def build_model(config: dict) -> "BaseVAE":
    """Rebuild an (untrained) model from its ``config``.

    Examples
    --------
    >>> m = build_model({"family": "vae", "input_shape": [1, 8, 8], "latent_dim": 2})
    >>> build_model(m.config).config == m.config
    True
    """
    config = dict(config)
    family = config.pop("family")
    if "decoder_hidden" in config and "decoder_activation" not in config:
        # A saved coordinate-decoder model from before the activation was a setting:
        # it was trained with GELU (new models default to tanh).
        config["decoder_activation"] = "gelu"
    if family not in MODEL_CLASSES:
        raise KeyError(f"unknown model family {family!r}; known: {sorted(MODEL_CLASSES)}")
    return MODEL_CLASSES[family](**config)
