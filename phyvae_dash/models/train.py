"""`fit`: train a VAE on an image's patches with the boundary loss; return latent maps.

How a minibatch is built (the one idea that makes the boundary loss work): the inputs
of all scan positions live as one tensor on the device, indexed by the scan grid. A
minibatch is a few *contiguous* ``T x T`` tiles of that grid at random offsets, gathered
by advanced indexing, so the latent means of a tile form a real map whose total
variation is the length of the domain walls in it. A shuffled batch has no geometry.
"""
from __future__ import annotations

import math
import os
import platform
import time
import uuid
import warnings
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
import xarray as xr

from .. import __version__
from ..errors import FitCancelled, FitDiverged, SettingsError
from . import persist
from .losses import DEFAULT_EPS, reference_boundary_term
from .losses import boundary_loss as tv_loss
from .vae import build_model

#: Default weight of the TV boundary loss. With ``boundary_scale="kl"`` (default) it is
#: dimensionless: a wall density of one grid step of wall (jump of one prior std) per
#: grid point costs this fraction of the information (KL, nats per patch) the content
#: latents carry (see `boundary_price` and `losses`). Chosen with
#: ``benchmarks/quality.py --repeats 3`` (256 px, fit seeds 0-2, mean ARI; weight 0 /
#: 1 in spread units / 3 in prior units): graphene 0.972 / 0.953 / 0.970, stripes
#: 0.936 / 0.942 / 0.936, NiO-LSMO 0.938 / 0.924 / 0.929, PFM 0.822 / 0.846 / 0.898
#: (range 0.67-0.92 / 0.75-0.93 / 0.88-0.93). On the clean lattice phantoms the walls
#: are already at the grid's resolution without the prior (every misclassified cell is
#: a wall cell, at weight 0 as at 3); where it matters (PFM, and noisy or small images:
#: tests/test_train.py; ``benchmarks/quality.py --low-snr``, per-pixel SNR 1.5) it gives
#: shorter walls and stabler maps. Per-kind sweeps: ``features.PRESETS``' comments.
DEFAULT_BOUNDARY_WEIGHT = 3.0
#: Weight ``w`` of the authors' multiplicative form ``(w + term) * ELBO``.
DEFAULT_REFERENCE_WEIGHT = 0.5
MODELS = ("vae", "shift", "rotation")
BOUNDARY_LOSSES = ("tv", "anisotropic", "reference", "none")
BOUNDARY_UNITS = ("spread", "prior")
#: Patch visits the automatic epoch rule aims at, per model family (the invariant
#: models render every pixel through an MLP and cost several times more per patch).
VISITS = {"vae": 120_000, "shift": 40_000, "rotation": 40_000}
MIN_EPOCHS, MAX_EPOCHS = 8, 200
#: Below this spread (largest std over the map of a content latent, in prior std) the
#: latents have collapsed and `fit` warns; recorded as ``attrs["latent_spread"]``.
COLLAPSED_SPREAD = 0.1
LOSS_NAMES = ("loss_total", "loss_reconstruction", "loss_kl", "loss_boundary")


@dataclass
class Progress:
    """What the per-epoch callback receives.

    ``z_mean`` is the full content-latent map ``(latent, n_y, n_x)`` (NumPy) on the
    epochs where it was computed (every ``map_every`` epochs and the last one) and
    ``None`` on the others; computing it costs one encoder pass over all patches.
    """

    epoch: int
    epochs: int
    losses: dict[str, float]
    z_mean: np.ndarray | None
    elapsed_s: float
    eta_s: float


def _adam(parameters, lr: float) -> torch.optim.Optimizer:
    """Adam, fused into one kernel where this torch offers it (the same algorithm; on
    the CPU its step is ~5x faster, ~1 % of a shift-model training step)."""
    parameters = list(parameters)
    try:
        return torch.optim.Adam(parameters, lr=lr, fused=True)
    except (RuntimeError, TypeError, ValueError):  # older torch, or a device without it
        return torch.optim.Adam(parameters, lr=lr)


def pick_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` picks CUDA, then Apple MPS, then the CPU; anything else is passed on.

    Examples
    --------
    >>> pick_device("cpu")
    device(type='cpu')
    """
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise SettingsError(f"device {device!r} is not a torch device ({exc})") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SettingsError("device 'cuda' was asked for but CUDA is not available")
    return dev


def auto_epochs(n_patches: int, model: str = "vae") -> int:
    """Epochs so that training sees about ``VISITS[model]`` patches, within [8, 200].

    Deterministic (not timed), so that a seed reproduces a result on any machine.
    On the default demo (256 x 256 image, patch 16, stride 4: 3721 patches) the plain
    VAE gets 32 epochs.

    Examples
    --------
    >>> auto_epochs(3721), auto_epochs(100)
    (32, 200)
    """
    return int(min(MAX_EPOCHS, max(MIN_EPOCHS, round(VISITS[model] / max(n_patches, 1)))))


def choose_likelihood(data: np.ndarray) -> str:
    """``"bernoulli"`` for (nearly) binary data in [0, 1], ``"gaussian"`` otherwise.

    The authors used a Bernoulli likelihood on min-max-normalised intensities. On
    continuous data its curvature is weak (at most 1/4 per pixel), so the KL term wins
    and the latents collapse; a Gaussian with a learned noise scale follows the data's
    actual noise level and separated domains better in our tests (ARI 0.97 vs 0.89 on
    a noisy two-level disc). Bernoulli remains right for (nearly) binary images.

    Examples
    --------
    >>> choose_likelihood(np.array([0.0, 1.0, 1.0, 0.0])), choose_likelihood(np.array([0.2, 0.7]))
    ('bernoulli', 'gaussian')
    """
    if data.min() < 0 or data.max() > 1:
        return "gaussian"
    sample = data.reshape(-1)[:: max(1, data.size // 100_000)]
    saturated = np.mean((sample < 0.05) | (sample > 0.95))
    return "bernoulli" if saturated > 0.9 else "gaussian"


def boundary_price(terms: dict, latent_dim: int, scale: str = "kl") -> torch.Tensor | float:
    """What one unit of wall density costs per unit of ``boundary_weight``.

    ``"kl"``: the batch's mean KL of the content latents (nats per patch, no gradient),
    i.e. the information the latent maps carry. Why: the TV of latent maps can be
    lowered for free by shrinking every latent towards the prior mean, and with a fixed
    price a weight that cleans one image collapses the latents of a noisier one (where
    the latents carry less information). Pricing walls in units of that information
    makes collapse no cheaper than keeping the domains, and makes the weight a
    dimensionless fraction, the same for any patch size, channel count or noise level.
    ``"none"``: a fixed price of 1 nat per patch.
    """
    if scale == "none":
        return 1.0
    mu, std = terms["mu"][:, :latent_dim], terms["std"][:, :latent_dim]
    kl = 0.5 * (mu ** 2 + std ** 2 - 1.0) - torch.log(std)
    return kl.sum(1).mean().detach()


def boundary_ramp_factor(epoch: int, epochs: int, ramp: tuple[float, float]) -> float:
    """Fraction of ``boundary_weight`` applied at ``epoch`` (1-based) of ``epochs``.

    ``ramp = (start, end)`` in fractions of the training: 0 up to ``start``, rising
    linearly to 1 at ``end``. Why: early on the latents do not yet encode the domains,
    and a wall prior applied then smooths maps that are still wrong.

    Examples
    --------
    >>> [boundary_ramp_factor(e, 4, (0.25, 0.75)) for e in (1, 2, 3, 4)]
    [0.0, 0.5, 1.0, 1.0]
    """
    start, end = ramp
    progress = epoch / epochs
    if progress >= end:
        return 1.0
    if progress <= start:
        return 0.0
    return (progress - start) / (end - start)


def _as_image(image) -> xr.DataArray:
    if isinstance(image, np.ndarray):
        if image.ndim not in (2, 3):
            raise SettingsError(f"image must be 2-D or 3-D, got shape {image.shape}")
        dims = ("y", "x") if image.ndim == 2 else ("y", "x", "channel")
        image = xr.DataArray(image, dims=dims)
    if not isinstance(image, xr.DataArray):
        raise SettingsError(f"image must be an xarray.DataArray, got {type(image).__name__}")
    if image.ndim == 4 and image.dims == ("y", "x", "ky", "kx"):
        return image  # 4D-STEM: a diffraction pattern per scan position
    if image.ndim not in (2, 3) or image.dims[:2] != ("y", "x"):
        raise SettingsError(f"image must have dims ('y', 'x'[, channel]) or ('y', 'x', 'ky', "
                            f"'kx'), got {image.dims}")
    return image


def _check_settings(image, patch_size, stride, latent_dim, boundary_weight, model,
                    epochs, boundary_loss_kind, tile_size, batch_size, boundary_scale,
                    boundary_units="prior", boundary_ramp=(0.0, 0.0)):
    ny, nx = image.sizes["y"], image.sizes["x"]
    # A pattern or a spectrum is an input on its own: one scan position is enough.
    smallest = 1 if image.ndim == 4 or (image.ndim == 3 and image.dims[2] != "channel") else 2
    if not isinstance(patch_size, (int, np.integer)) or patch_size < smallest:
        raise SettingsError(f"patch_size must be an integer >= {smallest}, got {patch_size!r}")
    if patch_size > min(ny, nx):
        raise SettingsError(f"patch_size {patch_size} is larger than the image ({ny} x {nx} pixels)")
    if not isinstance(stride, (int, np.integer)) or stride < 1:
        raise SettingsError(f"stride must be an integer >= 1, got {stride!r}")
    if not isinstance(latent_dim, (int, np.integer)) or latent_dim < 1:
        raise SettingsError(f"latent_dim must be an integer >= 1, got {latent_dim!r}")
    if boundary_weight is not None and not (np.isfinite(boundary_weight) and boundary_weight >= 0):
        raise SettingsError(f"boundary_weight must be a finite number >= 0, got {boundary_weight!r}")
    if model not in MODELS:
        raise SettingsError(f"model must be one of {MODELS}, not {model!r}")
    if epochs is not None and (not isinstance(epochs, (int, np.integer)) or epochs < 1):
        raise SettingsError(f"epochs must be a positive integer or None, got {epochs!r}")
    if boundary_loss_kind not in BOUNDARY_LOSSES:
        raise SettingsError(f"boundary_loss must be one of {BOUNDARY_LOSSES}, not {boundary_loss_kind!r}")
    if boundary_scale not in ("kl", "none"):
        raise SettingsError(f"boundary_scale must be 'kl' or 'none', not {boundary_scale!r}")
    if boundary_units not in BOUNDARY_UNITS:
        raise SettingsError(f"boundary_units must be one of {BOUNDARY_UNITS}, not {boundary_units!r}")
    start, end = boundary_ramp
    if not 0 <= start <= end <= 1:
        raise SettingsError(f"boundary_ramp must be (start, end) with 0 <= start <= end <= 1, got {boundary_ramp!r}")
    if tile_size < 2 or batch_size < 1:
        raise SettingsError(f"tile_size must be >= 2 and batch_size >= 1 (got {tile_size}, {batch_size})")


@torch.no_grad()
def encode_all(model, data: torch.Tensor, chunk: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior means and stds of every input, in chunks (no gradients)."""
    mus, stds = [], []
    for i in range(0, data.shape[0], chunk):
        mu, std = model.encode(data[i:i + chunk])
        mus.append(mu.float())
        stds.append(std.float())
    return torch.cat(mus), torch.cat(stds)


def fit(
    image: xr.DataArray,
    *,
    patch_size: int,
    stride: int = 1,
    latent_dim: int = 2,
    boundary_weight: float | None = None,
    model: str = "vae",
    transform: str = "auto",
    epochs: int | None = None,
    device: str = "auto",
    seed: int = 0,
    callback: Callable[[Progress], Any] | None = None,
    cancel: Any = None,
    boundary_loss: str = "tv",
    tile_size: int = 8,
    batch_size: int = 256,
    lr: float = 2e-3,
    beta: float = 1.0,
    kl_warmup: float = 0.2,
    likelihood: str = "auto",
    shift_prior: float | None = None,
    angle_prior: float = 1.0,
    hidden: int = 128,
    map_every: int = 1,
    precision: str = "auto",
    eps: float = DEFAULT_EPS,
    num_threads: int | None = None,
    boundary_scale: str = "kl",
    boundary_units: str = "prior",
    boundary_ramp: tuple[float, float] = (0.0, 0.0),
) -> xr.Dataset:
    """Train a VAE with the boundary loss on an image's patches; return its latent maps.

    Parameters
    ----------
    image : xarray.DataArray
        ``(y, x)``, ``(y, x, channel)`` or ``(y, x, spectrum)`` (a NumPy array is wrapped
        with dims ``(y, x[, channel])``), or 4D-STEM ``(y, x, ky, kx)`` (numpy- or
        dask-backed; see ``features_4d``).
    patch_size, stride : int
        Square patches of ``patch_size`` pixels around scan positions ``stride`` apart.
        For 4D-STEM and spectra, ``patch_size=1, stride=1`` gives every scan position
        its own input; larger values average neighbouring positions.
    latent_dim : int
        Number of content latents (the maps in ``z_mean``).
    boundary_weight : float, optional
        Weight of the boundary loss (dimensionless with ``boundary_scale="kl"``, see
        `boundary_price`). ``None``: `DEFAULT_BOUNDARY_WEIGHT` for the TV forms, `DEFAULT_REFERENCE_WEIGHT` (the ``w`` of ``(w + term) * ELBO``) for
        ``boundary_loss="reference"``. ``0`` trains a plain VAE.
    model : {"vae", "shift", "rotation"}
        Plain VAE; shift-invariant (2 translation latents, coordinate decoder);
        rotation- and shift-invariant.
    transform : str
        Input transform passed to ``features.prepare_inputs`` (``"auto"`` chooses and
        says why in ``attrs["transform_reason"]``).
    epochs : int, optional
        ``None``: `auto_epochs` (about 120k patch visits for the plain VAE).
    device : str
        ``"auto"`` (CUDA, MPS, CPU), ``"cpu"``, ``"cuda"``, ...
    seed : int
        Seeds weights, tile offsets and sampling; on the CPU a seed reproduces a fit.
    callback : callable, optional
        Called after every epoch with a `Progress`.
    cancel : object with ``is_set()``, optional
        E.g. a ``threading.Event``; when set, `FitCancelled` is raised before the next
        step (so within one epoch).
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
        ``"auto"``: `choose_likelihood` (Bernoulli for nearly binary inputs in [0, 1],
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
        How the TV boundary loss is priced (see `boundary_price`): in units of the
        content latents' KL per patch (default; ``boundary_weight`` is then
        dimensionless) or in fixed nats per patch.
    boundary_units : {"prior", "spread"}
        Units of the latent jumps in the TV (``losses.boundary_loss``'s ``scale``): the
        prior std (default), or each latent's spread over the batch, so that the loss
        cannot be lowered by shrinking the latents, only by shorter walls. Measured,
        "spread" was not better: the prior-std form does shrink the latents (spread
        0.7-1.3 vs 2 prior std at weight 0) but segmentation does not suffer from it,
        while the scale-free form rewards latents that encode whatever is smoothest in
        space (a slow background) and failed on the 128 px stripe phantom for one of
        two seeds (ARI 0.05 vs 0.92); see DEFAULT_BOUNDARY_WEIGHT for the 256 px table.
    boundary_ramp : (float, float)
        ``(start, end)`` fractions of the epochs over which the boundary weight rises
        from 0 to its full value (`boundary_ramp_factor`); ``(0, 0)``: full weight from
        the start.
    num_threads : int, optional
        CPU threads for the fit (restored afterwards). ``None``: half the cores (at
        least 1). These small networks gain little from more intra-op threads, and on
        a busy machine (or with the dashboard serving from the same process)
        oversubscribed threads slow training down by an order of magnitude.

    Returns
    -------
    xarray.Dataset
        ``z_mean``, ``z_std`` ``("latent", "y", "x")``; for invariant models ``shift``
        ``("shift_dim", "y", "x")`` in pixels (read it as ``result["shift"]``:
        ``Dataset.shift`` is a method) and (rotation) ``angle`` ``("y", "x")`` in
        radians; ``loss_total``, ``loss_reconstruction``, ``loss_kl``,
        ``loss_boundary`` ``("epoch",)`` (per-patch means); every setting, ``device``,
        versions, ``elapsed_s`` and ``model_id`` in ``attrs``. The model is reached
        through ``result.pvd`` (see `persist`).

    Raises
    ------
    SettingsError, FitCancelled, FitDiverged

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> img = np.zeros((48, 48)); img[:, 24:] = 1.0
    >>> img = xr.DataArray(img + 0.05 * np.random.default_rng(0).normal(size=img.shape),
    ...                    dims=("y", "x"))
    >>> result = fit(img, patch_size=8, stride=2, epochs=3, device="cpu")
    >>> result.z_mean.dims, result.sizes["epoch"]
    (('latent', 'y', 'x'), 3)
    """
    settings = {k: v for k, v in locals().items() if k not in ("image", "num_threads")}
    threads = torch.get_num_threads()
    if num_threads is None:
        num_threads = max(1, (os.cpu_count() or 2) // 2)
    torch.set_num_threads(int(num_threads))
    try:
        return _fit(image, **settings)
    finally:
        torch.set_num_threads(threads)


def _fit(image, *, patch_size, stride, latent_dim, boundary_weight, model, transform, epochs,
         device, seed, callback, cancel, boundary_loss, tile_size, batch_size, lr, beta,
         kl_warmup, likelihood, shift_prior, angle_prior, hidden, map_every, precision, eps,
         boundary_scale, boundary_units, boundary_ramp):
    from .features import prepare_inputs

    t0 = time.perf_counter()
    image = _as_image(image)
    _check_settings(image, patch_size, stride, latent_dim, boundary_weight, model, epochs,
                    boundary_loss, tile_size, batch_size, boundary_scale, boundary_units,
                    tuple(boundary_ramp))
    if boundary_weight is None:
        boundary_weight = DEFAULT_REFERENCE_WEIGHT if boundary_loss == "reference" else DEFAULT_BOUNDARY_WEIGHT
    # 4D-STEM data may be dask-backed and larger than memory: its features are checked.
    if image.ndim != 4 and not np.all(np.isfinite(np.asarray(image.data, dtype=float))):
        raise SettingsError("the image contains NaN or Inf; fill them first (load(..., fill_nan=...))")
    dev = pick_device(device)

    inputs = prepare_inputs(image, patch_size, stride, transform=transform)
    n_y, n_x = inputs.data.shape[:2]
    feature_shape = tuple(inputs.data.shape[2:])
    n = n_y * n_x
    if model == "rotation" and len(feature_shape) != 3:
        raise SettingsError(f"model='rotation' needs patch inputs; transform {inputs.transform!r} gives vectors")
    data_np = np.ascontiguousarray(inputs.data.reshape(n, *feature_shape), dtype=np.float32)
    if likelihood == "auto":
        likelihood = choose_likelihood(data_np)
    epochs = int(epochs) if epochs is not None else auto_epochs(n, model)

    kwargs: dict[str, Any] = {"input_shape": feature_shape, "latent_dim": int(latent_dim),
                              "likelihood": likelihood, "hidden": int(hidden)}
    period = None
    if model in ("shift", "rotation"):
        if shift_prior is None:
            period = getattr(inputs, "period", None)
            if period is None:
                from .features import detect_lattice_period
                period = detect_lattice_period(image)
            shift_prior = period / 2 if period else patch_size / 4
        kwargs["shift_prior"] = float(shift_prior)
        if model == "rotation":
            kwargs["angle_prior"] = float(angle_prior)

    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)  # tile offsets: CPU generator, same on any device
    net = build_model({"family": model, **kwargs})
    net.to(dev)
    data = torch.from_numpy(data_np).to(dev)
    opt = _adam(net.parameters(), lr)

    amp_dtype = None
    if precision == "auto":
        precision = "float32"
        if dev.type == "cuda":
            precision = "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    if precision in ("bfloat16", "float16"):
        if dev.type != "cuda" and (precision, dev.type) != ("bfloat16", "cpu"):
            raise SettingsError(f"precision {precision!r} needs CUDA (device is {dev.type}); "
                                "the CPU takes 'bfloat16' or 'float32'")
        amp_dtype = getattr(torch, precision)
    scaler = torch.amp.GradScaler("cuda", enabled=precision == "float16")

    # Tiles of the scan grid; the grid's flat index of tile (k, i, j) is
    # (oy_k + i) * n_x + (ox_k + j).
    ty, tx = min(tile_size, n_y), min(tile_size, n_x)
    n_tiles = max(1, round(batch_size / (ty * tx)))
    steps = max(1, math.ceil(n / (n_tiles * ty * tx)))
    ar_y = torch.arange(ty).view(1, ty, 1)
    ar_x = torch.arange(tx).view(1, 1, tx)
    L = int(latent_dim)
    warm = kl_warmup * epochs if kl_warmup < 1 else float(kl_warmup)

    history = {k: [] for k in LOSS_NAMES}
    for epoch in range(1, epochs + 1):
        beta_t = beta * min(1.0, epoch / warm) if warm > 0 else beta
        ramp_t = boundary_ramp_factor(epoch, epochs, boundary_ramp)
        sums = torch.zeros(4, device=dev)
        for _ in range(steps):
            if cancel is not None and cancel.is_set():
                raise FitCancelled(f"fit cancelled at epoch {epoch} of {epochs}")
            oy = torch.randint(0, n_y - ty + 1, (n_tiles, 1, 1), generator=gen)
            ox = torch.randint(0, n_x - tx + 1, (n_tiles, 1, 1), generator=gen)
            idx = ((oy + ar_y) * n_x + (ox + ar_x)).reshape(-1).to(dev)
            with torch.autocast(dev.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                terms = net.loss_terms(data[idx])
            z_tiles = terms["mu"][:, :L].reshape(n_tiles, ty, tx, L).permute(0, 3, 1, 2)
            nelbo = terms["reconstruction"] + beta_t * terms["kl"]
            if boundary_loss == "reference":
                term = reference_boundary_term(z_tiles)
                mult = torch.as_tensor(boundary_weight + term, dtype=nelbo.dtype, device=dev)
                loss = (nelbo.view(n_tiles, -1) * mult[:, None]).mean()
                b = torch.tensor(float(term.mean()), device=dev)  # float32 (MPS has no float64)
            elif boundary_loss == "none":
                b = torch.zeros((), device=dev)
                loss = nelbo.mean()
            else:
                b = tv_loss(z_tiles, kind=boundary_loss, eps=eps, scale=boundary_units)
                loss = nelbo.mean() + (ramp_t * boundary_weight
                                       * boundary_price(terms, L, boundary_scale) * b)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            sums += torch.stack([loss.detach(), terms["reconstruction"].detach().mean(),
                                 terms["kl"].detach().mean(), b.detach().float()])
        means = (sums / steps).tolist()
        if not all(math.isfinite(v) for v in means):
            raise FitDiverged(
                f"training diverged at epoch {epoch} (losses {dict(zip(LOSS_NAMES, means))}); "
                f"try a smaller lr (now {lr}), a smaller boundary_weight (now {boundary_weight}) "
                "or check the image for extreme values")
        for k, v in zip(LOSS_NAMES, means):
            history[k].append(v)
        if callback is not None:
            z_map = None
            if epoch % max(1, map_every) == 0 or epoch == epochs:
                mu, _ = encode_all(net, data)
                z_map = mu[:, :L].T.reshape(L, n_y, n_x).cpu().numpy()
            elapsed = time.perf_counter() - t0
            callback(Progress(epoch, epochs, dict(zip(LOSS_NAMES, means)), z_map, elapsed,
                              elapsed / epoch * (epochs - epoch)))

    net.eval()
    mu, std = encode_all(net, data)
    ds = persist.latent_dataset(net, mu, std, inputs.y, inputs.x)
    spread = float(ds["z_mean"].std(("y", "x")).max())
    if spread < COLLAPSED_SPREAD:
        warnings.warn(
            f"the latent maps are nearly flat (spread {spread:.3f} prior std): the latents "
            f"collapsed; try a smaller boundary_weight (now {boundary_weight}), more epochs or "
            "another transform", RuntimeWarning, stacklevel=3)
    epoch_coord = np.arange(1, epochs + 1)
    for k in LOSS_NAMES:
        ds[k] = ("epoch", np.asarray(history[k]), {"units": "nats per patch" if k != "loss_boundary" else
                                                  ("wall length per grid point" if boundary_loss != "reference" else "1")})
    ds = ds.assign_coords(epoch=epoch_coord)

    model_id = uuid.uuid4().hex
    elapsed = time.perf_counter() - t0
    ds.attrs = {
        "title": "phyvae-dash fit",
        "model": model,
        "model_id": model_id,
        "patch_size": int(patch_size),
        "stride": int(stride),
        "latent_dim": int(latent_dim),
        "boundary_weight": float(boundary_weight),
        "boundary_loss": boundary_loss,
        "transform": str(inputs.transform),
        "transform_reason": str(getattr(inputs, "reason", "")),
        "input_channels": [str(c) for c in inputs.channels],
        "epochs": int(epochs),
        "steps_per_epoch": int(steps),
        "tile_size": int(min(ty, tx)),
        "tiles_per_batch": int(n_tiles),
        "batch_size": int(n_tiles * ty * tx),
        "lr": float(lr),
        "beta": float(beta),
        "kl_warmup": float(kl_warmup),
        "likelihood": likelihood,
        "hidden": int(hidden),
        "eps": float(eps),
        "boundary_scale": boundary_scale,
        "boundary_units": boundary_units,
        "boundary_ramp": [float(v) for v in boundary_ramp],
        "shift_prior": float(kwargs.get("shift_prior", 0.0)),
        "angle_prior": float(kwargs.get("angle_prior", 0.0)),
        "lattice_period": float(period) if period else 0.0,
        "seed": int(seed),
        "device": str(dev),
        "num_threads": int(torch.get_num_threads()),
        "precision": precision,
        "n_patches": int(n),
        "latent_spread": spread,
        "elapsed_s": float(elapsed),
        "patches_per_s": float(n * epochs / elapsed),
        "phyvae_dash_version": __version__,
        "torch_version": str(torch.__version__),
        "numpy_version": np.__version__,
        "xarray_version": xr.__version__,
        "python_version": platform.python_version(),
        "image_source": str(image.attrs.get("source", "")),
        "image_name": str(image.name or ""),
        "preprocessing": [str(p) for p in image.attrs.get("preprocessing", [])],
    }
    persist.register(model_id, net, inputs=data, grid_shape=(n_y, n_x), config=net.config)
    return ds
