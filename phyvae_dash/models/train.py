"""`fit`: train a VAE on an image's patches with the boundary loss; return latent maps.

How a minibatch is built (the one idea that makes the boundary loss work): the inputs
of all scan positions live as one tensor on the device, indexed by the scan grid. A
minibatch is a few *contiguous* ``T x T`` tiles of that grid at random offsets, gathered
by advanced indexing, so the latent means of a tile form a real map whose total
variation is the length of the domain walls in it. A shuffled batch has no geometry.
"""
from __future__ import annotations

import dataclasses
import math
import os
import platform
import threading
import time
import uuid
import warnings
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
import xarray as xr

from .. import __version__
from ..data.attrs import as_list
from ..errors import FitCancelled, FitDiverged, SettingsError
from . import persist
from .auto import DEFAULT_BOUNDARY_WEIGHT, choose_settings
from .config import FitConfig
from .device import pick_device
from .encode import as_image, encode_all, encode_chunked, is_lazy, latent_dataset
from .features import detect_lattice_period
from .losses import BoundaryTerm, boundary_term_for
from .registry import MODELS, build_model  # noqa: F401 (MODELS: the names fit takes)
from .sampling import centre_crop, gather_inputs

#: Weight ``w`` of the authors' multiplicative form ``(w + term) * ELBO``.
DEFAULT_REFERENCE_WEIGHT = 0.5
#: Patch visits the automatic epoch rule aims at, per model family (the invariant
#: models render every pixel through an MLP and cost several times more per patch).
VISITS = {"vae": 120_000, "shift": 40_000, "rotation": 40_000}
MIN_EPOCHS, MAX_EPOCHS = 8, 200
#: Below this spread (largest std over the map of a content latent, in prior std) the
#: latents have collapsed and `fit` warns; recorded as ``attrs["latent_spread"]``.
COLLAPSED_SPREAD = 0.1
LOSS_NAMES = ("loss_total", "loss_reconstruction", "loss_kl", "loss_boundary")

# torch's weight initialisation draws from the process-wide RNG, and its thread count is
# process-wide too: fits running at once (dashboard sessions, a notebook's threads) take
# these locks so that each fit depends on its own seed only.
_INIT_LOCK = threading.Lock()
_THREADS_LOCK = threading.Lock()
_threads_state = {"active": 0, "saved": 0}


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
    """Adam, fused into one kernel where this torch offers it (the same algorithm, in
    fewer kernel launches; ``benchmarks/speed.py`` times the training step)."""
    parameters = list(parameters)
    try:
        return torch.optim.Adam(parameters, lr=lr, fused=True)
    except (RuntimeError, TypeError, ValueError):  # older torch, or a device without it
        return torch.optim.Adam(parameters, lr=lr)


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
    actual noise level and separated domains better on a noisy two-level disc
    (tests/test_train.py). Bernoulli remains right for (nearly) binary images.

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


def fit(image: xr.DataArray, config: FitConfig | None = None, *,
        callback: Callable[[Progress], Any] | None = None, cancel: Any = None,
        scheduler: Any = None, boundary_term: BoundaryTerm | None = None,
        **settings) -> xr.Dataset:
    """Train a VAE with the boundary loss on an image's patches; return its latent maps.

    Parameters
    ----------
    image : xarray.DataArray
        ``(y, x)``, ``(y, x, channel)`` or ``(y, x, spectrum)`` (a NumPy array is wrapped
        with dims ``(y, x[, channel])``: give a 3-D spectrum cube as a DataArray whose
        third dim is not ``channel``), or 4D-STEM ``(y, x, ky, kx)`` (see
        ``features_4d``; ``patch_size=1`` gives every scan position its own pattern). Images whose inputs exceed the sampling budget
        (``FitConfig.sample_positions``) train on a sample of regions, read from dask
        chunks when the image is lazy.
    config : FitConfig, optional
        All settings at once (e.g. ``FitConfig.from_attrs(other_result.attrs)`` to
        repeat a fit); keywords given as well override its values.
    **settings
        Any `FitConfig` field, each documented there: ``patch_size``, ``stride``,
        ``latent_dim``, ``boundary_weight``, ``model``, ``transform``, ``epochs``,
        ``device``, ``seed`` and the training details. Left out, ``patch_size``,
        ``stride``, ``latent_dim``, ``boundary_weight`` and ``transform`` are chosen from
        the image (`auto.choose_settings`; a lazy image on its central crop), each with
        its reason in ``attrs["auto_reasons"]``, and ``epochs`` from the number of
        patches; settings you give are never changed.
    callback : callable, optional
        Called after every epoch with a `Progress`.
    cancel : object with ``is_set()``, optional
        E.g. a ``threading.Event``; when set, `FitCancelled` is raised before the next
        step (so within one epoch).
    scheduler : optional
        Dask scheduler for the passes over a sampled (big) image (a name,
        ``"tcp://..."`` or a ``distributed.Client``). ``None``: dask's default.
    boundary_term : BoundaryTerm, optional
        Replaces the term ``boundary_loss`` names (see `losses.BoundaryTerm`).

    Returns
    -------
    xarray.Dataset
        ``z_mean``, ``z_std`` ``("latent", "y", "x")``; for invariant models ``shift``
        ``("shift_dim", "y", "x")`` in pixels (read it as ``result["shift"]``:
        ``Dataset.shift`` is a method) and (rotation) ``angle`` ``("y", "x")`` in
        radians; ``loss_total``, ``loss_reconstruction``, ``loss_kl``,
        ``loss_boundary`` ``("epoch",)`` (per-patch means); every setting as it was
        used (also as one `FitConfig` in ``attrs["fit_config"]``), ``device``,
        versions, ``elapsed_s`` and ``model_id`` in ``attrs``. The model is reached
        through ``result.pvd`` (see `persist`).

    Raises
    ------
    SettingsError, FitCancelled, FitDiverged

    See Also
    --------
    FitConfig : every setting, documented.
    phyvae_dash.models.auto.choose_settings : what ``fit(image)`` chooses, and why.
    phyvae_dash.analysis.segment.segment : domains from the latent maps.

    References
    ----------
    .. [1] A. Biswas, M. Ziatdinov, S. V. Kalinin, "Combining variational autoencoders
       and physical bias for improved microscopy data analysis", *Mach. Learn.: Sci.
       Technol.* (2023), doi:10.1088/2632-2153/acf6a9.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> img = np.zeros((48, 48)); img[:, 24:] = 1.0
    >>> img = xr.DataArray(img + 0.05 * np.random.default_rng(0).normal(size=img.shape),
    ...                    dims=("y", "x"))
    >>> result = fit(img, patch_size=8, stride=2, epochs=3, device="cpu")
    >>> result.z_mean.dims, result.sizes["epoch"]
    (('latent', 'y', 'x'), 3)
    >>> FitConfig.from_attrs(result.attrs).patch_size
    8
    >>> auto = fit(img, epochs=3, device="cpu")        # every setting from the image
    >>> auto.attrs["auto_reasons"][0].startswith(f"patch_size {auto.attrs['patch_size']}:")
    True
    """
    known = [f.name for f in dataclasses.fields(FitConfig)]
    unknown = sorted(set(settings) - set(known))
    if unknown:
        raise SettingsError(f"fit got unknown settings {unknown}; it takes {', '.join(known)}")
    config = FitConfig(**settings) if config is None else config.replace(**settings)
    num_threads = config.num_threads or max(1, (os.cpu_count() or 2) // 2)
    _enter_threads(int(num_threads))
    try:
        image = as_image(image)
        config.check_image(image)
        # 4D-STEM may be larger than memory: its features are checked instead.
        if image.ndim != 4 and not bool(np.isfinite(image.data).all()):  # per chunk if lazy
            raise SettingsError("the image contains NaN or Inf; fill them first "
                                "(load(..., fill_nan=...))")
        config, auto_attrs = _automatic_settings(image, config)
        result = _fit(image, config, callback, cancel, scheduler, boundary_term)
        if auto_attrs:
            if auto_attrs.pop("_transform_chosen", False):
                result.attrs["transform_reason"] = auto_attrs.pop("_transform_reason")
            result.attrs["elapsed_s"] += auto_attrs["auto_elapsed_s"]
            result.attrs.update(auto_attrs)
        return result
    finally:
        _leave_threads()


def _enter_threads(num_threads: int) -> None:
    """Set torch's (process-wide) thread count for the first of concurrent fits; the
    others share it, and the last one out restores the caller's."""
    with _THREADS_LOCK:
        if _threads_state["active"] == 0:
            _threads_state["saved"] = torch.get_num_threads()
            torch.set_num_threads(num_threads)
        _threads_state["active"] += 1


def _leave_threads() -> None:
    with _THREADS_LOCK:
        _threads_state["active"] -= 1
        if _threads_state["active"] == 0:
            torch.set_num_threads(_threads_state["saved"])


def _automatic_settings(image, config: FitConfig) -> tuple[FitConfig, dict]:
    """Replace the "auto"/None settings by ``auto.choose_settings``' choices.

    Returns the config for `_fit` and the attrs that record the choices (empty when
    the user set everything).
    """
    if not config.automatic:
        return config, {}
    tv = config.boundary_loss in ("tv", "anisotropic")
    # A lazy (big) image is judged on its centre: the trials, the noise estimate and
    # the lattice search would otherwise read the whole scan into memory.
    judged = centre_crop(image) if is_lazy(image) else image
    choice = choose_settings(
        judged, patch_size=config.patch_size, stride=config.stride,
        transform=config.transform, latent_dim=config.latent_dim,
        boundary_weight=config.boundary_weight if tv else 0.0, seed=config.seed)
    chosen = choice.fit_kwargs()
    if not tv:
        chosen["boundary_weight"] = config.boundary_weight
    attrs = choice.as_attrs()
    attrs["_transform_chosen"] = config.transform == "auto"
    attrs["_transform_reason"] = choice.reasons.get("transform", "")
    return config.replace(**chosen), attrs


@dataclass
class _Run:
    """What `_build` sets up for one fit: the inputs on the device, the model, the
    optimiser and precision, the random generators and the tile geometry."""

    config: FitConfig
    inputs: Any
    data: torch.Tensor
    net: torch.nn.Module
    device: torch.device
    opt: torch.optim.Optimizer
    amp_dtype: Any
    scaler: Any
    tile_gen: torch.Generator
    noise_gen: torch.Generator
    tile: tuple[int, int]
    n_tiles: int
    steps: int
    period: float | None


def _fit(image, config: FitConfig, callback, cancel, scheduler, boundary_term) -> xr.Dataset:
    t0 = time.perf_counter()
    run = _build(image, config)
    term = boundary_term or boundary_term_for(run.config.boundary_loss, eps=config.eps,
                                              units=config.boundary_units,
                                              scale=config.boundary_scale)
    history = _train(run, term, callback, cancel, t0)
    return _assemble(run, image, history, scheduler, t0)


def _build(image, config: FitConfig) -> _Run:
    """Inputs, model, optimiser and generators; every "auto" left is resolved here and
    written back into the returned run's config."""
    if config.boundary_weight is None:
        config = config.replace(boundary_weight=DEFAULT_REFERENCE_WEIGHT
                                if config.boundary_loss == "reference" else DEFAULT_BOUNDARY_WEIGHT)
    dev = pick_device(config.device)
    inputs = gather_inputs(image, config.patch_size, config.stride, config.transform,
                           seed=config.seed, sample_positions=config.sample_positions)
    feature_shape = inputs.feature_shape
    n = inputs.data.shape[0]
    if config.model == "rotation" and len(feature_shape) != 3:
        raise SettingsError(f"model='rotation' needs patch inputs; transform {inputs.transform!r} gives vectors")
    resolved = {"likelihood": config.likelihood if config.likelihood != "auto"
                else choose_likelihood(inputs.data),
                "epochs": config.epochs or auto_epochs(n, config.model)}
    kwargs: dict[str, Any] = {"input_shape": feature_shape, "latent_dim": int(config.latent_dim),
                              "likelihood": resolved["likelihood"], "hidden": int(config.hidden)}
    period = None
    if config.model in ("shift", "rotation"):
        shift_prior = config.shift_prior
        if shift_prior is None:
            period = inputs.period
            if period is None:
                period = detect_lattice_period(centre_crop(image) if inputs.sampled else image)
            shift_prior = period / 2 if period else config.patch_size / 4
        kwargs["shift_prior"] = resolved["shift_prior"] = float(shift_prior)
        if config.model == "rotation":
            kwargs["angle_prior"] = float(config.angle_prior)

    with _INIT_LOCK, torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        net = build_model({"family": config.model, **kwargs})
        after_init = torch.get_rng_state()
    tile_gen = torch.Generator().manual_seed(config.seed)  # CPU generator: the same on any device
    # Reparameterisation noise: the stream the process-wide generator would have given
    # after seeding and initialising, so that a seed gives the same fit as before.
    noise_gen = torch.Generator(device=dev)
    if dev.type == "cpu":
        noise_gen.set_state(after_init)
    else:
        noise_gen.manual_seed(config.seed)
    net.to(dev)

    precision = config.precision
    if precision == "auto":
        precision = "float32"
        if dev.type == "cuda":
            precision = "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    amp_dtype = None
    if precision in ("bfloat16", "float16"):
        if dev.type != "cuda" and (precision, dev.type) != ("bfloat16", "cpu"):
            raise SettingsError(f"precision {precision!r} needs CUDA (device is {dev.type}); "
                                "the CPU takes 'bfloat16' or 'float32'")
        amp_dtype = getattr(torch, precision)
    resolved["precision"] = precision

    ty, tx = min(config.tile_size, inputs.gy), min(config.tile_size, inputs.gx)
    n_tiles = max(1, round(config.batch_size / (ty * tx)))
    return _Run(config=config.replace(**resolved), inputs=inputs,
                data=torch.from_numpy(inputs.data).to(dev), net=net, device=dev,
                opt=_adam(net.parameters(), config.lr), amp_dtype=amp_dtype,
                scaler=torch.amp.GradScaler("cuda", enabled=precision == "float16"),
                tile_gen=tile_gen, noise_gen=noise_gen, tile=(ty, tx), n_tiles=n_tiles,
                steps=max(1, math.ceil(n / (n_tiles * ty * tx))), period=period)


def _tile_indices(run: _Run) -> torch.Tensor:
    """Flat indices of a batch of random contiguous tiles of the scan grid: the grid's
    index of tile (k, i, j) is (oy_k + i) * n_x + (ox_k + j)."""
    (ty, tx), k, inputs = run.tile, run.n_tiles, run.inputs
    n_y, n_x = inputs.gy, inputs.gx
    oy = torch.randint(0, n_y - ty + 1, (k, 1, 1), generator=run.tile_gen)
    ox = torch.randint(0, n_x - tx + 1, (k, 1, 1), generator=run.tile_gen)
    idx = (oy + torch.arange(ty).view(1, ty, 1)) * n_x + (ox + torch.arange(tx).view(1, 1, tx))
    if inputs.regions > 1:  # each tile inside one sampled region
        idx = idx + torch.randint(0, inputs.regions, (k, 1, 1), generator=run.tile_gen) * (n_y * n_x)
    return idx.reshape(-1).to(run.device)


def _train(run: _Run, term: BoundaryTerm, callback, cancel, t0: float) -> dict[str, list]:
    """The training loop; returns the per-epoch mean losses."""
    config, net, dev = run.config, run.net, run.device
    L, epochs = int(config.latent_dim), int(config.epochs)
    (ty, tx), inputs = run.tile, run.inputs
    warm = config.kl_warmup * epochs if config.kl_warmup < 1 else float(config.kl_warmup)
    history = {k: [] for k in LOSS_NAMES}
    for epoch in range(1, epochs + 1):
        beta_t = config.beta * min(1.0, epoch / warm) if warm > 0 else config.beta
        weight = config.boundary_weight * boundary_ramp_factor(epoch, epochs, config.boundary_ramp)
        sums = torch.zeros(4, device=dev)
        for _ in range(run.steps):
            if cancel is not None and cancel.is_set():
                raise FitCancelled(f"fit cancelled at epoch {epoch} of {epochs}")
            with torch.autocast(dev.type, dtype=run.amp_dtype, enabled=run.amp_dtype is not None):
                terms = net.loss_terms(run.data[_tile_indices(run)], generator=run.noise_gen)
            z_tiles = terms["mu"][:, :L].reshape(run.n_tiles, ty, tx, L).permute(0, 3, 1, 2)
            nelbo = terms["reconstruction"] + beta_t * terms["kl"]
            loss, boundary = term(nelbo, z_tiles, terms, weight)
            run.opt.zero_grad(set_to_none=True)
            run.scaler.scale(loss).backward()
            run.scaler.step(run.opt)
            run.scaler.update()
            sums += torch.stack([loss.detach(), terms["reconstruction"].detach().mean(),
                                 terms["kl"].detach().mean(), boundary.detach().float()])
        means = (sums / run.steps).tolist()
        if not all(math.isfinite(v) for v in means):
            raise FitDiverged(
                f"training diverged at epoch {epoch} (losses {dict(zip(LOSS_NAMES, means))}); "
                f"try a smaller lr (now {config.lr}), a smaller boundary_weight "
                f"(now {config.boundary_weight}) or check the image for extreme values")
        for k, v in zip(LOSS_NAMES, means):
            history[k].append(v)
        if callback is not None:
            z_map = None
            if not inputs.sampled and (epoch % max(1, config.map_every) == 0 or epoch == epochs):
                mu, _ = encode_all(net, run.data)
                z_map = mu[:, :L].T.reshape(L, inputs.gy, inputs.gx).cpu().numpy()
            elapsed = time.perf_counter() - t0
            callback(Progress(epoch, epochs, dict(zip(LOSS_NAMES, means)), z_map, elapsed,
                              elapsed / epoch * (epochs - epoch)))
    return history


def _assemble(run: _Run, image, history: dict, scheduler, t0: float) -> xr.Dataset:
    """The result: latent maps of every scan position, the loss history, the attrs; the
    model is registered for ``result.pvd``."""
    config, net, inputs = run.config, run.net, run.inputs
    L, n = int(config.latent_dim), run.data.shape[0]
    net.eval()
    mu, std = encode_all(net, run.data)
    if inputs.sampled:  # the whole scan block by block (lazy); the spread from the sample
        ds = encode_chunked(net, image, config.patch_size, config.stride, inputs.transform,
                            scheduler=scheduler)
        spread = float(mu[:, :L].std(0).max())
    else:
        ds = latent_dataset(net, mu, std, inputs.y, inputs.x)
        spread = float(ds["z_mean"].std(("y", "x")).max())
    if spread < COLLAPSED_SPREAD:
        warnings.warn(
            f"the latent maps are nearly flat (spread {spread:.3f} prior std): the latents "
            f"collapsed; try a smaller boundary_weight (now {config.boundary_weight}), more "
            "epochs or another transform", RuntimeWarning, stacklevel=4)
    boundary_units = "wall length per grid point" if config.boundary_loss != "reference" else "1"
    for k in LOSS_NAMES:
        ds[k] = ("epoch", np.asarray(history[k]),
                 {"units": "nats per patch" if k != "loss_boundary" else boundary_units})
    ds = ds.assign_coords(epoch=np.arange(1, int(config.epochs) + 1))

    model_id = uuid.uuid4().hex
    elapsed = time.perf_counter() - t0
    (ty, tx) = run.tile
    config = config.replace(transform=str(inputs.transform))
    ds.attrs = {
        "title": "phyvae-dash fit",
        "model": config.model,
        "model_id": model_id,
        "patch_size": int(config.patch_size),
        "stride": int(config.stride),
        "latent_dim": L,
        "boundary_weight": float(config.boundary_weight),
        "boundary_loss": config.boundary_loss,
        "transform": str(inputs.transform),
        "transform_reason": str(getattr(inputs, "reason", "")),
        "input_channels": [str(c) for c in inputs.channels],
        "epochs": int(config.epochs),
        "steps_per_epoch": int(run.steps),
        "tile_size": int(min(ty, tx)),
        "tiles_per_batch": int(run.n_tiles),
        "batch_size": int(run.n_tiles * ty * tx),
        "lr": float(config.lr),
        "beta": float(config.beta),
        "kl_warmup": float(config.kl_warmup),
        "likelihood": config.likelihood,
        "hidden": int(config.hidden),
        "eps": float(config.eps),
        "boundary_scale": config.boundary_scale,
        "boundary_units": config.boundary_units,
        "boundary_ramp": [float(v) for v in config.boundary_ramp],
        "shift_prior": float(config.shift_prior or 0.0),
        "angle_prior": float(config.angle_prior if config.model == "rotation" else 0.0),
        "lattice_period": float(run.period) if run.period else 0.0,
        "seed": int(config.seed),
        "device": str(run.device),
        "num_threads": int(torch.get_num_threads()),
        "precision": config.precision,
        "n_patches": int(inputs.n_y * inputs.n_x),
        "sampled_positions": int(n if inputs.sampled else 0),
        "sample_regions": int(inputs.regions if inputs.sampled else 0),
        "latent_spread": spread,
        "elapsed_s": float(elapsed),
        "patches_per_s": float(n * int(config.epochs) / elapsed),
        "phyvae_dash_version": __version__,
        "torch_version": str(torch.__version__),
        "numpy_version": np.__version__,
        "xarray_version": xr.__version__,
        "python_version": platform.python_version(),
        "image_source": str(image.attrs.get("source", "")),
        "image_name": str(image.name or ""),
        "preprocessing": [str(p) for p in as_list(image.attrs.get("preprocessing", []))],
        **config.to_attrs(),
    }
    if inputs.sampled:  # the sample is not the scan: reconstruct() then needs the image
        persist.register(model_id, net, config=net.config)
    else:
        persist.register(model_id, net, inputs=run.data, grid_shape=(inputs.gy, inputs.gx),
                         config=net.config)
    return ds
