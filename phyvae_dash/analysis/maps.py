"""Latent maps as arrays for segmentation: smoothing, and dask-backed maps by blocks.

`segment` works on NumPy maps; a dask-backed result (a sampled `fit`, or ``encode`` of
a lazy image) is segmented by fitting the clustering on a regular subsample of its
cells (`subsample`) and labelling every block with it (`label_blocks`), so the whole
map is never in memory.
"""
from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

__all__ = ["smooth_maps", "subsample", "label_blocks", "SEGMENT_SAMPLE", "GAUSSIAN_TRUNCATE"]

#: Cells of a dask-backed map that the clustering is fitted on.
SEGMENT_SAMPLE = 100_000
#: scipy.ndimage.gaussian_filter's default reach, in standard deviations.
GAUSSIAN_TRUNCATE = 4.0


def smooth_maps(values: np.ndarray, smooth: float) -> np.ndarray:
    """Gaussian smoothing of ``(latent, y, x)`` maps along y and x, ignoring non-finite cells.

    Normalised convolution: non-finite cells neither spread nor pull their neighbours
    towards 0. The filter never runs across latents.
    """
    finite = np.isfinite(values)
    sigma = (0, smooth, smooth)
    weight = ndimage.gaussian_filter(finite.astype(float), sigma, mode="nearest",
                                     truncate=GAUSSIAN_TRUNCATE)
    blurred = ndimage.gaussian_filter(np.where(finite, values, 0.0), sigma, mode="nearest",
                                      truncate=GAUSSIAN_TRUNCATE)
    return np.where(finite, blurred / np.where(weight > 0, weight, 1.0), np.nan)


def smooth_lazy(data, smooth: float):
    """`smooth_maps` of a dask array ``(latent, y, x)``, block by block with a halo of the
    filter's reach: the same values as on the whole map."""
    import dask.array as da

    depth = int(GAUSSIAN_TRUNCATE * smooth + 0.5)
    data = data.rechunk({0: -1, 1: max(data.chunksize[1], depth + 1), 2: max(data.chunksize[2], depth + 1)})
    return da.map_overlap(smooth_maps, data, depth={0: 0, 1: depth, 2: depth},
                          boundary={1: "nearest", 2: "nearest"}, smooth=smooth, dtype=float)


def subsample(data) -> np.ndarray:
    """A regular grid of about `SEGMENT_SAMPLE` cells of ``(latent, y, x)`` maps, in memory."""
    _, n_y, n_x = data.shape
    step = max(1, math.ceil(math.sqrt(n_y * n_x / SEGMENT_SAMPLE)))
    return np.asarray(data[:, ::step, ::step].compute(), dtype=float)


def _label_block(values, centre, scale, predict, lookup):
    vectors = values.reshape(values.shape[0], -1).T.astype(float)
    valid = np.isfinite(vectors).all(axis=1)
    labels = np.full(len(vectors), -1, dtype=int)
    if valid.any():
        labels[valid] = lookup[predict((vectors[valid] - centre) / scale)]
    return labels.reshape(values.shape[1:])


def label_blocks(data, centre, scale, predict, lookup):
    """Labels ``(y, x)`` of dask maps ``(latent, y, x)``, block by block.

    ``(vectors - centre) / scale`` are the clustering's features, ``predict`` the fitted
    clustering and ``lookup`` its cluster numbers -> sorted labels.
    """
    data = data.rechunk({0: -1})
    return data.map_blocks(_label_block, centre, scale, predict, lookup, drop_axis=0,
                           dtype=int, meta=np.empty((0, 0), dtype=int))
