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
        Square patches of ``patch_size`` pixels around scan positions ``stride`` apart.
        ``"auto"`` (default): chosen from the image by ``auto.choose_settings`` (the
        lattice period, or label-free trials at a few scales); every automatic choice
        and its reason is recorded in ``attrs["auto_reasons"]``.
    latent_dim : int, optional
        Number of content latents (the maps in ``z_mean``); ``None``: chosen (2).
    boundary_weight : float, optional
        Weight of the boundary loss (dimensionless with ``boundary_scale="kl"``, see
        `losses.boundary_price`). ``None``: for the TV forms, chosen from the image's
        estimated noise (`train.DEFAULT_BOUNDARY_WEIGHT` on clean scans, more on noisy ones,
        see ``auto.noise_aware_weight``); `train.DEFAULT_REFERENCE_WEIGHT` (the ``w`` of
        ``(w + term) * ELBO``) for ``boundary_loss="reference"``. ``0`` trains a plain
        VAE.
    model : {"vae", "shift", "rotation"}
        Plain VAE; shift-invariant (2 translation latents, coordinate decoder);
        rotation- and shift-invariant.
    transform : str
        Input transform passed to ``features.prepare_inputs`` (``"auto"`` chooses and
        says why in ``attrs["transform_reason"]``; with an automatic patch size the
        transform is chosen together with it).
    epochs : int, optional
        ``None``: `train.auto_epochs` (about 120k patch visits for the plain VAE).
    device : str
        ``"auto"`` (CUDA, MPS, CPU), ``"cpu"``, ``"cuda"``, ...
    seed : int
        Seeds weights, tile offsets and sampling; on the CPU a seed reproduces a fit.
    boundary_loss : {"tv", "anisotropic", "reference", "none"}
        Isotropic TV (default), anisotropic TV, the authors' non-differentiable
        multiplicative term, or none.
    tile_size : int
        Side ``T`` of the contiguous tiles of the scan grid (clipped to the grid).
    batch_size : int
        Patches per step (rounded to whole tiles).
    lr : float
        Adam learning rate.
    beta, kl_warmup : float
        KL weight, and the warm-up over which it ramps up linearly from 0: a fraction
        of the epochs when below 1, else a number of epochs (``0`` disables it).
    likelihood : {"auto", "bernoulli", "gaussian"}
        ``"auto"``: `train.choose_likelihood` (Bernoulli for nearly binary inputs in [0, 1],
        Gaussian with a learned noise scale otherwise).
    shift_prior : float, optional
        Std of the shift prior in pixels (shift/rotation models). ``None``: half the
        lattice period (``Inputs.period`` or ``features.detect_lattice_period``), else
        patch_size / 4.
    angle_prior : float
        Std of the angle prior in radians (rotation model).
    hidden : int
        Width of the encoder/decoder hidden layers.
    map_every : int
        Compute the full latent map for the callback every this many epochs.
    precision : {"auto", "float32", "bfloat16", "float16"}
        ``"auto"``: bf16 (or fp16) autocast on CUDA, float32 elsewhere. ``"bfloat16"``
        also runs on the CPU (useful where the CPU has bf16 matrix units, and how the
        test suite exercises the mixed-precision path without a GPU); ``"float16"``
        needs CUDA.
    eps : float
        Smoothing of the isotropic TV.
    boundary_scale : {"kl", "none"}
        How the TV boundary loss is priced (see `losses.boundary_price`): in units of the
        content latents' KL per patch (default; ``boundary_weight`` is then
        dimensionless) or in fixed nats per patch.
    boundary_units : {"prior", "spread"}
        Units of the latent jumps in the TV (``losses.boundary_loss``'s ``scale``): the
        prior std (default), or each latent's spread over the batch, so that the loss
        cannot be lowered by shrinking the latents, only by shorter walls. "spread" was
        not better: the prior-std form does shrink the latents, but segmentation does not
        suffer from it, while the scale-free form rewards latents that encode whatever
        is smoothest in space (a slow background) and failed on a stripe phantom
        (``benchmarks/quality.py``).
    boundary_ramp : (float, float)
        ``(start, end)`` fractions of the epochs over which the boundary weight rises
        from 0 to its full value (`train.boundary_ramp_factor`); ``(0, 0)``: full weight from
        the start.
    num_threads : int, optional
        CPU threads for the fit (restored afterwards). ``None``: half the cores (at
        least 1). These small networks gain little from more intra-op threads, and on
        a busy machine (or with the dashboard serving from the same process)
        oversubscribed threads slow training down badly.
    sample_positions : int, optional
        Train on a random sample of about this many scan positions, in contiguous
        regions read from the image's chunks (`sampling`). ``None``: every position
        when their inputs fit in ``sampling.INPUT_BUDGET_BYTES``, else a sample of that
        size, so memory stays flat for images larger than memory (``load(path,
        lazy=True)``). Whether the image is dask-backed never changes the fit. A
        sampled fit returns dask-backed latent maps, encoded block by block
        (`encode.encode_chunked`): write them with ``to_zarr``.
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
        ramp = self.boundary_ramp
        if not (isinstance(ramp, (tuple, list, np.ndarray)) and len(ramp) == 2):
            raise SettingsError(f"boundary_ramp must be (start, end), got {ramp!r}")
        object.__setattr__(self, "boundary_ramp", tuple(float(v) for v in ramp))
        for name in ("patch_size", "stride"):
            value = getattr(self, name)
            if value is None:
                object.__setattr__(self, name, AUTO)
            elif value != AUTO and not _is_int(value):
                raise SettingsError(f"{name} must be an integer or 'auto', got {value!r}")
        if _is_int(self.patch_size) and self.patch_size < 1:
            raise SettingsError(f"patch_size must be an integer >= 1, got {self.patch_size!r}")
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
        start, end = self.boundary_ramp
        if not 0 <= start <= end <= 1:
            raise SettingsError("boundary_ramp must be (start, end) with 0 <= start <= end <= 1, "
                                f"got {self.boundary_ramp!r}")
        for name in ("tile_size", "batch_size", "hidden", "map_every"):
            if not _is_int(getattr(self, name)):
                raise SettingsError(f"{name} must be an integer, got {getattr(self, name)!r}")
        for name in ("lr", "beta", "kl_warmup", "angle_prior", "eps"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float, np.number)) and not isinstance(value, bool)
                    and np.isfinite(value)):
                raise SettingsError(f"{name} must be a finite number, got {value!r}")
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

    def check_image(self, image) -> None:
        """Raise `SettingsError` where a fixed setting cannot work on this image."""
        ny, nx = image.sizes["y"], image.sizes["x"]
        if not _is_int(self.patch_size):
            return
        # A pattern or a spectrum is an input on its own; an image patch needs 2 px.
        per_position = image.ndim == 4 or (image.ndim == 3 and image.dims[2] != "channel")
        if self.patch_size < 2 and not per_position:
            raise SettingsError(f"patch_size must be an integer >= 2 for an image, got {self.patch_size!r}")
        if self.patch_size > min(ny, nx):
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
