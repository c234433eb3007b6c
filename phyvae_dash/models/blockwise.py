"""Model inputs block by block, with the statistics of the whole scan.

`features.prepare_inputs` normalises with statistics of the whole scan: each channel's
mean and std, the mean FFT power (the floor of the log), each feature's mean and one
overall scale. One block of a dask-backed image cannot see the whole scan, so these
statistics are gathered first, by per-chunk reductions (`scan_statistics`), and every
block is then turned into inputs with them (`block_inputs`). The inputs equal
``prepare_inputs``' up to float rounding, for its default options.

Geometry (`map_positions`): patch ``i`` along an axis covers pixels
``[i * stride, i * stride + p)``. It belongs to the block that holds its centre pixel
``i * stride + p // 2``, so a block needs a halo of half a patch on each side
(`dask.array.map_overlap` with ``depth = p // 2``) and the blocks join without seams:
every patch is computed once, from exactly the pixels it covers.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import xarray as xr

from ..data.channels import channel_names
from ..errors import SettingsError
from .features import (_standard_channels, _window_mean, channel_scaling,
                       patch_power, phase_channel_indices)

__all__ = ["ScanStatistics", "scan_statistics", "statistics_from_sums", "block_inputs",
           "map_positions", "as_dask_image", "POSITIONS_PER_BLOCK"]

BLOCKWISE_TRANSFORMS = ("patch", "fft", "fft+mean", "spectrum")
#: Scan positions per block of the chunked encoder: a block's inputs then take
#: 16 MiB per 256 input values, whatever the image size.
POSITIONS_PER_BLOCK = 128 * 128
#: prepare_inputs' defaults, the options the chunked path reproduces.
DEFAULT_OPTIONS = {"normalization": "zscore", "mean_weight": 0.25, "weighting": "balanced",
                   "neighbourhood": "patch", "fft_floor": 0.05, "components": 0}


@dataclass
class ScanStatistics:
    """What a block needs to know about the whole scan to compute its inputs.

    Attributes
    ----------
    transform : str
        ``"patch"``, ``"fft"``, ``"fft+mean"`` or ``"spectrum"``.
    scaling : (numpy.ndarray, numpy.ndarray) or None
        Per-channel offset and scale (`features.channel_scaling`); None for spectra.
    phases : dict
        Phase channels and their radians per unit (`features.phase_channel_indices`).
    channels : list of str
        Names of the input channels after the transform.
    power_ref : float
        Mean FFT power over all patches (``"fft"``, ``"fft+mean"``).
    offset, weight : numpy.ndarray or None
        Vector features become ``(raw - offset) * weight``.
    options : dict
        The transform options (`DEFAULT_OPTIONS` and ``normalization``).
    """

    transform: str
    scaling: tuple | None
    phases: dict
    channels: list
    power_ref: float = 1.0
    offset: np.ndarray | None = None
    weight: np.ndarray | None = None
    options: dict = field(default_factory=lambda: dict(DEFAULT_OPTIONS))


def as_dask_image(image: xr.DataArray, chunks=None) -> xr.DataArray:
    """``image`` backed by a dask array (NumPy data is wrapped, nothing copied)."""
    import dask.array as dsa

    if not isinstance(image.data, dsa.Array):
        return image.copy(data=dsa.from_array(image.data, chunks=chunks or "auto"))
    return image if chunks is None else image.chunk(chunks)


def _check_options(transform: str, options: dict) -> dict:
    if transform not in BLOCKWISE_TRANSFORMS:
        raise SettingsError(f"block-by-block inputs need a resolved transform, one of "
                            f"{BLOCKWISE_TRANSFORMS}; got {transform!r}")
    merged = {**DEFAULT_OPTIONS, **options}
    fixed = {k: v for k, v in merged.items() if k != "normalization" and v != DEFAULT_OPTIONS[k]}
    if fixed:
        raise SettingsError(f"the chunked (dask) path supports the default transform options "
                            f"only; got {fixed}. Load the image without lazy=True to use them")
    return merged


def template(image: xr.DataArray) -> xr.DataArray:
    """A zero-size, NumPy-backed stand-in for ``image``: its dims, channel names and
    attrs, which is all a block needs (small enough to travel inside every task)."""
    shape = (0, 0) + ((image.shape[2],) if image.ndim == 3 else ())
    third = image.dims[2] if image.ndim == 3 else None
    coords = {third: image[third].values} if third in image.coords else {}
    return xr.DataArray(np.zeros(shape, dtype=np.float32), dims=image.dims, coords=coords,
                        attrs=image.attrs, name=image.name)


def _wrap(block: np.ndarray, like: xr.DataArray) -> xr.DataArray:
    """A block ``(h, w, C)`` as a DataArray with ``like``'s dims, channel names and attrs."""
    if like.ndim == 2:
        return xr.DataArray(block[:, :, 0], dims=like.dims, attrs=like.attrs, name=like.name)
    third = like.dims[2]
    coords = {third: like[third].values} if third in like.coords else {}
    return xr.DataArray(block, dims=like.dims, coords=coords, attrs=like.attrs, name=like.name)


def _windows(a: np.ndarray, patch_size: int, stride: int) -> np.ndarray:
    """Patches ``(n_y, n_x, p, p, C)`` of a ``(h, w, C)`` array (a view)."""
    w = np.lib.stride_tricks.sliding_window_view(a, (patch_size, patch_size), axis=(0, 1))
    return np.moveaxis(w[::stride, ::stride], 2, -1)


def block_inputs(block: np.ndarray, like: xr.DataArray, patch_size: int, stride: int,
                 stats: ScanStatistics, stage: str = "final") -> np.ndarray:
    """Inputs of the patches that fit in ``block``, ``(n_y, n_x, *feature_shape)``.

    Parameters
    ----------
    block : numpy.ndarray
        ``(h, w, C)`` pixels (C = 1 for a 2-D image) of a region of the scan.
    like : xarray.DataArray
        The whole image (only its dims, channel names and attrs are used).
    stage : {"final", "raw", "power"}
        ``"final"``: model inputs; ``"raw"``: vector features before their offset and
        weight; ``"power"``: the FFT power behind them.
    """
    t = stats.transform
    if t == "spectrum":
        windows = np.lib.stride_tricks.sliding_window_view(
            block.astype(np.float32, copy=False), (patch_size, patch_size), axis=(0, 1))
        raw = windows[::stride, ::stride].mean(axis=(-2, -1))
    else:
        normalization = stats.options["normalization"] if t == "patch" else "zscore"
        std, _ = _standard_channels(_wrap(block, like), normalization, scaling=stats.scaling,
                                    phases=stats.phases)
        patches = _windows(std, patch_size, stride)
        if t == "patch":
            return np.ascontiguousarray(np.moveaxis(patches, -1, 2), dtype=np.float32)
        n_y, n_x = patches.shape[:2]
        power = patch_power(patches).reshape(n_y, n_x, -1)
        if stage == "power":
            return power
        floor = stats.options["fft_floor"]
        raw = np.log(power + floor * stats.power_ref + 1e-30).astype(np.float32)
        if t == "fft+mean":
            raw = np.concatenate([raw, _window_mean(patches)], axis=-1)
    if stage == "raw":
        return raw
    return ((raw - stats.offset) * stats.weight).astype(np.float32)


def statistics_from_sums(stats: ScanStatistics, count: float, total: np.ndarray,
                         squares: np.ndarray) -> ScanStatistics:
    """Fill in ``offset`` and ``weight`` from per-feature sums of raw features.

    Reproduces `features._centre_scale` (and, for ``"fft+mean"``, `features._combine`
    with balanced weighting): centre every feature, then scale so that the mean
    feature variance is 1.
    """
    mean = total / count
    var = np.maximum(squares / count - mean ** 2, 0.0)
    if stats.transform == "fft+mean":
        # One mean feature per input channel after the transform (a phase channel
        # gives two: cos and sin), the rest are |FFT| bins.
        n_fft = var.size - len(stats.channels)
        vf = var[:n_fft].sum() + 1e-12
        vm = var[n_fft:].sum() + 1e-12
        w = float(stats.options["mean_weight"])
        weight = np.concatenate([np.full(n_fft, 1 / math.sqrt(vf)),
                                 np.full(var.size - n_fft, math.sqrt(w / vm))])
    else:
        weight = np.ones_like(var)
    rms = math.sqrt(float(np.mean(var * weight ** 2)))
    stats.offset = mean
    stats.weight = weight / (rms if rms > 0 else 1.0)
    return stats


def _block_chunks(size: int, patch_size: int, stride: int, side: int) -> tuple[int, ...]:
    """Pixel chunks along an axis such that block ``k`` owns positions
    ``[k * side, (k + 1) * side)``: the first ends at ``p // 2 + side * stride``, the
    others are ``side * stride`` long. The latent maps then have uniform chunks (as
    Zarr wants). A last piece shorter than the halo holds no patch centre and is merged.
    """
    depth = patch_size // 2
    side = max(side, -(-depth // stride))  # every block at least as long as the halo
    bounds = list(range(depth + side * stride, size, side * stride))
    if bounds and size - bounds[-1] < depth:
        bounds.pop()
    edges = [0, *bounds, size]
    return tuple(b - a for a, b in zip(edges[:-1], edges[1:]))


def _positions(chunks: tuple[int, ...], n_pixels: int, patch_size: int, stride: int):
    """First and last+1 position owned by each chunk (by its centre pixel), and the
    chunk's first pixel."""
    n_pos = (n_pixels - patch_size) // stride + 1
    half = patch_size // 2
    starts = np.concatenate([[0], np.cumsum(chunks)])
    first = np.clip(-(-(starts - half) // stride), 0, n_pos)
    return [(int(first[k]), int(first[k + 1]), int(starts[k])) for k in range(len(chunks))]


def map_positions(image: xr.DataArray, patch_size: int, stride: int, func, n_out: int,
                  dtype=np.float32, per_block: bool = False, **kwargs):
    """Apply ``func(pixels, **kwargs)`` to every block of scan positions of ``image``.

    ``pixels`` is the ``(h, w, C)`` NumPy region holding exactly the patches of the
    block's positions (``func`` also gets ``patch_size`` and ``stride``); ``func`` returns ``(n_y_block, n_x_block, n_out)`` per position,
    or ``(1, 1, n_out)`` with ``per_block=True`` (partial sums to reduce afterwards).
    Dask objects (a `dask.delayed` of the model weights) in ``kwargs`` become one key of
    the graph, shipped once to each worker, not embedded in every task.

    Returns
    -------
    dask.array.Array
        ``(n_y, n_x, n_out)`` (positions; chunked like the blocks), or
        ``(n_blocks_y, n_blocks_x, n_out)`` with ``per_block=True``.
    """
    import dask.array as dsa

    data = as_dask_image(image).data
    if data.ndim == 2:
        data = data[:, :, None]
    depth = patch_size // 2
    side = max(1, round(math.sqrt(POSITIONS_PER_BLOCK)))
    # The file's chunking does not matter (one smaller than the patch included): the
    # blocks are re-cut here, each at least a halo long.
    chunks = tuple(_block_chunks(n, patch_size, stride, side) for n in data.shape[:2])
    data = data.rechunk((chunks[0], chunks[1], -1))
    own = [_positions(c, n, patch_size, stride) for c, n in zip(chunks, data.shape[:2])]
    if per_block:
        out_chunks = ((1,) * len(chunks[0]), (1,) * len(chunks[1]), (n_out,))
    else:
        out_chunks = tuple(tuple(b - a for a, b, _ in o) for o in own) + ((n_out,),)

    def run(pixels, block_id=None, **kw):
        (ya, yb, y0), (xa, xb, x0) = own[0][block_id[0]], own[1][block_id[1]]
        # Where the overlapped block starts in the image (no halo at the image's edges).
        ey = y0 - (depth if block_id[0] > 0 else 0)
        ex = x0 - (depth if block_id[1] > 0 else 0)
        if yb <= ya or xb <= xa:
            shape = (1, 1, n_out) if per_block else (yb - ya, xb - xa, n_out)
            return np.zeros(shape, dtype=dtype)
        region = pixels[ya * stride - ey:(yb - 1) * stride + patch_size - ey,
                        xa * stride - ex:(xb - 1) * stride + patch_size - ex]
        return np.asarray(func(region, patch_size=patch_size, stride=stride, **kw), dtype=dtype)

    return dsa.map_overlap(run, data, depth={0: depth, 1: depth, 2: 0}, boundary="none",
                           trim=False, chunks=out_chunks, dtype=dtype,
                           meta=np.empty((0, 0, 0), dtype=dtype), **kwargs)


def _sums(pixels, like, patch_size, stride, stats, stage):
    """Per-block count, sum and sum of squares of the raw features (``(1, 1, 1 + 2F)``)."""
    raw = block_inputs(pixels, like, patch_size, stride, stats, stage)
    flat = raw.reshape(-1, raw.shape[-1]).astype(np.float64)
    if stage == "power":
        return np.array([flat.size, flat.sum(), 0.0])[None, None]
    return np.concatenate([[flat.shape[0]], flat.sum(0), (flat ** 2).sum(0)])[None, None]


def scan_statistics(image: xr.DataArray, patch_size: int, stride: int, transform: str,
                    options: dict | None = None, n_features: int | None = None,
                    scheduler=None) -> ScanStatistics:
    """Statistics of the whole scan for `block_inputs`, by per-chunk reductions.

    ``"patch"`` needs one pass over the pixels (channel means and stds); ``"fft"``
    and ``"fft+mean"`` two more over the patches (mean power, then the features' means
    and variances), ``"spectrum"`` one. Nothing but the sums is kept in memory.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> img = xr.DataArray(np.random.default_rng(0).random((40, 40)), dims=("y", "x"))
    >>> stats = scan_statistics(img.chunk(16), 8, 4, "patch")
    >>> bool(np.isclose(stats.scaling[0][0], img.values.mean()))
    True
    """
    import dask

    options = _check_options(transform, dict(options or {}))
    phases = phase_channel_indices(image)
    if transform == "spectrum":
        stats = ScanStatistics(transform, None, {}, channel_names(image), options=options)
    else:
        normalization = options["normalization"] if transform == "patch" else "zscore"
        scaling = channel_scaling(as_dask_image(image), normalization)
        names = []
        for i, name in enumerate(channel_names(image)):
            names += [f"{name}:cos", f"{name}:sin"] if i in phases else [name]
        stats = ScanStatistics(transform, scaling, phases, names, options=options)
    if transform == "patch":
        return stats
    common = dict(like=template(image), stats=stats)
    if transform in ("fft", "fft+mean"):
        sums = map_positions(image, patch_size, stride, _sums, 3, np.float64, per_block=True,
                             stage="power", **common).sum(axis=(0, 1))
        count, total, _ = dask.compute(sums, scheduler=scheduler)[0]
        stats.power_ref = float(total / count) if count else 1.0
    n_raw = _n_raw_features(image, patch_size, stats)
    sums = map_positions(image, patch_size, stride, _sums, 1 + 2 * n_raw, np.float64,
                         per_block=True, stage="raw", **common).sum(axis=(0, 1))
    sums = dask.compute(sums, scheduler=scheduler)[0]
    return statistics_from_sums(stats, sums[0], sums[1:1 + n_raw], sums[1 + n_raw:])


def _n_raw_features(image: xr.DataArray, patch_size: int, stats: ScanStatistics) -> int:
    """Length of the raw feature vector, from a zero patch (no data read)."""
    c = image.sizes[image.dims[2]] if image.ndim == 3 else 1
    zero = np.zeros((patch_size, patch_size, c))
    return block_inputs(zero, template(image), patch_size, 1, stats, "raw").shape[-1]
