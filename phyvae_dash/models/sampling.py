"""What `fit` trains on: every scan position, or a random sample of contiguous regions.

The boundary loss needs minibatches that are contiguous ``T x T`` tiles of the scan
grid. For an image whose inputs fit in `INPUT_BUDGET_BYTES`, the inputs of all positions
are computed (`features.prepare_inputs`) and the tiles are cut anywhere in the grid.
A larger image (or any image with ``sample_positions`` given) is sampled instead:
``R`` regions of ``G x G`` contiguous grid positions at random offsets are read from
the image's chunks (only those pixels: nothing else is read), their inputs computed
with statistics of the whole scan (channel means and stds by per-chunk reductions;
the FFT power and feature scales from the sample), and the tiles are cut inside the
regions. The choice depends on the data and the settings only, never on whether the
image is dask-backed, so a lazy and an in-memory copy of an image give the same fit.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import xarray as xr

from ..data.channels import channel_names
from ..errors import SettingsError

__all__ = ["TrainingInputs", "gather_inputs", "INPUT_BUDGET_BYTES", "REGION_SIDE"]

#: Largest size of the inputs of all positions held in memory; beyond it `fit` samples.
#: The sample is about this size too (so training memory does not grow with the image).
INPUT_BUDGET_BYTES = 256 * 2 ** 20
#: Side, in grid positions, of the contiguous regions the sample is made of.
REGION_SIDE = 64
#: Side in pixels of the centre crop in which ``transform="auto"`` looks for a lattice
#: when the image is sampled (the detector's Welch tiles are at most 256 px anyway).
LATTICE_CROP_PX = 1024
#: Chunks of the reductions over the whole scan: fixed, so that the sums (and thus the
#: fit) do not depend on how the file happens to be chunked.
REDUCTION_CHUNKS = 1024


@dataclass
class TrainingInputs:
    """The training data and where it came from.

    ``data`` is ``(R * gy * gx, *feature_shape)`` float32: ``R`` regions of ``gy x gx``
    contiguous grid positions, row-major (``R = 1`` region = the whole grid when
    nothing was sampled). ``n_y, n_x``: the whole scan grid.
    """

    data: np.ndarray
    regions: int
    gy: int
    gx: int
    n_y: int
    n_x: int
    transform: str
    reason: str
    channels: list
    period: float | None
    y: xr.DataArray | None = None  # patch-centre coordinates (in-memory path)
    x: xr.DataArray | None = None
    stats: object = None  # blockwise.ScanStatistics (sampled path)
    sampled: bool = False
    offsets: list = field(default_factory=list)

    @property
    def feature_shape(self) -> tuple:
        return tuple(self.data.shape[1:])


def _grid(image: xr.DataArray, patch_size: int, stride: int) -> tuple[int, int]:
    return tuple((image.sizes[d] - patch_size) // stride + 1 for d in ("y", "x"))


def input_bytes(image: xr.DataArray, patch_size: int, stride: int) -> int:
    """Bytes of float32 patch inputs of every position (an upper bound for vectors)."""
    n_y, n_x = _grid(image, patch_size, stride)
    channels = image.shape[2] if image.ndim == 3 else 1
    return n_y * n_x * channels * patch_size * patch_size * 4


def gather_inputs(image: xr.DataArray, patch_size: int, stride: int, transform: str = "auto",
                  *, seed: int = 0, sample_positions: int | None = None) -> TrainingInputs:
    """The inputs `fit` trains on (see the module docstring).

    Parameters
    ----------
    sample_positions : int, optional
        Train on a random sample of about this many positions (in contiguous regions).
        ``None``: all positions when their inputs fit in `INPUT_BUDGET_BYTES`, else a
        sample of that size.

    Examples
    --------
    >>> img = xr.DataArray(np.random.default_rng(0).random((200, 200)), dims=("y", "x"))
    >>> t = gather_inputs(img, 8, 2, "patch", sample_positions=2000)
    >>> t.sampled, t.regions, t.gy, t.data.shape
    (True, 1, 64, (4096, 1, 8, 8))
    """
    n_y, n_x = _grid(image, patch_size, stride)
    whole = n_y * n_x
    if sample_positions is None:
        per_position = max(1, input_bytes(image, patch_size, stride) // max(whole, 1))
        if input_bytes(image, patch_size, stride) <= INPUT_BUDGET_BYTES:
            return _all_positions(image, patch_size, stride, transform)
        sample_positions = INPUT_BUDGET_BYTES // per_position
    if not isinstance(sample_positions, (int, np.integer)) or sample_positions < 1:
        raise SettingsError(f"sample_positions must be a positive integer or None, got {sample_positions!r}")
    return _sampled(image, patch_size, stride, transform, int(sample_positions), seed)


def _all_positions(image, patch_size, stride, transform) -> TrainingInputs:
    from ..data.lazy import ensure_fits
    from .features import prepare_inputs

    if image.chunks is not None:  # small enough: the in-memory path, as for a NumPy image
        ensure_fits(image.nbytes * 8, image.attrs.get("source", "the image"))
        image = image.compute()
    inputs = prepare_inputs(image, patch_size, stride, transform=transform)
    n_y, n_x = inputs.data.shape[:2]
    data = np.ascontiguousarray(inputs.data.reshape(n_y * n_x, *inputs.data.shape[2:]),
                                dtype=np.float32)
    return TrainingInputs(data, 1, n_y, n_x, n_y, n_x, inputs.transform,
                          str(getattr(inputs, "reason", "")), list(inputs.channels),
                          getattr(inputs, "period", None), inputs.y, inputs.x)


def _sampled(image, patch_size, stride, transform, sample_positions, seed) -> TrainingInputs:
    import dask

    from .blockwise import (ScanStatistics, _check_options, as_dask_image, block_inputs,
                            scan_statistics, statistics_from_sums, template)
    from .features import TRANSFORMS, choose_transform, detect_lattice_period

    if transform not in TRANSFORMS:
        raise SettingsError(f"transform must be one of {TRANSFORMS}, not {transform!r}")
    n_y, n_x = _grid(image, patch_size, stride)
    gy, gx = min(REGION_SIDE, n_y), min(REGION_SIDE, n_x)
    regions = max(1, math.ceil(sample_positions / (gy * gx)))
    rng = np.random.default_rng(seed)
    offsets = np.stack([rng.integers(0, n_y - gy + 1, regions),
                        rng.integers(0, n_x - gx + 1, regions)], axis=1)
    data = as_dask_image(image).data
    if data.ndim == 2:
        data = data[:, :, None]
    height, width = (gy - 1) * stride + patch_size, (gx - 1) * stride + patch_size
    pixels = dask.compute(*[data[oy * stride:oy * stride + height, ox * stride:ox * stride + width]
                            for oy, ox in offsets])

    period, reason = None, "chosen by the user"
    if transform == "auto" or transform in ("fft", "fft+mean"):
        crop = centre_crop(image)
        if transform == "auto":
            transform, reason, period = choose_transform(crop, patch_size)
            reason += f" (lattice sought in the central {crop.sizes['y']} x {crop.sizes['x']} px)"
        else:
            period = detect_lattice_period(crop)
    _check_options(transform, {})
    if transform == "spectrum":
        stats = ScanStatistics("spectrum", None, {}, channel_names(image))
    else:  # channel means and stds of the whole scan, in fixed chunks (see REDUCTION_CHUNKS)
        canonical = image.copy(data=as_dask_image(image).data.rechunk(
            (REDUCTION_CHUNKS, REDUCTION_CHUNKS) + ((-1,) if image.ndim == 3 else ())))
        stats = scan_statistics(canonical, patch_size, stride, "patch")
        stats.transform = transform
    like = template(image)
    if transform in ("fft", "fft+mean"):
        power = [block_inputs(p, like, patch_size, stride, stats, "power") for p in pixels]
        stats.power_ref = float(np.mean([q.astype(np.float64).mean() for q in power]))
    if transform != "patch":
        raw = np.concatenate([block_inputs(p, like, patch_size, stride, stats, "raw")
                              .reshape(gy * gx, -1).astype(np.float64) for p in pixels])
        statistics_from_sums(stats, raw.shape[0], raw.sum(0), (raw ** 2).sum(0))
    inputs = None
    for k, p in enumerate(pixels):  # filled in place: the sample is held once
        block = block_inputs(p, like, patch_size, stride, stats)
        if inputs is None:
            inputs = np.empty((regions * gy * gx, *block.shape[2:]), dtype=np.float32)
        inputs[k * gy * gx:(k + 1) * gy * gx] = block.reshape(gy * gx, *block.shape[2:])
    return TrainingInputs(inputs, regions, gy, gx, n_y, n_x,
                          transform, reason, list(stats.channels), period, stats=stats,
                          sampled=True, offsets=offsets.tolist())


def centre_crop(image: xr.DataArray) -> xr.DataArray:
    """The central ``LATTICE_CROP_PX`` square of the image, in memory."""
    sl = {}
    for d in ("y", "x"):
        n = image.sizes[d]
        side = min(n, LATTICE_CROP_PX)
        sl[d] = slice((n - side) // 2, (n - side) // 2 + side)
    return image.isel(sl).compute()
