"""Synthetic phantoms: physically sensible microscopy images with known ground truth.

Every phantom is an :class:`xarray.Dataset` with

* ``image`` -- dims ``("y", "x")`` or ``("y", "x", "channel")``, what a microscope
  would record, with shot/read noise, scan-line jitter and a slow background;
* ``labels`` -- integer ``("y", "x")``: the domain level that a patch of the
  recommended size can resolve (what benchmarks score);
* ``boundaries`` -- boolean ``("y", "x")``: pixels with a 4-neighbour of a different
  label (see :func:`label_boundaries`);
* extra label levels where they exist (``variant_labels`` for stripe domains);
* ``y``/``x`` coordinates in physical units (``units`` attribute);
* ``attrs``: ``kind``, ``seed``, the noise settings, lattice period(s) in pixels and
  the recommended ``patch_size`` and ``stride``.

Four kinds exist, listed in :data:`KINDS` and built by name with :func:`make`:

* ``"graphene_grains"`` -- :func:`honeycomb_grains`: honeycomb lattice (period 7.3 px),
  grains rotated by arbitrary angles; labels = grain.
* ``"bfo_stripes"`` -- :func:`stripe_domains`: BiFeO3-like stripes (period 11.3 px) of
  four variants in two stripe orientations; labels = orientation domain,
  ``variant_labels`` = variant.
* ``"nio_lsmo"`` -- :func:`two_phase_lattice`: rock-salt pillars (4.8 px) in a
  perovskite matrix (8.9 px) of the same mean intensity; labels = phase.
* ``"pfm_labyrinth"`` -- :func:`pfm_labyrinth`: 180 degree labyrinth domains (width
  33.3 px) with PFM amplitude and phase channels; labels = up/down.

Lattice and stripe periods are deliberately not integers and not multiples of the
usual strides (2, 4, 8), as in real images: neighbouring patches see the lattice at
different offsets, which is what makes these images hard for a naive patch model.

Angles are in degrees, measured from the +x axis towards +y (increasing row index).
A wave with angle ``theta`` and period ``p`` varies as
``cos(2 pi (x cos(theta) + y sin(theta)) / p)``.
"""
from __future__ import annotations

import numpy as np
import xarray as xr
from scipy import ndimage
from skimage.morphology import remove_small_objects
from skimage.segmentation import expand_labels, find_boundaries

from . import synthetic_spectral
from ..errors import SettingsError

__all__ = [
    "KINDS",
    "FAMILIES",
    "make",
    "honeycomb_grains",
    "stripe_domains",
    "two_phase_lattice",
    "pfm_labyrinth",
    "nanodomains",
    "lattice_domains",
    "texture_domains",
    "layered_interface",
    "patch_stripes",
    "multi_domains",
    "label_boundaries",
]

#: Names accepted by :func:`make`, in a stable order.
KINDS = ("graphene_grains", "bfo_stripes", "nio_lsmo", "pfm_labyrinth")
#: Phantom families that no preset was tuned on (also built by :func:`make`), for
#: judging automatic settings: they take ``snr`` (per-pixel signal-to-noise ratio).
FAMILIES = ("nanodomains", "lattice_domains", "texture_domains", "layered_interface",
            "patch_stripes", "multi_domains")

_MIN_SIDE = 32

# Real spacings that set the pixel size, so coordinates are physically consistent.
_GRAPHENE_D100_NM = 0.2131  # {10-10} lattice-plane spacing of graphene (a = 0.246 nm)
_LSMO_A_NM = 0.387  # pseudo-cubic lattice constant of La0.7Sr0.3MnO3


# --------------------------------------------------------------------------- helpers


def label_boundaries(labels) -> np.ndarray:
    """Mark the pixels that sit on a label change.

    A pixel is on a boundary when one of its four neighbours carries a different
    label, so a wall between two domains is two pixels thick (one on each side).

    Parameters
    ----------
    labels : array_like of int, shape (ny, nx)
        Label image (numpy array or ``xarray.DataArray``).

    Returns
    -------
    numpy.ndarray of bool, shape (ny, nx)

    Examples
    --------
    >>> import numpy as np
    >>> labels = np.array([[0, 0, 1, 1]] * 2)
    >>> label_boundaries(labels).astype(int)
    array([[0, 1, 1, 0],
           [0, 1, 1, 0]])
    """
    return find_boundaries(np.asarray(labels), connectivity=1, mode="thick")


def _check_shape(shape) -> tuple[int, int]:
    try:
        ny, nx = (int(n) for n in shape)
    except (TypeError, ValueError):
        raise SettingsError(f"shape must be two integers (ny, nx), got {shape!r}") from None
    if min(ny, nx) < _MIN_SIDE:
        raise SettingsError(
            f"shape must be at least {_MIN_SIDE} x {_MIN_SIDE} pixels, got {shape!r}")
    return ny, nx


def _check_positive(**values):
    for name, value in values.items():
        if not np.isfinite(value) or value <= 0:
            raise SettingsError(f"{name} must be a positive number, got {value!r}")


def _grid(shape):
    ny, nx = shape
    return np.meshgrid(np.arange(ny, dtype=float), np.arange(nx, dtype=float), indexing="ij")


def _unit(field):
    """Zero mean, unit standard deviation (a constant field stays zero)."""
    field = field - field.mean()
    std = field.std()
    return field / std if std > 0 else field


def _smooth_noise(rng, shape, sigma_px):
    """Gaussian-filtered white noise with unit standard deviation."""
    return _unit(ndimage.gaussian_filter(rng.standard_normal(shape), sigma_px, mode="reflect"))


def _fourier_noise(rng, shape, transfer, pad):
    """White noise shaped in Fourier space by ``transfer(ky, kx)`` (cycles/px).

    Generated on a padded grid and cropped, so the field does not wrap around the
    image edges as a plain FFT filter would.
    """
    ny, nx = shape[0] + 2 * pad, shape[1] + 2 * pad
    ky = np.fft.fftfreq(ny)[:, None]
    kx = np.fft.fftfreq(nx)[None, :]
    spectrum = np.fft.fft2(rng.standard_normal((ny, nx))) * transfer(ky, kx)
    field = np.fft.ifft2(spectrum).real[pad:pad + shape[0], pad:pad + shape[1]]
    return _unit(field)


def _oriented_texture(rng, shape, angle_deg, length_px, width_px):
    """Random texture whose streaks run along ``angle_deg`` (unit std)."""
    t = np.deg2rad(angle_deg)

    def transfer(ky, kx):
        along = kx * np.cos(t) + ky * np.sin(t)
        across = -kx * np.sin(t) + ky * np.cos(t)
        return np.exp(-2 * np.pi**2 * ((along * length_px) ** 2 + (across * width_px) ** 2))

    return _fourier_noise(rng, shape, transfer, pad=int(3 * length_px))


def _warp(rng, shape, amplitude_px, scale_px):
    """Smooth random displacement (dy, dx) that roughens otherwise straight boundaries."""
    if amplitude_px <= 0:
        return np.zeros(shape), np.zeros(shape)
    return (amplitude_px * _smooth_noise(rng, shape, scale_px),
            amplitude_px * _smooth_noise(rng, shape, scale_px))


def _separated_angles(rng, n, min_sep_deg, symmetry_deg):
    """``n`` random angles in [0, symmetry) at least ``min_sep_deg`` apart modulo symmetry.

    The gaps between consecutive angles around the circle are the minimum separation
    plus a random (Dirichlet) share of what is left, so the constraint always holds
    without rejection sampling.
    """
    if n * min_sep_deg >= symmetry_deg:
        raise SettingsError(
            f"cannot place {n} orientations at least {min_sep_deg} deg apart modulo "
            f"{symmetry_deg} deg; use fewer grains or a smaller min_angle_deg"
        )
    gaps = min_sep_deg + (symmetry_deg - n * min_sep_deg) * rng.dirichlet(np.ones(n))
    angles = rng.uniform(0, symmetry_deg) + np.concatenate([[0.0], np.cumsum(gaps[:-1])])
    return np.mod(angles, symmetry_deg)


def _rough_voronoi(rng, shape, n, roughness_px, min_area_fraction=0.4, tries=200):
    """Voronoi regions of ``n`` random seeds on a randomly warped grid.

    Seeds are redrawn until every region holds at least ``min_area_fraction`` of
    the mean area, so that each region is large enough for a patch to resolve.
    """
    yy, xx = _grid(shape)
    dy, dx = _warp(rng, shape, roughness_px, max(min(shape) / 12, 3.0))
    yy, xx = yy + dy, xx + dx
    ny, nx = shape
    for _ in range(tries):
        seeds = rng.uniform((0, 0), (ny, nx), size=(n, 2))
        dist2 = ((yy[None] - seeds[:, 0, None, None]) ** 2
                 + (xx[None] - seeds[:, 1, None, None]) ** 2)
        labels = np.argmin(dist2, axis=0)
        areas = np.bincount(labels.ravel(), minlength=n)
        if areas.min() >= min_area_fraction * labels.size / n:
            return labels
    raise SettingsError(f"could not split a {ny} x {nx} image into {n} regions; use fewer")


def _absorb_specks(labels, min_area):
    """Give connected pieces smaller than ``min_area`` pixels the label around them.

    Random boundaries can cut off specks (a warped Voronoi cell's sliver, a tiny
    labyrinth bubble) that no patch could resolve; each speck pixel takes the label
    of the nearest pixel outside any speck.
    """
    # remove_small_objects works on one label's pieces at a time (connected components
    # of equal value); expand_labels then grows the surviving pieces into the holes.
    kept = np.zeros(labels.shape, dtype=np.int64)
    for value in np.unique(labels):
        pieces = remove_small_objects(labels == value, max_size=int(np.ceil(min_area)) - 1)
        kept[pieces] = value + 1
    if not kept.any() or kept.all():
        return labels
    return expand_labels(kept, distance=max(labels.shape)) - 1


def _row_shifts(rng, ny, jitter_px):
    """Horizontal position error of each scan line, in pixels.

    Real scans show independent line-to-line jitter (fly-back timing, mains pickup)
    on top of a slow drift; the two parts share the variance.
    """
    if jitter_px <= 0:
        return np.zeros(ny)
    white = rng.standard_normal(ny)
    drift = _unit(ndimage.gaussian_filter1d(rng.standard_normal(ny), max(ny / 16, 1.0)))
    return jitter_px * (0.8 * white + 0.6 * drift)


def _shift_rows(array, shifts, order):
    """Sample each row at ``x + shift[row]``: what the probe saw where it really was."""
    if not np.any(shifts):
        return array
    yy, xx = _grid(array.shape)
    return ndimage.map_coordinates(array, [yy, xx + shifts[:, None]], order=order, mode="nearest")


def _background(rng, shape, amplitude):
    """Slow background: a random tilt plus a very smooth bump field (unit-free)."""
    if amplitude <= 0:
        return np.zeros(shape)
    yy, xx = _grid(shape)
    slope = rng.standard_normal(2)
    plane = _unit(slope[0] * yy + slope[1] * xx)
    bumps = _smooth_noise(rng, shape, min(shape) / 4)
    return amplitude * (0.7 * plane + 0.3 * bumps) / 2


def _record(rng, clean, label_maps, *, dose, noise, jitter_px, line_offset, background):
    """Turn a clean, non-negative intensity image into a recorded scan.

    Order follows the physics: slow background (part of the signal), scan-line
    jitter (the probe's real positions; labels follow the probe), shot noise (dose =
    counts per pixel at intensity 1, ``0``/``None`` for none), then detector read
    noise and per-line offsets.
    """
    ny = clean.shape[0]
    signal = np.clip(clean + _background(rng, clean.shape, background), 0, None)
    shifts = _row_shifts(rng, ny, jitter_px)
    signal = np.clip(_shift_rows(signal, shifts, order=3), 0, None)
    label_maps = [_shift_rows(lab, shifts, order=0) for lab in label_maps]
    if dose:
        signal = rng.poisson(signal * dose) / dose
    image = signal + noise * rng.standard_normal(signal.shape)
    image = image + line_offset * rng.standard_normal(ny)[:, None]
    return image, label_maps


def _noise_attrs(dose, noise, jitter_px, line_offset, background):
    return {
        "dose": float(dose or 0.0),
        "noise": float(noise),
        "jitter_px": float(jitter_px),
        "line_offset": float(line_offset),
        "background": float(background),
    }


def _patch_size(requested, shape):
    """The recommended patch size, kept to at most a third of the smaller side."""
    cap = max(8, (min(shape) // 3) // 4 * 4)
    return int(min(requested, cap))


def _dataset(image, labels, extra, *, pixel_size, units, attrs, image_attrs,
             channels=None, label_attrs=None):
    ny, nx = labels.shape
    coords = {
        "y": ("y", np.arange(ny) * pixel_size, {"units": units, "long_name": "y position"}),
        "x": ("x", np.arange(nx) * pixel_size, {"units": units, "long_name": "x position"}),
    }
    dims = ("y", "x")
    if channels is not None:
        coords["channel"] = ("channel", list(channels))
        image_dims = dims + ("channel",)
    else:
        image_dims = dims
    labels = labels.astype(np.int64)
    data_vars = {
        "image": (image_dims, image.astype(np.float64), image_attrs),
        "labels": (dims, labels, label_attrs or {}),
        "boundaries": (dims, label_boundaries(labels),
                       {"long_name": "pixels with a 4-neighbour of another label"}),
    }
    for name, (values, var_attrs) in extra.items():
        data_vars[name] = (dims, values.astype(np.int64), var_attrs)
    return xr.Dataset(data_vars, coords=coords,
                      attrs={**attrs, "pixel_size": float(pixel_size), "units": units})


# --------------------------------------------------------------------------- phantoms


def honeycomb_grains(
    shape=(256, 256),
    *,
    seed=0,
    n_grains=3,
    angles=None,
    min_angle_deg=10.0,
    period_px=7.3,
    atom_sigma_px=0.9,
    boundary_roughness_px=3.0,
    dose=200.0,
    noise=0.02,
    jitter_px=0.3,
    line_offset=0.01,
    background=0.1,
    patch_size=24,
    stride=4,
) -> xr.Dataset:
    """Graphene-like honeycomb lattice split into grains rotated against each other.

    The lattice is the sum of three plane waves 120 degrees apart, whose minima form
    the honeycomb of carbon columns; an exponential turns them into round atoms of
    width ``atom_sigma_px``. Grains are Voronoi regions of random seeds on a warped
    grid (slightly rough boundaries), each with its own lattice rotation and origin.

    Parameters
    ----------
    shape : (int, int)
        Image size in pixels, at least 32 x 32.
    seed : int or None
        Random seed: the same seed gives identical arrays (``None``: fresh
        randomness, recorded as ``-1``).
    n_grains : int
        Number of grains (labels ``0 .. n_grains - 1``).
    angles : sequence of float, optional
        Lattice rotation of each grain in degrees. Default: random, at least
        ``min_angle_deg`` apart modulo 60 (the honeycomb's symmetry).
    min_angle_deg : float
        Smallest misorientation between random grain angles.
    period_px : float
        Spacing of the {10-10} lattice planes in pixels (the FFT's first ring). Sets
        the pixel size: ``0.2131 nm / period_px``.
    atom_sigma_px : float
        Gaussian width of a carbon column at its peak.
    boundary_roughness_px : float
        Amplitude of the random warp that roughens grain boundaries.
    dose : float or None
        Counts per pixel at intensity 1 (Poisson noise); ``None`` or 0 for none.
    noise : float
        Standard deviation of Gaussian read noise.
    jitter_px : float
        Standard deviation of the horizontal scan-line jitter in pixels.
    line_offset : float
        Standard deviation of a per-line additive offset.
    background : float
        Amplitude of a slow background (tilt and broad bumps).
    patch_size, stride : int
        Recommended patch size and stride, stored in ``attrs``.

    Returns
    -------
    xarray.Dataset
        ``image`` (y, x), ``labels`` = grain id, ``boundaries``; coordinates in nm;
        ``attrs["angles_deg"]`` gives each grain's rotation in [0, 60).

    Examples
    --------
    >>> ds = honeycomb_grains(shape=(96, 96), seed=1)
    >>> ds.image.dims, sorted(set(ds.labels.values.ravel().tolist()))
    (('y', 'x'), [0, 1, 2])
    >>> ds.attrs["period_px"], ds.x.attrs["units"]
    (7.3, 'nm')
    """
    shape = _check_shape(shape)
    _check_positive(period_px=period_px, atom_sigma_px=atom_sigma_px)
    if int(n_grains) < 1:
        raise SettingsError(f"n_grains must be at least 1, got {n_grains!r}")
    n_grains = int(n_grains)
    rng = np.random.default_rng(seed)
    if angles is None:
        angles = _separated_angles(rng, n_grains, min_angle_deg, 60.0)
    else:
        angles = np.mod(np.asarray(angles, dtype=float), 60.0)
        if angles.shape != (n_grains,):
            raise SettingsError(
                f"angles must give one angle per grain ({n_grains}), got {angles.size}")
    patch = _patch_size(patch_size, shape)
    labels = _absorb_specks(_rough_voronoi(rng, shape, n_grains, boundary_roughness_px),
                            (patch / 2) ** 2)

    yy, xx = _grid(shape)
    k = 2 * np.pi / period_px
    # Near a honeycomb site the wave sum is -1.5 + (3/8) k^2 r^2; this sharpness
    # makes each column a Gaussian of width atom_sigma_px.
    sharpness = 4.0 / (3.0 * atom_sigma_px**2 * k**2)
    clean = np.zeros(shape)
    for grain, angle in enumerate(angles):
        origin = rng.uniform(0, period_px, size=2)
        waves = sum(
            np.cos(k * ((xx - origin[1]) * np.cos(t) + (yy - origin[0]) * np.sin(t)))
            for t in np.deg2rad(angle) + np.array([0.0, 2.0, 4.0]) * np.pi / 3
        )
        inside = labels == grain
        clean[inside] = np.exp(-sharpness * (waves[inside] + 1.5))
    # A weak diffuse floor (amorphous contamination, thermal diffuse scattering).
    clean = 0.05 + 0.95 * clean

    image, (labels,) = _record(rng, clean, [labels], dose=dose, noise=noise, jitter_px=jitter_px,
                               line_offset=line_offset, background=background)
    return _dataset(
        image, labels, {},
        pixel_size=_GRAPHENE_D100_NM / period_px,
        units="nm",
        image_attrs={"long_name": "HAADF intensity", "units": "a.u."},
        label_attrs={"long_name": "grain", "level": "grain"},
        attrs={
            "kind": "graphene_grains",
            "description": "graphene-like honeycomb lattice, grains rotated by arbitrary angles",
            "seed": _seed_attr(seed),
            **_noise_attrs(dose, noise, jitter_px, line_offset, background),
            "period_px": float(period_px),
            "angles_deg": [float(a) for a in angles],
            "n_grains": n_grains,
            "n_labels": n_grains,
            "patch_size": patch,
            "stride": int(stride),
        },
    )


def stripe_domains(
    shape=(256, 256),
    *,
    seed=0,
    n_domains=3,
    stripe_period_px=11.3,
    stripe_angles_deg=(45.0, -45.0),
    band_angle_deg=0.0,
    variant_levels=(0.3, 0.7, 0.38, 0.62),
    wall_width_px=0.8,
    waviness_px=1.0,
    texture=0.06,
    boundary_roughness_px=3.0,
    dose=None,
    noise=0.05,
    jitter_px=0.3,
    line_offset=0.02,
    background=0.1,
    pixel_size=15.0,
    patch_size=24,
    stride=4,
) -> xr.Dataset:
    """BiFeO3-like ferroelastic stripe domains of four polarisation variants.

    The image is cut into ``n_domains`` bands ("orientation domains", slightly rough
    boundaries, herringbone-like). Inside a band thin stripes alternate between two
    of the four variants, and the stripe direction alternates between the bands:
    variants 0/1 form stripes at ``stripe_angles_deg[0]``, variants 2/3 at
    ``stripe_angles_deg[1]``. Variants differ in intensity (``variant_levels``) and
    in texture (streaks along a variant-specific direction), as in PFM or HAADF.
    By default both orientation domains have the same mean intensity, so only the
    stripe direction tells them apart.

    Parameters
    ----------
    shape : (int, int)
        Image size in pixels, at least 32 x 32.
    seed : int or None
        Random seed: the same seed gives identical arrays (``None``: fresh
        randomness, recorded as ``-1``).
    n_domains : int
        Number of bands, at least 2 (orientations alternate band by band).
    stripe_period_px : float
        Period of a stripe pair (two variants) in pixels, measured across the stripes.
    stripe_angles_deg : (float, float)
        Direction of the stripe wave vector in each kind of orientation domain.
    band_angle_deg : float
        Direction of the band normal (0: horizontal bands stacked along y).
    variant_levels : 4 floats
        Mean intensity of each variant.
    wall_width_px : float
        Width of the smooth intensity step at a stripe wall.
    waviness_px : float
        How far stripe walls meander from straight lines.
    texture : float
        Strength of the variant-specific streaky texture.
    boundary_roughness_px : float
        Roughness of the boundaries between bands.
    dose, noise, jitter_px, line_offset, background :
        Noise settings as in :func:`honeycomb_grains` (no shot noise by default, as
        in PFM).
    pixel_size : float
        Pixel size in nm.
    patch_size, stride : int
        Recommended patch size and stride. 24 px holds two stripe periods, which
        |FFT| features need to see the stripe direction (16 px holds 1.4). Kept equal
        to ``phyvae_dash.models.features.PRESETS`` (a test checks it).

    Returns
    -------
    xarray.Dataset
        ``image`` (y, x); ``labels`` = orientation domain (0: stripes at
        ``stripe_angles_deg[0]``, 1: at ``stripe_angles_deg[1]``), the level a patch
        spanning several stripes resolves; ``variant_labels`` = variant 0..3;
        ``boundaries`` of ``labels``.

    Examples
    --------
    >>> ds = stripe_domains(shape=(96, 96), seed=0)
    >>> sorted(set(ds.labels.values.ravel().tolist()))
    [0, 1]
    >>> sorted(set(ds.variant_labels.values.ravel().tolist()))
    [0, 1, 2, 3]
    """
    shape = _check_shape(shape)
    _check_positive(stripe_period_px=stripe_period_px, wall_width_px=wall_width_px)
    if int(n_domains) < 2:
        raise SettingsError(f"n_domains must be at least 2, got {n_domains!r}")
    if len(stripe_angles_deg) != 2 or len(variant_levels) != 4:
        raise SettingsError("stripe_angles_deg needs 2 angles and variant_levels 4 intensities")
    n_domains = int(n_domains)
    rng = np.random.default_rng(seed)
    yy, xx = _grid(shape)

    # Bands: widths are at least 60 % of the mean so every band fits several patches.
    b = np.deg2rad(band_angle_deg)
    dy, dx = _warp(rng, shape, boundary_roughness_px, max(min(shape) / 10, 3.0))
    across = (yy + dy) * np.cos(b) + (xx + dx) * np.sin(b)
    low, high = across.min(), across.max() + 1e-9
    widths = (high - low) * (0.6 / n_domains + 0.4 * rng.dirichlet(np.ones(n_domains)))
    edges = low + np.cumsum(widths)[:-1]
    band = np.searchsorted(edges, across, side="right")
    first = int(rng.integers(2))
    patch = _patch_size(patch_size, shape)
    labels = _absorb_specks((band + first) % 2, (patch / 2) ** 2)

    variants = np.zeros(shape, dtype=np.int64)
    clean = np.zeros(shape)
    for orientation, angle in enumerate(stripe_angles_deg):
        t = np.deg2rad(angle)
        meander = (2 * np.pi * waviness_px / stripe_period_px) * _smooth_noise(
            rng, shape, 2 * stripe_period_px)
        phase = (2 * np.pi * (xx * np.cos(t) + yy * np.sin(t)) / stripe_period_px
                 + rng.uniform(0, 2 * np.pi) + meander)
        wave = np.cos(phase)
        low_v, high_v = 2 * orientation, 2 * orientation + 1
        # tanh of the wave scaled to pixels: a step of width wall_width_px at each wall.
        step = np.tanh(wave * stripe_period_px / (2 * np.pi * wall_width_px))
        level = ((variant_levels[low_v] + variant_levels[high_v]) / 2
                 + (variant_levels[low_v] - variant_levels[high_v]) / 2 * step)
        inside = labels == orientation
        variants[inside] = np.where(wave[inside] >= 0, low_v, high_v)
        clean[inside] = level[inside]
    for variant in range(4):
        streaks = _oriented_texture(rng, shape, 45.0 * variant, 4.0, 0.8)
        inside = variants == variant
        clean[inside] += texture * streaks[inside]
    clean = np.clip(clean, 0, None)

    image, (labels, variants) = _record(
        rng, clean, [labels, variants], dose=dose, noise=noise, jitter_px=jitter_px,
        line_offset=line_offset, background=background)
    return _dataset(
        image, labels,
        {"variant_labels": (variants, {"long_name": "polarisation variant", "level": "variant"})},
        pixel_size=pixel_size,
        units="nm",
        image_attrs={"long_name": "PFM / HAADF-like signal", "units": "a.u."},
        label_attrs={"long_name": "stripe orientation domain", "level": "orientation"},
        attrs={
            "kind": "bfo_stripes",
            "description": "BiFeO3-like stripe domains: 4 variants, 2 stripe orientations",
            "seed": _seed_attr(seed),
            **_noise_attrs(dose, noise, jitter_px, line_offset, background),
            "period_px": float(stripe_period_px),
            "stripe_period_px": float(stripe_period_px),
            "stripe_angles_deg": [float(a) for a in stripe_angles_deg],
            "variant_levels": [float(v) for v in variant_levels],
            "n_labels": 2,
            "patch_size": patch,
            "stride": int(stride),
        },
    )


def two_phase_lattice(
    shape=(256, 256),
    *,
    seed=0,
    n_pillars=3,
    pillar_radius_px=None,
    pillar_period_px=4.8,
    matrix_period_px=8.9,
    angle_deg=None,
    misorientation_deg=2.0,
    atom_sigma_px=1.0,
    b_site_intensity=0.3,
    phase_contrast=0.0,
    boundary_roughness_px=2.0,
    dose=200.0,
    noise=0.02,
    jitter_px=0.3,
    line_offset=0.01,
    background=0.1,
    patch_size=24,
    stride=4,
) -> xr.Dataset:
    """NiO-LSMO-like two-phase lattice: rock-salt pillars in a perovskite matrix.

    The matrix is a perovskite-like square lattice (bright A-site columns at the
    corners, dimmer B-site columns at the centres, period ``matrix_period_px``); the
    pillars are irregular round blobs of a rock-salt-like square lattice of one
    column type (period ``pillar_period_px``), rotated by ``misorientation_deg``.
    Both lattices are scaled to the same mean intensity and contrast, so only the
    lattice itself tells the phases apart: the hard case for a patch model.

    Parameters
    ----------
    shape : (int, int)
        Image size in pixels, at least 32 x 32.
    seed : int or None
        Random seed: the same seed gives identical arrays (``None``: fresh
        randomness, recorded as ``-1``).
    n_pillars : int
        Number of pillars, at least 1.
    pillar_radius_px : float, optional
        Mean pillar radius. Default: 16 % of the smaller image side.
    pillar_period_px, matrix_period_px : float
        Column spacings of the two lattices. The matrix one sets the pixel size
        (``0.387 nm / matrix_period_px``, the LSMO lattice constant); the default
        pillar spacing is then that of NiO columns along [001] (a/2 = 0.209 nm).
        The matrix's strongest Fourier peak is its (110) one, at
        ``matrix_period_px / sqrt(2)``, because the B-site columns sit at the cell
        centres; keep that away from ``pillar_period_px``.
    angle_deg : float, optional
        In-plane rotation of the matrix lattice (scan rotation). Default: random.
    misorientation_deg : float
        Rotation of the pillar lattice against the matrix.
    atom_sigma_px : float
        Gaussian width of an atomic column.
    b_site_intensity : float
        Intensity of the matrix B-site column relative to the A-site one (HAADF
        scales roughly as Z^1.7: Mn against La/Sr gives about 0.3).
    phase_contrast : float
        Relative mean-intensity difference of the pillars (0: same mean).
    boundary_roughness_px : float
        Roughness of the pillar outlines.
    dose, noise, jitter_px, line_offset, background :
        Noise settings as in :func:`honeycomb_grains`.
    patch_size, stride : int
        Recommended patch size and stride.

    Returns
    -------
    xarray.Dataset
        ``image`` (y, x), ``labels`` (0 = matrix, 1 = pillar), ``boundaries``;
        coordinates in nm.

    Examples
    --------
    >>> ds = two_phase_lattice(shape=(96, 96), seed=0)
    >>> sorted(set(ds.labels.values.ravel().tolist()))
    [0, 1]
    >>> ds.attrs["pillar_period_px"], ds.attrs["matrix_period_px"]
    (4.8, 8.9)
    """
    shape = _check_shape(shape)
    _check_positive(pillar_period_px=pillar_period_px, matrix_period_px=matrix_period_px,
                    atom_sigma_px=atom_sigma_px)
    if int(n_pillars) < 1:
        raise SettingsError(f"n_pillars must be at least 1, got {n_pillars!r}")
    n_pillars = int(n_pillars)
    rng = np.random.default_rng(seed)
    radius = 0.16 * min(shape) if pillar_radius_px is None else float(pillar_radius_px)
    _check_positive(pillar_radius_px=radius)
    if angle_deg is None:
        angle_deg = float(rng.uniform(0, 90))

    patch = _patch_size(patch_size, shape)
    labels = _absorb_specks(_pillars(rng, shape, n_pillars, radius, boundary_roughness_px),
                            (patch / 2) ** 2)

    yy, xx = _grid(shape)
    matrix = _square_lattice(
        yy, xx, matrix_period_px, angle_deg, rng.uniform(0, matrix_period_px, 2), atom_sigma_px,
        basis=[(0.0, 0.0, 1.0), (0.5, 0.5, b_site_intensity)])
    pillar = _square_lattice(
        yy, xx, pillar_period_px, angle_deg + misorientation_deg,
        rng.uniform(0, pillar_period_px, 2), atom_sigma_px, basis=[(0.0, 0.0, 1.0)])
    # Same mean and standard deviation in both phases; the shared offset is the
    # smallest that keeps both non-negative (a diffuse background, as in HAADF).
    matrix, pillar = _unit(matrix), _unit(pillar)
    contrast = 0.25
    floor = contrast * max(-matrix.min(), -pillar.min()) + 0.02
    clean = np.where(labels == 1, (floor + contrast * pillar) * (1 + phase_contrast),
                     floor + contrast * matrix)

    image, (labels,) = _record(rng, clean, [labels], dose=dose, noise=noise, jitter_px=jitter_px,
                               line_offset=line_offset, background=background)
    return _dataset(
        image, labels, {},
        pixel_size=_LSMO_A_NM / matrix_period_px,
        units="nm",
        image_attrs={"long_name": "HAADF intensity", "units": "a.u."},
        label_attrs={"long_name": "phase (0 matrix, 1 pillar)", "level": "phase"},
        attrs={
            "kind": "nio_lsmo",
            "description": "NiO-LSMO-like rock-salt pillars in a perovskite matrix, "
                           "equal mean intensity",
            "seed": _seed_attr(seed),
            **_noise_attrs(dose, noise, jitter_px, line_offset, background),
            "period_px": [float(matrix_period_px), float(pillar_period_px)],
            "matrix_period_px": float(matrix_period_px),
            "pillar_period_px": float(pillar_period_px),
            "angle_deg": float(angle_deg),
            "misorientation_deg": float(misorientation_deg),
            "phase_contrast": float(phase_contrast),
            "n_pillars": n_pillars,
            "pillar_radius_px": float(radius),
            "n_labels": 2,
            "patch_size": patch,
            "stride": int(stride),
        },
    )


def _square_lattice(yy, xx, period, angle_deg, origin, sigma, basis):
    """Gaussian atomic columns on a square lattice with a basis of (u, v, intensity).

    Fractional lattice coordinates minus their rounded value give each pixel's offset
    from the nearest column of each basis site, so there is no loop over atoms.
    """
    t = np.deg2rad(angle_deg)
    y0, x0 = yy - origin[0], xx - origin[1]
    u = (x0 * np.cos(t) + y0 * np.sin(t)) / period
    v = (-x0 * np.sin(t) + y0 * np.cos(t)) / period
    out = np.zeros(yy.shape)
    for bu, bv, intensity in basis:
        du = u - bu
        dv = v - bv
        du -= np.round(du)
        dv -= np.round(dv)
        out += intensity * np.exp(-(du**2 + dv**2) * period**2 / (2 * sigma**2))
    return out


def _pillars(rng, shape, n, radius, roughness_px, tries=500):
    """Binary map of ``n`` non-overlapping, irregular round pillars.

    Each outline is a circle modulated by a few low harmonics; centres keep at least
    ``2.6 * radius`` apart and inside the image, so every pillar is mostly visible.
    """
    ny, nx = shape
    centres = []
    margin = 0.7 * radius
    for _ in range(tries):
        if len(centres) == n:
            break
        c = rng.uniform((margin, margin), (ny - margin, nx - margin))
        if all(np.hypot(*(c - other)) >= 2.6 * radius for other in centres):
            centres.append(c)
    if len(centres) < n:
        raise SettingsError(
            f"{n} pillars of radius {radius:.1f} px do not fit in a {ny} x {nx} image; "
            "use fewer or smaller pillars"
        )
    yy, xx = _grid(shape)
    # Roughness in proportion to the pillar, so small pillars do not fray into specks.
    dy, dx = _warp(rng, shape, min(roughness_px, 0.15 * radius), max(radius / 3, 2.0))
    yy, xx = yy + dy, xx + dx
    inside = np.zeros(shape, dtype=bool)
    for cy, cx in centres:
        theta = np.arctan2(yy - cy, xx - cx)
        wobble = sum(rng.uniform(0, 0.08) * np.cos(m * theta + rng.uniform(0, 2 * np.pi))
                     for m in (2, 3, 4))
        inside |= np.hypot(yy - cy, xx - cx) <= radius * (1 + wobble)
    # The warp can still pinch off a sliver or leave a hole: keep one solid blob each.
    parts, n_parts = ndimage.label(inside)
    areas = np.bincount(parts.ravel(), minlength=n_parts + 1)
    keep = areas >= 0.2 * np.pi * radius**2
    keep[0] = False
    return ndimage.binary_fill_holes(keep[parts]).astype(np.int64)


def pfm_labyrinth(
    shape=(256, 256),
    *,
    seed=0,
    domain_width_px=33.3,
    wall_width_px=1.5,
    wall_depth=0.6,
    phase_deg=90.0,
    amplitude_noise=0.05,
    phase_noise_deg=10.0,
    jitter_px=0.3,
    line_offset=0.02,
    background=0.1,
    pixel_size=0.02,
    patch_size=16,
    stride=4,
) -> xr.Dataset:
    """PFM-like 180 degree labyrinth domains with amplitude and phase channels.

    The labyrinth is a band-pass filtered random field (a ring in Fourier space at
    one over twice the domain width) thresholded at its median, so up and down
    domains cover equal areas. The amplitude is constant with a dip of width
    ``wall_width_px`` at the walls; the phase is ``+phase_deg`` (up, label 1) or
    ``-phase_deg`` (down, label 0), changing smoothly across the wall, plus noise.

    Parameters
    ----------
    shape : (int, int)
        Image size in pixels, at least 32 x 32.
    seed : int or None
        Random seed: the same seed gives identical arrays (``None``: fresh
        randomness, recorded as ``-1``).
    domain_width_px : float
        Typical width of a domain (half the labyrinth period).
    wall_width_px : float
        Width (Gaussian sigma) of the amplitude dip at walls, set by the tip radius.
    wall_depth : float
        Relative depth of the amplitude dip (0: no dip, 1: zero amplitude on the wall).
    phase_deg : float
        Phase of up domains; down domains have the opposite sign.
    amplitude_noise : float
        Gaussian noise on the amplitude, relative to its level.
    phase_noise_deg : float
        Gaussian noise on the phase in degrees.
    jitter_px, line_offset, background : float
        Scan-line jitter (px), per-line amplitude offset and slow amplitude background.
    pixel_size : float
        Pixel size in micrometres.
    patch_size, stride : int
        Recommended patch size and stride.

    Returns
    -------
    xarray.Dataset
        ``image`` (y, x, channel) with channels ``("amplitude", "phase")``,
        ``image.attrs["phase_channels"] == ["phase"]`` and
        ``image.attrs["channel_units"] == ["a.u.", "deg"]``; ``labels`` (0 down,
        1 up), ``boundaries``; coordinates in µm.

    Examples
    --------
    >>> ds = pfm_labyrinth(shape=(96, 96), seed=0)
    >>> ds.channel.values.tolist(), ds.image.attrs["phase_channels"]
    (['amplitude', 'phase'], ['phase'])
    """
    shape = _check_shape(shape)
    _check_positive(domain_width_px=domain_width_px, wall_width_px=wall_width_px)
    rng = np.random.default_rng(seed)
    k0 = 1.0 / (2.0 * domain_width_px)

    # A narrow ring gives domains of nearly uniform width, as wall energy favours.
    def ring(ky, kx):
        return np.exp(-((np.hypot(ky, kx) - k0) ** 2) / (2 * (0.15 * k0) ** 2))

    field = _fourier_noise(rng, shape, ring, pad=int(2 * domain_width_px))
    patch = _patch_size(patch_size, shape)
    up = _absorb_specks(field > np.median(field), (patch / 2) ** 2)
    # Signed distance to the wall in pixels (the wall lies half-way between pixels).
    distance = np.where(up, ndimage.distance_transform_edt(up),
                        -ndimage.distance_transform_edt(~up))
    distance = distance - 0.5 * np.sign(distance)
    amplitude = 1.0 - wall_depth * np.exp(-(distance**2) / (2 * wall_width_px**2))
    phase = phase_deg * np.tanh(distance / (0.5 * wall_width_px))

    shifts = _row_shifts(rng, shape[0], jitter_px)
    amplitude = _shift_rows(amplitude + _background(rng, shape, background), shifts, order=3)
    phase = _shift_rows(phase, shifts, order=1)
    labels = _shift_rows(up.astype(np.int64), shifts, order=0)
    amplitude = (amplitude * (1 + amplitude_noise * rng.standard_normal(shape))
                 + line_offset * rng.standard_normal(shape[0])[:, None])
    phase = phase + phase_noise_deg * rng.standard_normal(shape)
    phase = np.mod(phase + 180.0, 360.0) - 180.0  # the lock-in reports (-180, 180]

    return _dataset(
        np.stack([amplitude, phase], axis=-1), labels, {},
        pixel_size=pixel_size,
        units="µm",
        channels=("amplitude", "phase"),
        image_attrs={"long_name": "PFM response", "phase_channels": ["phase"],
                     "channel_units": ["a.u.", "deg"]},
        label_attrs={"long_name": "polarisation (0 down, 1 up)", "level": "polarisation"},
        attrs={
            "kind": "pfm_labyrinth",
            "description": "PFM-like 180 degree labyrinth domains, amplitude and phase",
            "seed": _seed_attr(seed),
            "amplitude_noise": float(amplitude_noise),
            "phase_noise_deg": float(phase_noise_deg),
            "jitter_px": float(jitter_px),
            "line_offset": float(line_offset),
            "background": float(background),
            "domain_width_px": float(domain_width_px),
            "wall_width_px": float(wall_width_px),
            "wall_width": float(wall_width_px * pixel_size),
            "phase_deg": float(phase_deg),
            "n_labels": 2,
            "patch_size": patch,
            "stride": int(stride),
        },
    )



# ----------------------------------------------------------------- families for `auto`
#
# Phantoms that no preset was tuned on, for judging the automatic choice of settings
# (``models.auto``, ``benchmarks/auto_settings.py``). Each takes ``shape``, ``seed`` and
# ``snr``: the per-pixel signal-to-noise ratio, i.e. the standard deviation of the
# clean image over that of the added Gaussian noise (``None``: no noise added).


def _add_noise(rng, clean, snr):
    if snr is None:
        return clean
    _check_positive(snr=snr)
    return clean + (clean.std() / snr) * rng.standard_normal(clean.shape)


def _family_dataset(kind, description, rng, clean, labels, *, seed, snr, jitter_px,
                    label_name, extra_attrs):
    """Scan jitter (labels follow the probe), noise, and the common Dataset layout."""
    shifts = _row_shifts(rng, clean.shape[0], jitter_px)
    clean = _shift_rows(clean, shifts, order=1)
    labels = _shift_rows(labels.astype(np.int64), shifts, order=0)
    image = _add_noise(rng, clean, snr)
    n_labels = int(labels.max()) + 1
    return _dataset(
        image, labels, {}, pixel_size=1.0, units="px",
        image_attrs={"long_name": "intensity", "units": "a.u."},
        label_attrs={"long_name": label_name},
        attrs={"kind": kind, "description": description, "seed": _seed_attr(seed),
               "snr": float(snr or 0.0), "jitter_px": float(jitter_px),
               "n_labels": n_labels, "stride": 4, **extra_attrs})


def _blob_labels(rng, shape, size_px, n_levels=2):
    """Random domains about ``size_px`` across: a smooth random field cut at quantiles,
    so every level covers the same area."""
    field = _smooth_noise(rng, shape, max(size_px / 2.5, 0.8))
    edges = np.quantile(field, np.linspace(0, 1, n_levels + 1)[1:-1])
    return np.digitize(field, edges)


def nanodomains(shape=(128, 128), *, seed=0, domain_px=5.0, contrast=1.0, snr=4.0,
                jitter_px=0.2, patch_size=8) -> xr.Dataset:
    """Relaxor-like random domains of two intensity levels, ``domain_px`` across.

    Parameters
    ----------
    shape : (int, int)
        Image size in pixels, at least 32 x 32.
    seed : int
        Random seed.
    domain_px : float
        Typical domain size in pixels (4-64 in ``benchmarks/auto_settings.py``).
    contrast : float
        Intensity step between the two kinds of domain.
    snr : float or None
        Per-pixel SNR (clean-image std over noise std).
    jitter_px : float
        Scan-line jitter in pixels.
    patch_size : int
        Recorded as the phantom's ``patch_size`` attribute (a hint only).

    Returns
    -------
    xarray.Dataset
        ``image``, ``labels`` (0 dark, 1 bright), ``boundaries``.

    Examples
    --------
    >>> ds = nanodomains(shape=(64, 64), seed=0, domain_px=5)
    >>> ds.attrs["kind"], int(ds.labels.max())
    ('nanodomains', 1)
    """
    shape = _check_shape(shape)
    _check_positive(domain_px=domain_px)
    rng = np.random.default_rng(seed)
    labels = _blob_labels(rng, shape, domain_px)
    clean = contrast * labels + 0.1 * contrast * _smooth_noise(rng, shape, 1.0)
    return _family_dataset("nanodomains", "random two-level domains (relaxor-like)", rng,
                           clean, labels, seed=seed, snr=snr, jitter_px=jitter_px,
                           label_name="domain (0 dark, 1 bright)",
                           extra_attrs={"domain_px": float(domain_px),
                                        "patch_size": _patch_size(patch_size, shape)})


def _lattice_wave(yy, xx, period, angle_deg, symmetry, rng):
    """Sum of cosines: ``symmetry`` 2 (stripes), 4 (square) or 6 (hexagonal)."""
    n_waves = {2: 1, 4: 2, 6: 3}[symmetry]
    step = 180.0 / n_waves
    total = np.zeros(yy.shape)
    for i in range(n_waves):
        t = np.deg2rad(angle_deg + i * step)
        total += np.cos(2 * np.pi * (xx * np.cos(t) + yy * np.sin(t)) / period
                        + rng.uniform(0, 2 * np.pi))
    return total / n_waves


def lattice_domains(shape=(128, 128), *, seed=0, n_domains=2, period_px=7.3,
                    differ="orientation", snr=3.0, roughness_px=3.0, jitter_px=0.2,
                    patch_size=24) -> xr.Dataset:
    """Domains of one mean intensity that differ only by their lattice.

    Parameters
    ----------
    shape : (int, int)
        Image size in pixels, at least 32 x 32.
    seed : int
        Random seed.
    n_domains : int
        Number of domains (Voronoi regions with rough boundaries).
    period_px : float
        Lattice period of the first domain (3-20 px in the benchmark).
    differ : {"orientation", "period", "symmetry"}
        What changes from domain to domain: the lattice orientation (square lattices
        rotated by 90 / ``n_domains`` deg steps plus a random offset), the period
        (``period_px`` times 1, 1.45, 2.1, ...), or the symmetry (square, hexagonal,
        stripes).
    snr : float or None
        Per-pixel SNR.
    roughness_px, jitter_px : float
        Boundary roughness and scan-line jitter, in pixels.
    patch_size : int
        Recorded as a hint.

    Returns
    -------
    xarray.Dataset

    Examples
    --------
    >>> ds = lattice_domains(shape=(64, 64), seed=0, differ="period")
    >>> ds.attrs["differ"], ds.attrs["n_labels"]
    ('period', 2)
    """
    shape = _check_shape(shape)
    _check_positive(period_px=period_px)
    if differ not in ("orientation", "period", "symmetry"):
        raise SettingsError(f"differ must be 'orientation', 'period' or 'symmetry', not {differ!r}")
    rng = np.random.default_rng(seed)
    labels = _rough_voronoi(rng, shape, n_domains, roughness_px)
    yy, xx = _grid(shape)
    clean = np.zeros(shape)
    base_angle = rng.uniform(0, 90)
    for d in range(n_domains):
        period, angle, symmetry = period_px, base_angle, 4
        if differ == "orientation":
            angle = base_angle + d * 90.0 / n_domains
        elif differ == "period":
            period = period_px * 1.45 ** d
        else:
            symmetry = (4, 6, 2)[d % 3]
        wave = _lattice_wave(yy, xx, period, angle, symmetry, rng)
        clean[labels == d] = _unit(wave)[labels == d]
    return _family_dataset("lattice_domains", f"lattice domains differing by {differ}", rng,
                           clean, labels, seed=seed, snr=snr, jitter_px=jitter_px,
                           label_name="lattice domain",
                           extra_attrs={"differ": differ, "period_px": float(period_px),
                                        "patch_size": _patch_size(patch_size, shape)})


def texture_domains(shape=(128, 128), *, seed=0, n_domains=2, length_px=1.5,
                    differ="length", ratio=2.5, snr=None, roughness_px=3.0,
                    jitter_px=0.2, patch_size=24) -> xr.Dataset:
    """Random textures of equal mean and variance that differ only in their statistics.

    Parameters
    ----------
    shape : (int, int)
        Image size in pixels, at least 32 x 32.
    seed : int
        Random seed.
    n_domains : int
        Number of domains.
    length_px : float
        Correlation length of the first domain's texture, in pixels.
    differ : {"length", "anisotropy"}
        ``"length"``: domain ``d`` has correlation length ``length_px * ratio**d``;
        ``"anisotropy"``: every domain has streaks ``ratio`` times longer than wide,
        at orientations 90 / ``n_domains`` deg apart.
    ratio : float
        Length ratio between domains, or the streaks' aspect ratio.
    snr : float or None
        Per-pixel SNR (``None``: the texture is the signal, no noise added).
    roughness_px, jitter_px : float
        Boundary roughness and scan-line jitter, in pixels.
    patch_size : int
        Recorded as a hint.

    Returns
    -------
    xarray.Dataset

    Examples
    --------
    >>> ds = texture_domains(shape=(64, 64), seed=0, differ="anisotropy")
    >>> ds.attrs["kind"], ds.attrs["n_labels"]
    ('texture_domains', 2)
    """
    shape = _check_shape(shape)
    _check_positive(length_px=length_px, ratio=ratio)
    if differ not in ("length", "anisotropy"):
        raise SettingsError(f"differ must be 'length' or 'anisotropy', not {differ!r}")
    rng = np.random.default_rng(seed)
    labels = _rough_voronoi(rng, shape, n_domains, roughness_px)
    clean = np.zeros(shape)
    base_angle = rng.uniform(0, 180)
    for d in range(n_domains):
        if differ == "length":
            length = length_px * ratio ** d
            texture = _oriented_texture(rng, shape, 0.0, length, length)
        else:
            texture = _oriented_texture(rng, shape, base_angle + d * 90.0 / n_domains,
                                        length_px * ratio, length_px)
        clean[labels == d] = texture[labels == d]
    return _family_dataset("texture_domains", f"textures differing by {differ}", rng,
                           clean, labels, seed=seed, snr=snr, jitter_px=jitter_px,
                           label_name="texture domain",
                           extra_attrs={"differ": differ, "length_px": float(length_px),
                                        "ratio": float(ratio),
                                        "patch_size": _patch_size(patch_size, shape)})


def layered_interface(shape=(128, 128), *, seed=0, n_layers=3, period_px=6.3,
                      levels=(1.0, 1.6, 0.6), snr=3.0, roughness_px=2.0, jitter_px=0.2,
                      patch_size=24) -> xr.Dataset:
    """Layers of one lattice, told apart only by their intensity (a HAADF interface).

    Parameters
    ----------
    shape : (int, int)
        Image size in pixels, at least 32 x 32.
    seed : int
        Random seed.
    n_layers : int
        Horizontal layers of equal height, with rough interfaces.
    period_px : float
        Period of the square lattice of atomic columns shared by all layers.
    levels : sequence of float
        Column intensity of each layer (cycled).
    snr : float or None
        Per-pixel SNR.
    roughness_px, jitter_px : float
        Interface roughness and scan-line jitter, in pixels.
    patch_size : int
        Recorded as a hint.

    Returns
    -------
    xarray.Dataset

    Examples
    --------
    >>> ds = layered_interface(shape=(64, 64), seed=0)
    >>> ds.attrs["n_labels"]
    3
    """
    shape = _check_shape(shape)
    _check_positive(period_px=period_px)
    rng = np.random.default_rng(seed)
    yy, xx = _grid(shape)
    wobble = roughness_px * _smooth_noise(rng, (1, shape[1]), shape[1] / 8)[0]
    height = shape[0] / n_layers
    labels = np.clip(((yy + wobble[None, :]) // height).astype(int), 0, n_layers - 1)
    lattice = 0.5 * (1 + _lattice_wave(yy, xx, period_px, rng.uniform(0, 90), 4, rng))
    layer_level = np.asarray(levels, dtype=float)[np.arange(n_layers) % len(levels)]
    clean = lattice ** 2 * layer_level[labels]
    return _family_dataset("layered_interface", "layers on one lattice, differing in intensity",
                           rng, clean, labels, seed=seed, snr=snr, jitter_px=jitter_px,
                           label_name="layer",
                           extra_attrs={"period_px": float(period_px),
                                        "patch_size": _patch_size(patch_size, shape)})


def patch_stripes(shape=(128, 128), *, seed=0, n_domains=2, period_px=14.7, snr=3.0,
                  roughness_px=3.0, jitter_px=0.2, patch_size=32) -> xr.Dataset:
    """Stripe domains whose period is close to a typical patch size (14-17 px).

    Domains differ only by the stripes' orientation (90 / ``n_domains`` deg apart); a
    16 px patch holds about one period, too few for |FFT| features.

    Parameters
    ----------
    shape : (int, int)
        Image size in pixels, at least 32 x 32.
    seed : int
        Random seed.
    n_domains : int
        Number of orientation domains.
    period_px : float
        Stripe period in pixels.
    snr : float or None
        Per-pixel SNR.
    roughness_px, jitter_px : float
        Boundary roughness and scan-line jitter, in pixels.
    patch_size : int
        Recorded as a hint.

    Returns
    -------
    xarray.Dataset

    Examples
    --------
    >>> ds = patch_stripes(shape=(64, 64), seed=0)
    >>> ds.attrs["period_px"]
    14.7
    """
    shape = _check_shape(shape)
    _check_positive(period_px=period_px)
    rng = np.random.default_rng(seed)
    labels = _rough_voronoi(rng, shape, n_domains, roughness_px)
    yy, xx = _grid(shape)
    clean = np.zeros(shape)
    base_angle = rng.uniform(0, 180)
    for d in range(n_domains):
        wave = _lattice_wave(yy, xx, period_px, base_angle + d * 90.0 / n_domains, 2, rng)
        clean[labels == d] = wave[labels == d]
    return _family_dataset("patch_stripes", "stripe orientation domains, period near a patch",
                           rng, clean, labels, seed=seed, snr=snr, jitter_px=jitter_px,
                           label_name="stripe orientation",
                           extra_attrs={"period_px": float(period_px),
                                        "patch_size": _patch_size(patch_size, shape)})


def multi_domains(shape=(128, 128), *, seed=0, n_domains=4, domain_px=40.0, snr=2.0,
                  texture=0.3, jitter_px=0.2, patch_size=16) -> xr.Dataset:
    """Three or more domains: evenly spaced intensity levels, each with its own texture.

    Parameters
    ----------
    shape : (int, int)
        Image size in pixels, at least 32 x 32.
    seed : int
        Random seed.
    n_domains : int
        Number of domain kinds (levels), at least 3 in the benchmark.
    domain_px : float
        Typical domain size in pixels.
    snr : float or None
        Per-pixel SNR.
    texture : float
        Amplitude of a fine random texture (correlation 1.5 px) on every domain,
        relative to the step between levels.
    jitter_px : float
        Scan-line jitter in pixels.
    patch_size : int
        Recorded as a hint.

    Returns
    -------
    xarray.Dataset

    Examples
    --------
    >>> ds = multi_domains(shape=(64, 64), seed=0, n_domains=3)
    >>> ds.attrs["n_labels"]
    3
    """
    shape = _check_shape(shape)
    _check_positive(domain_px=domain_px)
    rng = np.random.default_rng(seed)
    labels = _blob_labels(rng, shape, domain_px, n_levels=n_domains)
    clean = labels.astype(float) + texture * _smooth_noise(rng, shape, 1.5)
    return _family_dataset("multi_domains", f"{n_domains} intensity domains", rng, clean,
                           labels, seed=seed, snr=snr, jitter_px=jitter_px,
                           label_name="domain level",
                           extra_attrs={"domain_px": float(domain_px),
                                        "patch_size": _patch_size(patch_size, shape)})


def _seed_attr(seed):
    # NetCDF attributes cannot be None; -1 records "no seed given".
    return -1 if seed is None else int(seed)


# --------------------------------------------------------------------------- dispatch

_BUILDERS = {
    "graphene_grains": honeycomb_grains,
    "bfo_stripes": stripe_domains,
    "nio_lsmo": two_phase_lattice,
    "pfm_labyrinth": pfm_labyrinth,
    "nanodomains": nanodomains,
    "lattice_domains": lattice_domains,
    "texture_domains": texture_domains,
    "layered_interface": layered_interface,
    "patch_stripes": patch_stripes,
    "multi_domains": multi_domains,
}


def make(kind, **kwargs) -> xr.Dataset:
    """Build a phantom by name.

    Parameters
    ----------
    kind : str
        One of :data:`KINDS` (``"graphene_grains"``, ``"bfo_stripes"``, ``"nio_lsmo"``,
        ``"pfm_labyrinth"``) or :data:`FAMILIES`; the function names (``"honeycomb_grains"``, ...) work too.
    **kwargs
        Passed to the phantom's function (``shape``, ``seed``, ...).

    Returns
    -------
    xarray.Dataset

    Examples
    --------
    >>> ds = make("nio_lsmo", shape=(64, 64), seed=3)
    >>> ds.attrs["kind"], ds.image.shape
    ('nio_lsmo', (64, 64))
    """
    builder = _BUILDERS.get(kind) or {f.__name__: f for f in _BUILDERS.values()}.get(kind) \
        or synthetic_spectral.BUILDERS.get(kind)  # 4D-STEM and EELS phantoms
    if builder is None:
        raise SettingsError(f"unknown phantom kind {kind!r}; choose one of "
                            f"{', '.join((*KINDS, *FAMILIES, *synthetic_spectral.KINDS))}")
    return builder(**kwargs)
