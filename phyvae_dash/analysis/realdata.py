"""Helpers for real experimental files: default preprocessing, settings and physics checks.

Real scans need what a microscopist does before any analysis (level the scan lines of
SPM channels, remove the sample tilt from topography, clip hot pixels, bin an image that
is larger than the features need) and, to be trusted, a check against physics that
does not need a ground truth:

* PFM: the phase channel of a 180° ferroelectric domain pattern is two-level, so
  :func:`phase_domains` gives a reference segmentation that domains found by a fit can
  be compared with (:func:`~phyvae_dash.analysis.metrics.adjusted_rand_index`,
  :func:`reference_agreement`).
* Current maps (conductive AFM, IV spectroscopy): conducting domain walls are thin lines
  of high current; :func:`high_signal_domain` says whether the domain with the highest
  mean signal is such a network.

Examples
--------
>>> import numpy as np, xarray as xr
>>> phase = np.where(np.arange(32)[None, :] < 10, 140.0, -40.0) * np.ones((32, 1))
>>> image = xr.DataArray(phase, dims=("y", "x"), name="Phase",
...                      attrs={"units": "deg", "phase_channels": ["Phase"]})
>>> labels = phase_domains(image)
>>> labels.values[0, [0, 31]].tolist()  # the 10 columns at 140° are the smaller domain
[1, 0]
"""
from __future__ import annotations

import math
import re

import numpy as np
import xarray as xr

from ..data import preprocess as pp
from ..data.channels import channel_names, is_spectral, phase_names
from ..errors import DataError

__all__ = ["is_spectral", "looks_like_spm", "prepare", "recommended_settings",
           "phase_domains", "reference_agreement", "high_signal_domain"]

#: Channel names of SPM signals that follow the surface (topography-like): these get a
#: background plane removed as well as their scan lines levelled.
TOPOGRAPHY = re.compile(r"height|topo|deflection|z ?sensor", re.IGNORECASE)
#: Channel names that mark a scan as SPM (scan lines are recorded one by one).
SPM_NAMES = re.compile(r"height|topo|amplitude|phase|deflection|trace|retrace|z ?sensor|"
                       r"current|potential", re.IGNORECASE)
#: Largest image side the default preprocessing keeps; larger images are binned.
#: Binning a 512-px STEM image to 256 px keeps its lattice resolved (MoS2 at 7 nm field
#: of view: ~10 px per period after binning) while the fit sees 4x fewer pixels.
MAX_SIDE = 256


def looks_like_spm(image: xr.DataArray) -> bool:
    """True when the channels are SPM signals (height, amplitude, phase, ...).

    SPM images are recorded line by line, so their lines carry offsets that the
    default preprocessing levels; electron-microscope images are left as they are.
    """
    if is_spectral(image):
        return False
    return bool(phase_names(image)) or any(SPM_NAMES.search(n) for n in channel_names(image))


def prepare(image: xr.DataArray, *, max_side: int = MAX_SIDE,
            clip=(0.1, 99.9)) -> xr.DataArray:
    """The preprocessing a microscopist expects for this kind of data, recorded in attrs.

    * SPM scans: each line levelled (:func:`~phyvae_dash.data.preprocess.correct_scan_lines`)
      in every channel except phase channels, and a plane removed
      (:func:`~phyvae_dash.data.preprocess.flatten`) from topography-like channels
      (height, deflection). Amplitude keeps its absolute level: it is the
      piezoresponse, not a height above a tilted plane.
    * Every image and spectral map: outliers clipped per channel (or per spectral
      point) to the ``clip`` percentiles (hot pixels, failed measurements).
    * Images larger than ``max_side`` pixels on a side: binned by the smallest
      integer factor that brings them under it (coordinates stay physical).

    Parameters
    ----------
    image : xarray.DataArray
        As returned by :func:`phyvae_dash.load`.
    max_side : int
        Largest image side kept without binning.
    clip : (float, float) or None
        Percentiles for :func:`~phyvae_dash.data.preprocess.clip_outliers`; ``None``
        skips clipping.

    Returns
    -------
    xarray.DataArray
        The preprocessed image; the steps are listed in ``attrs["preprocessing"]``.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> scan = xr.DataArray(np.random.default_rng(0).normal(size=(300, 300)),
    ...                     dims=("y", "x"), name="HeightRetrace")
    >>> prepare(scan).attrs["preprocessing"]  # doctest: +NORMALIZE_WHITESPACE
    ['flatten(order=1)', "correct_scan_lines(method='median')",
     'clip_outliers(percentile=(0.1, 99.9))', 'downsample(factor=2)']
    """
    if looks_like_spm(image):
        names, phases = channel_names(image), set(phase_names(image))
        signals = [n for n in names if n not in phases]
        topography = [n for n in signals if TOPOGRAPHY.search(n)]
        multi = image.ndim == 3
        # A single-channel image ignores `channels=` in the preprocess functions, so a
        # lone phase channel is skipped here: levelling an angle would shift domains.
        if topography:
            image = pp.flatten(image, order=1, channels=topography if multi else None)
        if signals:
            image = pp.correct_scan_lines(image, channels=signals if multi else None)
    if clip is not None:
        image = pp.clip_outliers(image, percentile=clip)
    if not is_spectral(image):
        side = max(image.sizes["y"], image.sizes["x"])
        if side > max_side:
            image = pp.downsample(image, int(math.ceil(side / max_side)))
    return image


def recommended_settings(image: xr.DataArray) -> dict:
    """Default ``fit`` settings for an image of this size and kind.

    Spectral maps: the spectrum averaged over a 3 x 3 neighbourhood of each position
    (stride 1), so that every position is a grid cell and thin features such as domain
    walls (a few positions wide) survive. Images: 16-pixel patches, or, for non-SPM
    images with an atomic lattice, patches three lattice periods wide (so that the
    translation-invariant |FFT| inputs that ``transform="auto"`` picks see it), with a
    stride that gives a grid of about 60 cells on the longer side (a few thousand
    patches: a fit of seconds on a laptop CPU).

    Parameters
    ----------
    image : xarray.DataArray
        The (preprocessed) image.

    Returns
    -------
    dict
        ``patch_size`` and ``stride``, ready for ``fit(image, **settings)``.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> noise = np.random.default_rng(0).normal(size=(256, 256))
    >>> recommended_settings(xr.DataArray(noise, dims=("y", "x")))
    {'patch_size': 16, 'stride': 4}
    """
    from ..models.features import detect_lattice_period

    if is_spectral(image):
        return {"patch_size": 3, "stride": 1}
    short, long = sorted((image.sizes["y"], image.sizes["x"]))
    patch = 16
    # Only atomic lattices (electron microscopy) widen the patch: the periodic textures
    # of SPM scans (ferroelastic twins, stripes) are domains themselves, and patches
    # several twin periods wide would blur the 180° walls between them.
    period = None if looks_like_spm(image) else detect_lattice_period(image)
    if period is not None:
        patch = max(patch, 2 * int(math.ceil(1.5 * period)))
    patch = min(patch, short)
    stride = max(1, round((long - patch) / 60))
    return {"patch_size": int(patch), "stride": int(stride)}


def _angles(image: xr.DataArray, channel) -> tuple[np.ndarray, str]:
    """The phase channel in radians, and its name."""
    phases = phase_names(image)
    if channel is None:
        if not phases:
            raise DataError("phase_domains: the image has no phase channel "
                            "(attrs['phase_channels'] is empty); name one with channel=")
        channel = phases[0]
    if image.ndim == 3:
        if image.dims[2] != "channel" or channel not in channel_names(image):
            raise DataError(f"phase_domains: no channel {channel!r}; channels: "
                            f"{channel_names(image)}")
        values = image.sel(channel=channel).values
        units = image.attrs.get("channel_units")
        unit = (str(units[channel_names(image).index(channel)])
                if isinstance(units, (list, tuple)) else "")
    else:
        values, unit = image.values, str(image.attrs.get("units", ""))
    values = np.asarray(values, dtype=float)
    # Degrees when the units say so; a phase stored without units is in degrees when
    # its range is wider than one turn in radians.
    in_degrees = unit == "deg" or (unit != "rad" and np.ptp(values) > 2 * math.pi * 1.05)
    return (np.deg2rad(values) if in_degrees else values), str(channel)


def phase_domains(image: xr.DataArray, channel: str | None = None) -> xr.DataArray:
    """Two-level reference domains from a PFM phase channel (Otsu on the circle).

    The two polarisations of 180° domains give phases about 180° apart, anywhere on
    the circle and often across the instrument's wrap point (e.g. -90°/270°), so a
    threshold on the raw number can fail. The phases are projected on the axis of the
    pattern instead: the direction of the mean of ``exp(2i*phase)`` (doubling the angle
    maps both polarisations to one direction), giving ``cos(phase - axis)``, close to +1
    in one domain and -1 in the other; Otsu's threshold splits that.

    Parameters
    ----------
    image : xarray.DataArray
        A phase image ``(y, x)`` or a multi-channel scan holding one.
    channel : str, optional
        The phase channel; default the first of ``attrs["phase_channels"]``.

    Returns
    -------
    xarray.DataArray
        Integer labels ``(y, x)`` on the image's pixels and coordinates: 0 for the
        larger domain (the matrix), 1 for the smaller (e.g. the switched regions);
        ``attrs`` give the channel, the axis in degrees and the threshold.

    Raises
    ------
    phyvae_dash.errors.DataError
        No phase channel, or a phase without two levels.
    """
    from skimage.filters import threshold_otsu

    angle, channel = _angles(image, channel)
    axis = 0.5 * float(np.angle(np.mean(np.exp(2j * angle))))
    projection = np.cos(angle - axis)
    if np.ptp(projection) == 0:
        raise DataError(f"phase_domains: channel {channel!r} is constant; no domains")
    threshold = float(threshold_otsu(projection))
    labels = (projection > threshold).astype(np.int64)
    if labels.mean() > 0.5:  # 0 for the larger domain (the matrix), 1 for the smaller
        labels = 1 - labels
    coords = {d: image[d] for d in ("y", "x") if d in image.coords}
    return xr.DataArray(labels, dims=("y", "x"), coords=coords, name="phase_domains",
                        attrs={"method": "otsu of cos(phase - axis)", "channel": channel,
                               "axis_deg": math.degrees(axis), "threshold": threshold,
                               "fraction_1": float(labels.mean())})


def reference_agreement(labels: xr.DataArray, reference: xr.DataArray) -> dict:
    """How well a segmentation agrees with a reference one, two ways.

    ``ari`` compares the partitions as they are. ``ari_merged`` first gives each found
    domain the reference level that most of its cells have: a fit may rightly split a
    reference domain further (PFM amplitude shows ferroelastic twins inside each
    polarisation), which costs ``ari`` but not ``ari_merged``, while domains that cut
    across the reference walls lower both. Both are about 0 for a random segmentation.

    Parameters
    ----------
    labels : xarray.DataArray
        Integer labels on the fit's grid.
    reference : xarray.DataArray
        Reference labels, at image resolution or on the same grid (sampled at the grid
        points by :func:`~phyvae_dash.analysis.metrics.labels_on_grid`).

    Returns
    -------
    dict
        ``ari``, ``ari_merged`` (floats) and ``n_domains`` (int).
    """
    from .metrics import adjusted_rand_index, labels_on_grid

    truth = labels_on_grid(reference, labels)
    found, ref = np.asarray(labels.values), np.asarray(truth.values)
    merged = found.copy()
    for k in np.unique(found[found >= 0]):
        cells = (found == k) & (ref >= 0)
        if cells.any():
            merged[found == k] = np.bincount(ref[cells]).argmax()
    return {"ari": adjusted_rand_index(labels, truth),
            "ari_merged": adjusted_rand_index(labels.copy(data=merged), truth),
            "n_domains": int(len(np.unique(found[found >= 0])))}


def high_signal_domain(labels: xr.DataArray, signal: xr.DataArray) -> dict:
    """Is the domain with the highest mean signal a thin network (e.g. conducting walls)?

    Parameters
    ----------
    labels : xarray.DataArray
        Integer labels on the fit's grid.
    signal : xarray.DataArray
        ``(y, x)`` signal at image resolution (e.g. the mean log current of each
        position); sampled at the grid points (nearest pixel).

    Returns
    -------
    dict
        ``domain`` (its label), ``area_fraction``; ``iou``, the intersection over union
        of the domain with the same number of highest-signal cells, and ``iou_chance``,
        its expected value for a domain of that size placed at random; ``edge_fraction``,
        the share of the domain's cells that touch another domain (1 for lines one or
        two cells wide, small for compact blobs); ``mean_signal`` per domain.
    """
    sampled = signal.sel(y=labels.y, x=labels.x, method="nearest").values
    found = np.asarray(labels.values)
    ids = [int(k) for k in np.unique(found[found >= 0])]
    means = [float(sampled[found == k].mean()) for k in ids]
    top_id = ids[int(np.argmax(means))]
    domain = found == top_id
    area = float(domain.mean())
    top = sampled >= np.quantile(sampled[found >= 0], 1 - area)
    union = float((domain | top).sum())
    iou = float((domain & top).sum()) / union if union else 0.0
    other = top.mean()
    chance = area * other / (area + other - area * other) if area + other > 0 else 0.0
    # A cell is on the domain's edge when any 4-neighbour belongs to another domain.
    padded = np.pad(domain, 1, mode="edge")
    inner = (padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:])
    edge = domain & ~inner
    return {"domain": top_id, "area_fraction": area, "iou": iou, "iou_chance": float(chance),
            "edge_fraction": float(edge.sum() / max(domain.sum(), 1)),
            "mean_signal": dict(zip(ids, means))}
