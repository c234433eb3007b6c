"""Model inputs for 4D-STEM data: one feature vector (or binned pattern) per scan position.

Each transform turns the diffraction pattern at a scan position into what the encoder
sees; the boundary loss still acts on the scan grid, unchanged.

======================== ===========================================================
``"pattern"``            the pattern itself, ``log(1 + counts)``, binned to at most
                         ``pattern_bin`` pixels a side, standardised over the scan:
                         ``(1, b, b)`` into the convolutional encoder. Sees everything,
                         including the descan drift and the noise.
``"profiles"``           radial and angular profiles about each pattern's own centre
                         (the centre of mass of its bright-field disk): the log mean
                         intensity in rings, and in (ring band, angular sector) bins
                         outside the bright-field disk. Measuring from each pattern's
                         centre makes it invariant to beam shifts (descan error); the
                         angular block makes it sensitive to orientation: grains of one
                         phase at different orientations are told apart.
``"profiles_invariant"`` the rotation-invariant mode: the radial profile plus, per
                         band, the magnitudes of the angular Fourier series (orders 0 to
                         ``n_sectors / 2``) of the angular profile. A rotation of the
                         pattern only shifts the angular profile, so the magnitudes do
                         not change, while the symmetry (4-fold, 6-fold) shows in which
                         orders carry power: orientation-independent phase maps.
``"virtual"``            virtual-detector features: the log intensity on concentric
                         annular detectors about the mean pattern's centre, each split
                         into four quadrants (as a segmented detector), the way a
                         microscope's physical detectors see the pattern.
======================== ===========================================================

``"auto"`` (:func:`choose_4d_transform`) takes ``"profiles"`` when the patterns hold
Bragg disks beyond the bright-field disk (crystalline data), ``"virtual"`` otherwise.

Every transform runs block by block over the scan with dask (``map_blocks``), so a
dask-backed or memory-mapped dataset is never held in memory whole; the work inside a
block is vectorised (one ``bincount`` over all its patterns, no loop over positions).
Optional patch-averaging (``patch_size`` > 1) averages the features of the
``patch_size x patch_size`` neighbouring positions, centres ``stride`` apart.
"""
from __future__ import annotations

import math

import numpy as np
import xarray as xr

from ..errors import DataError, SettingsError

__all__ = ["TRANSFORMS_4D", "choose_4d_transform", "features_4d", "pattern_geometry"]

TRANSFORMS_4D = ("pattern", "profiles", "profiles_invariant", "virtual")

#: Brightest pixels outside the bright-field disk over their median (in a sample of
#: patterns, lightly blurred) that count as Bragg disks for ``"auto"``.
BRAGG_PEAK_RATIO = 4.0
#: Detector values per dask block of the feature computation (2 M: 128 patterns of
#: 128 x 128 pixels).
BLOCK_VALUES = 2 ** 21


def pattern_geometry(data: xr.DataArray, max_positions: int = 256) -> dict:
    """Centre (pixels) and bright-field radius (pixels) of the mean pattern.

    Examples
    --------
    >>> from phyvae_dash.data.synthetic_spectral import diffraction_grains
    >>> g = pattern_geometry(diffraction_grains(scan_shape=(8, 8), detector=32, seed=0).image)
    >>> sorted(g)
    ['bf_radius', 'centre', 'edge', 'peak_ratio']
    """
    from scipy import ndimage

    ny, nx = data.sizes["y"], data.sizes["x"]
    step = max(1, int(math.ceil(math.sqrt(ny * nx / max_positions))))
    sample = data.data[::step, ::step]
    sample = np.asarray(sample.compute() if hasattr(sample, "compute") else sample, np.float64)
    mean = sample.mean(axis=(0, 1))
    blurred = ndimage.gaussian_filter(mean, 0.7)
    bright = blurred > 0.5 * blurred.max()
    parts, _ = ndimage.label(bright)
    peak = np.unravel_index(int(np.argmax(blurred)), blurred.shape)
    disk = parts == parts[peak]
    w = np.where(disk, mean, 0.0)
    ky, kx = np.arange(mean.shape[0]), np.arange(mean.shape[1])
    centre = (float(w.sum(axis=1) @ ky / w.sum()), float(w.sum(axis=0) @ kx / w.sum()))
    bf_radius = math.sqrt(float(disk.sum()) / math.pi)
    edge = float(min(centre[0], mean.shape[0] - 1 - centre[0], centre[1],
                     mean.shape[1] - 1 - centre[1]))
    # Bragg disks: per pattern (not the mean, where rotated grains smear into rings),
    # the brightest pixels outside the bright-field disk against the median there.
    rr = np.hypot(ky[:, None] - centre[0], kx[None, :] - centre[1])
    outside = (rr > 1.5 * bf_radius + 1) & (rr < edge)
    smooth = ndimage.gaussian_filter(sample.reshape(-1, *mean.shape), (0, 1.0, 1.0))[:, outside]
    top = np.percentile(smooth, 99.5, axis=1)
    med = np.median(smooth, axis=1) + 1e-3 * (smooth.mean() + 1e-12)
    return {"centre": centre, "bf_radius": bf_radius, "edge": edge,
            "peak_ratio": float(np.median(top / med))}


def choose_4d_transform(data: xr.DataArray, geometry: dict | None = None) -> tuple[str, str]:
    """What ``transform="auto"`` picks for 4D-STEM data: ``(name, reason)``.

    Examples
    --------
    >>> from phyvae_dash.data.synthetic_spectral import diffraction_grains
    >>> choose_4d_transform(diffraction_grains(scan_shape=(8, 8), detector=32, seed=0).image)[0]
    'profiles'
    """
    geometry = geometry or pattern_geometry(data)
    ratio = geometry["peak_ratio"]
    if ratio >= BRAGG_PEAK_RATIO:
        return ("profiles", f"Bragg disks outside the bright-field disk (peak/median "
                f"{ratio:.1f} >= {BRAGG_PEAK_RATIO}): radial and angular profiles about each "
                "pattern's centre (beam-shift invariant, orientation sensitive); "
                "transform='profiles_invariant' maps phases regardless of orientation")
    return ("virtual", f"no Bragg disks outside the bright-field disk (peak/median "
            f"{ratio:.1f} < {BRAGG_PEAK_RATIO}): virtual annular/segmented detector features")


def features_4d(data: xr.DataArray, transform: str = "profiles", *, patch_size: int = 1,
                stride: int = 1, n_rings: int | None = None, n_bands: int = 4,
                n_sectors: int = 36, pattern_bin: int = 32, scheduler: str = "threads",
                geometry: dict | None = None) -> tuple[np.ndarray, dict]:
    """Per-position features of 4D-STEM data.

    Parameters
    ----------
    data : xarray.DataArray
        ``(y, x, ky, kx)``, numpy-, memory-map- or dask-backed.
    transform : {"pattern", "profiles", "profiles_invariant", "virtual"}
        See the module docstring.
    patch_size, stride : int
        Average the features over ``patch_size x patch_size`` neighbouring positions,
        windows ``stride`` apart (1, 1: every position on its own).
    n_rings : int, optional
        Radial profile bins (``"profiles"``) or annular detectors (``"virtual"``,
        default 8); default for profiles: one per pixel of radius, at most 48.
    n_bands, n_sectors : int
        Angular block of the profiles: ring bands outside the bright-field disk, and
        angular sectors per band.
    pattern_bin : int
        ``"pattern"``: largest binned pattern side.
    scheduler : str
        Dask scheduler for the block-wise computation (``"threads"``,
        ``"synchronous"``, ``"processes"`` or a distributed client's).
    geometry : dict, optional
        :func:`pattern_geometry` of the data, if already computed.

    Returns
    -------
    (numpy.ndarray, dict)
        float32 features ``(n_y, n_x, F)`` (``(n_y, n_x, 1, b, b)`` for ``"pattern"``),
        standardised; and the options used, with the geometry (JSON-able).

    Examples
    --------
    >>> from phyvae_dash.data.synthetic_spectral import diffraction_grains
    >>> image = diffraction_grains(scan_shape=(8, 8), detector=32, seed=0).image
    >>> feats, options = features_4d(image, "virtual")
    >>> feats.shape, feats.dtype
    ((8, 8, 32), dtype('float32'))
    """
    import dask.array as dsa

    if transform not in TRANSFORMS_4D:
        raise SettingsError(f"4D-STEM transform must be one of {TRANSFORMS_4D}, not {transform!r}")
    if tuple(data.dims) != ("y", "x", "ky", "kx"):
        raise DataError(f"4D-STEM inputs need dims ('y', 'x', 'ky', 'kx'), got {data.dims}")
    if not (isinstance(patch_size, (int, np.integer)) and patch_size >= 1
            and isinstance(stride, (int, np.integer)) and stride >= 1):
        raise SettingsError(f"patch_size and stride must be integers >= 1, got {patch_size}, {stride}")
    geometry = geometry or pattern_geometry(data)
    nky, nkx = data.sizes["ky"], data.sizes["kx"]
    # Blocks of about BLOCK_VALUES detector values: a block's intermediate arrays (a
    # handful of its size, float64) stay in the 100 MB range per worker thread.
    cols = int(min(data.sizes["x"], max(1, BLOCK_VALUES // (nky * nkx))))
    rows = int(min(data.sizes["y"], max(1, BLOCK_VALUES // (cols * nky * nkx))))
    array = data.data
    if not hasattr(array, "map_blocks"):
        array = dsa.from_array(array, chunks=(rows, cols, -1, -1))
    array = array.rechunk((rows, cols, -1, -1))
    options = {"transform": transform, "patch_size": int(patch_size), "stride": int(stride),
               "bf_radius_px": geometry["bf_radius"], "centre_px": list(geometry["centre"]),
               "bragg_peak_ratio": geometry["peak_ratio"]}
    if transform == "pattern":
        factor = int(math.ceil(max(nky, nkx) / pattern_bin))
        by, bx = nky // factor, nkx // factor
        out_shape = (1, by, bx)

        def block_fn(block):
            b = np.log1p(np.asarray(block, np.float32)[:, :, :by * factor, :bx * factor])
            b = b.reshape(*b.shape[:2], by, factor, bx, factor).mean(axis=(3, 5))
            return b[:, :, None]
        options["bin_factor"] = factor
    elif transform == "virtual":
        n_rings = int(n_rings or 8)
        index, n_bins, counts = _detector_bins(geometry, nky, nkx, n_rings)
        out_shape = (n_bins,)

        def block_fn(block):
            return _log_bin_means(block, index, n_bins, counts)
        options["n_rings"] = n_rings
    else:
        edge = geometry["edge"]
        n_rings = int(n_rings or min(48, max(8, int(edge))))
        invariant = transform == "profiles_invariant"
        n_orders = n_sectors // 2 + 1
        out_shape = (n_rings + n_bands * (n_orders if invariant else n_sectors),)

        def block_fn(block):
            return _profile_block(block, geometry, n_rings, n_bands, n_sectors, invariant)
        options.update(n_rings=n_rings, n_bands=int(n_bands), n_sectors=int(n_sectors))
    feats = array.map_blocks(
        block_fn, dtype=np.float32, drop_axis=(2, 3), new_axis=list(range(2, 2 + len(out_shape))),
        chunks=array.chunks[:2] + tuple((n,) for n in out_shape))
    feats = np.asarray(feats.compute(scheduler=scheduler), dtype=np.float32)
    if not np.all(np.isfinite(feats)):
        raise DataError("the 4D-STEM data gave NaN/Inf features; check the file for "
                        "non-finite values")
    if patch_size > 1 or stride > 1:
        feats = _window_average(feats, int(patch_size), int(stride))
    if transform == "pattern":
        feats = (feats - feats.mean()) / (feats.std() + 1e-12)
    else:
        feats = _standardise(feats, options)
    return np.ascontiguousarray(feats, dtype=np.float32), options


def _detector_bins(geometry, nky, nkx, n_rings):
    """Pixel -> (annulus, quadrant) bin of the virtual detectors; -1 outside them."""
    cy, cx = geometry["centre"]
    ky, kx = np.mgrid[:nky, :nkx].astype(float)
    r = np.hypot(ky - cy, kx - cx)
    edges = np.linspace(0, geometry["edge"], n_rings + 1)
    ring = np.digitize(r, edges) - 1
    quadrant = (ky >= cy).astype(int) * 2 + (kx >= cx).astype(int)
    index = np.where((ring >= 0) & (ring < n_rings), ring * 4 + quadrant, -1).ravel()
    counts = np.bincount(index[index >= 0], minlength=n_rings * 4).astype(np.float64)
    return index, n_rings * 4, np.maximum(counts, 1.0)


def _log_bin_means(block, index, n_bins, counts):
    b = np.asarray(block, np.float64)
    n_pos = b.shape[0] * b.shape[1]
    flat = b.reshape(n_pos, -1)
    keep = index >= 0
    idx = (np.arange(n_pos)[:, None] * n_bins + index[None, keep]).ravel()
    sums = np.bincount(idx, weights=flat[:, keep].ravel(), minlength=n_pos * n_bins)
    means = sums.reshape(n_pos, n_bins) / counts
    return np.log(means + 0.5 / counts).reshape(*b.shape[:2], n_bins).astype(np.float32)


def _profile_block(block, geometry, n_rings, n_bands, n_sectors, invariant):
    """Radial and angular profiles of every pattern in a block, about its own centre."""
    b = np.asarray(block, np.float64)
    by, bx, nky, nkx = b.shape
    n_pos = by * bx
    flat = b.reshape(n_pos, nky, nkx)
    cy0, cx0 = geometry["centre"]
    bf = geometry["bf_radius"]
    edge = geometry["edge"]
    ky = np.arange(nky, dtype=np.float64)
    kx = np.arange(nkx, dtype=np.float64)
    # Each pattern's centre: centre of mass inside a window around the mean centre wide
    # enough to hold its bright-field disk wherever a descan error has put it.
    win = (np.hypot(ky[:, None] - cy0, kx[None, :] - cx0) < bf + 0.25 * bf + 2.0)
    w = flat * win
    total = w.sum(axis=(1, 2)) + 1e-12
    cy = (w.sum(axis=2) @ ky) / total
    cx = (w.sum(axis=1) @ kx) / total
    dy = ky[None, :, None] - cy[:, None, None]
    dx = kx[None, None, :] - cx[:, None, None]
    r = np.hypot(dy, dx)
    reach = edge - 1.0
    ring = np.minimum((r / reach * n_rings).astype(np.int64), n_rings)  # n_rings: outside
    rows = np.arange(n_pos)[:, None, None]
    radial_idx = (rows * (n_rings + 1) + ring).ravel()
    sums = np.bincount(radial_idx, weights=flat.ravel(), minlength=n_pos * (n_rings + 1))
    hits = np.bincount(radial_idx, minlength=n_pos * (n_rings + 1)).astype(np.float64)
    sums, hits = sums.reshape(n_pos, -1)[:, :n_rings], hits.reshape(n_pos, -1)[:, :n_rings]
    radial = np.log(sums / np.maximum(hits, 1.0) + 0.5 / np.maximum(hits, 1.0))
    # Angular block: bands between 1.3 bright-field radii and the detector's reach.
    inner = min(1.3 * bf + 1.0, 0.5 * reach)
    band = ((r - inner) / (reach - inner) * n_bands).astype(np.int64)
    band = np.where((r >= inner) & (band < n_bands), band, n_bands)
    sector = ((np.arctan2(dy, dx) + np.pi) / (2 * np.pi) * n_sectors).astype(np.int64) % n_sectors
    n_ang = n_bands * n_sectors + 1  # the last bin collects everything outside the bands
    ang_idx = np.where(band < n_bands, band * n_sectors + sector, n_ang - 1)
    ang_idx = (rows * n_ang + ang_idx).ravel()
    a_sums = np.bincount(ang_idx, weights=flat.ravel(), minlength=n_pos * n_ang)
    a_hits = np.bincount(ang_idx, minlength=n_pos * n_ang).astype(np.float64)
    a_sums = a_sums.reshape(n_pos, n_ang)[:, :-1].reshape(n_pos, n_bands, n_sectors)
    a_hits = np.maximum(a_hits.reshape(n_pos, n_ang)[:, :-1].reshape(n_pos, n_bands, n_sectors), 1.0)
    angular = a_sums / a_hits
    if invariant:
        spectrum = np.abs(np.fft.rfft(angular, axis=2))
        angular = np.log(spectrum + 0.5 / a_hits.mean(axis=2, keepdims=True))
    else:
        angular = np.log(angular + 0.5 / a_hits)
    out = np.concatenate([radial, angular.reshape(n_pos, -1)], axis=1)
    return out.reshape(by, bx, -1).astype(np.float32)


def _window_average(feats, patch_size, stride):
    """Mean over ``patch_size x patch_size`` windows of positions, every ``stride``."""
    from numpy.lib.stride_tricks import sliding_window_view

    if patch_size > min(feats.shape[:2]):
        raise SettingsError(f"patch_size {patch_size} is larger than the scan "
                            f"{feats.shape[:2]}")
    windows = sliding_window_view(feats, (patch_size, patch_size), axis=(0, 1))[::stride, ::stride]
    return windows.mean(axis=(-2, -1))


def _standardise(feats, options):
    """Centre each feature; scale each block (radial / angular) to unit total variance
    so that both count, keeping relative sizes inside a block."""
    flat = feats.reshape(-1, feats.shape[-1]).astype(np.float64)
    flat = flat - flat.mean(axis=0)
    n_first = options.get("n_rings", flat.shape[1]) if options["transform"].startswith("profiles") \
        else flat.shape[1]
    blocks = [slice(0, n_first), slice(n_first, flat.shape[1])]
    for sl in blocks:
        if sl.stop > sl.start:
            total = np.sqrt(flat[:, sl].var(axis=0).sum()) + 1e-12
            flat[:, sl] /= total
    scale = np.sqrt(flat.var(axis=0).sum() / flat.shape[1]) + 1e-12
    return (flat / scale).reshape(feats.shape)


def scan_centres(data: xr.DataArray, patch_size: int, stride: int):
    """Scan coordinates of the window centres used by patch-averaging."""
    out = []
    for dim in ("y", "x"):
        values = np.asarray(data[dim].values, float)
        n = (len(values) - patch_size) // stride + 1
        starts = np.arange(n) * stride
        centre = values[starts] + (values[starts + patch_size - 1] - values[starts]) / 2
        out.append(xr.DataArray(centre, dims=(dim,), coords={dim: centre},
                                attrs=dict(data[dim].attrs)))
    return out
