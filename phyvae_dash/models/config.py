"""`FitConfig`: every setting of a fit in one documented, self-validating object.

`fit(image, **settings)` stays the front door; it builds a `FitConfig` from its
keywords, and the result stores it in ``attrs["fit_config"]`` (JSON), so that
``FitConfig.from_attrs(result.attrs)`` gives back the exact settings of a fit, also
after a NetCDF round trip. Settings left at ``"auto"``/``None`` are those that `fit`
chooses from the image (`auto.choose_settings`); `FitConfig.resolved` fills them in.

Examples
--------
>>> config = FitConfig(patch_size=16, stride=4, boundary_weight=3.0)
>>> config.patch_size, config.model
(16, 'vae')
>>> FitConfig.from_attrs(config.to_attrs()) == config
True
>>> FitConfig(model="gan")
Traceback (most recent call last):
...
phyvae_dash.errors.SettingsError: model must be one of ('vae', 'shift', 'rotation'), not 'gan'
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field, fields

import numpy as np

from ..errors import SettingsError
from .losses import DEFAULT_EPS
from .registry import MODELS

__all__ = ["FitConfig", "BOUNDARY_LOSSES", "BOUNDARY_UNITS", "PRECISIONS", "AUTO"]

AUTO = "auto"
BOUNDARY_LOSSES = ("tv", "anisotropic", "reference", "none")
BOUNDARY_UNITS = ("spread", "prior")
BOUNDARY_SCALES = ("kl", "none")
PRECISIONS = ("auto", "float32", "bfloat16", "float16")
LIKELIHOODS = ("auto", "bernoulli", "gaussian")
#: The attr that holds the config as JSON.
ATTR = "fit_config"


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


@dataclass(frozen=True)
class FitConfig:
    """The settings of one fit (see `phyvae_dash.models.train.fit` for each in full).

    Attributes
    ----------
    patch_size, stride : int or "auto"
        Patch side and step between scan positions, in pixels; ``"auto"``: chosen
        from the image.
    latent_dim : int or None
        Content latents; ``None``: chosen.
    boundary_weight : float or None
        Weight of the boundary loss; ``None``: chosen from the image's noise (TV) or
        the authors' ``w`` (``boundary_loss="reference"``).
    model : {"vae", "shift", "rotation"}
    transform : str
        Input transform; ``"auto"``: chosen.
    epochs : int or None
        ``None``: from the number of patches (`train.auto_epochs`).
    device : str
    seed : int
    boundary_loss : {"tv", "anisotropic", "reference", "none"}
    tile_size, batch_size : int
        Side of the contiguous tiles of the scan grid, and patches per step.
    lr, beta, kl_warmup : float
    likelihood : {"auto", "bernoulli", "gaussian"}
    shift_prior : float or None
    angle_prior, eps : float
    hidden, map_every : int
    precision : {"auto", "float32", "bfloat16", "float16"}
    num_threads : int or None
    boundary_scale : {"kl", "none"}
    boundary_units : {"prior", "spread"}
    boundary_ramp : (float, float)
    sample_positions : int or None
        Train on a sample of about this many scan positions (big images).
    """

    patch_size: int | str = AUTO
    stride: int | str = AUTO
    latent_dim: int | None = None
    boundary_weight: float | None = None
    model: str = "vae"
    transform: str = AUTO
    epochs: int | None = None
    device: str = AUTO
    seed: int = 0
    boundary_loss: str = "tv"
    tile_size: int = 8
    batch_size: int = 256
    lr: float = 2e-3
    beta: float = 1.0
    kl_warmup: float = 0.2
    likelihood: str = AUTO
    shift_prior: float | None = None
    angle_prior: float = 1.0
    hidden: int = 128
    map_every: int = 1
    precision: str = AUTO
    eps: float = DEFAULT_EPS
    num_threads: int | None = None
    boundary_scale: str = "kl"
    boundary_units: str = "prior"
    boundary_ramp: tuple[float, float] = field(default=(0.0, 0.0))
    sample_positions: int | None = None

    def __post_init__(self):
        object.__setattr__(self, "boundary_ramp", tuple(float(v) for v in self.boundary_ramp))
        for name in ("patch_size", "stride"):
            value = getattr(self, name)
            if value is None:
                object.__setattr__(self, name, AUTO)
            elif value != AUTO and not _is_int(value):
                raise SettingsError(f"{name} must be an integer or 'auto', got {value!r}")
        if _is_int(self.patch_size) and self.patch_size < 2:
            raise SettingsError(f"patch_size must be an integer >= 2, got {self.patch_size!r}")
        if _is_int(self.stride) and self.stride < 1:
            raise SettingsError(f"stride must be an integer >= 1, got {self.stride!r}")
        if self.latent_dim is not None and (not _is_int(self.latent_dim) or self.latent_dim < 1):
            raise SettingsError(f"latent_dim must be an integer >= 1, got {self.latent_dim!r}")
        w = self.boundary_weight
        if w is not None and not (isinstance(w, (int, float, np.number)) and np.isfinite(w) and w >= 0):
            raise SettingsError(f"boundary_weight must be a finite number >= 0, got {w!r}")
        self._one_of("model", MODELS)
        if self.epochs is not None and (not _is_int(self.epochs) or self.epochs < 1):
            raise SettingsError(f"epochs must be a positive integer or None, got {self.epochs!r}")
        self._one_of("boundary_loss", BOUNDARY_LOSSES)
        self._one_of("boundary_scale", BOUNDARY_SCALES)
        self._one_of("boundary_units", BOUNDARY_UNITS)
        self._one_of("precision", PRECISIONS)
        self._one_of("likelihood", LIKELIHOODS)
        start, end = self.boundary_ramp if len(self.boundary_ramp) == 2 else (1, 0)
        if not 0 <= start <= end <= 1:
            raise SettingsError("boundary_ramp must be (start, end) with 0 <= start <= end <= 1, "
                                f"got {self.boundary_ramp!r}")
        if self.tile_size < 2 or self.batch_size < 1:
            raise SettingsError(f"tile_size must be >= 2 and batch_size >= 1 "
                                f"(got {self.tile_size}, {self.batch_size})")
        if self.lr <= 0 or self.beta < 0 or self.kl_warmup < 0:
            raise SettingsError(f"lr must be > 0 and beta, kl_warmup >= 0 "
                                f"(got {self.lr}, {self.beta}, {self.kl_warmup})")
        if self.sample_positions is not None and (not _is_int(self.sample_positions)
                                                  or self.sample_positions < 1):
            raise SettingsError(f"sample_positions must be a positive integer or None, "
                                f"got {self.sample_positions!r}")

    def _one_of(self, name: str, allowed) -> None:
        if getattr(self, name) not in allowed:
            raise SettingsError(f"{name} must be one of {tuple(allowed)}, not {getattr(self, name)!r}")

    # -- what is left for the image to decide -------------------------------------------
    @property
    def automatic(self) -> tuple[str, ...]:
        """The settings that `fit` will choose from the image."""
        auto = [n for n in ("patch_size", "stride", "transform") if getattr(self, n) == AUTO]
        if self.latent_dim is None:
            auto.append("latent_dim")
        if self.boundary_weight is None and self.boundary_loss in ("tv", "anisotropic"):
            auto.append("boundary_weight")
        return tuple(auto)

    def check_image(self, ny: int, nx: int) -> None:
        """Raise `SettingsError` where a fixed setting cannot work on an image this size."""
        if _is_int(self.patch_size) and self.patch_size > min(ny, nx):
            raise SettingsError(f"patch_size {self.patch_size} is larger than the image "
                                f"({ny} x {nx} pixels)")

    def replace(self, **changes) -> "FitConfig":
        """A copy with some settings changed (validated again)."""
        return dataclasses.replace(self, **changes)

    # -- attrs ---------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v)
                for f in fields(self)}

    def to_attrs(self) -> dict:
        """``{"fit_config": <JSON>}``: NetCDF-safe, and `from_attrs` inverts it."""
        return {ATTR: json.dumps(self.to_dict(), default=float)}

    @classmethod
    def from_attrs(cls, attrs: dict) -> "FitConfig":
        """The config a result was fitted with (from ``attrs["fit_config"]``)."""
        if ATTR not in attrs:
            raise SettingsError("these attrs hold no fit_config (not a fit result, or one "
                                "written by an older phyvae-dash)")
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in json.loads(attrs[ATTR]).items() if k in known}
        return cls(**values)
