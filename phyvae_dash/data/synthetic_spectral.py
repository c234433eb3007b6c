"""Phantoms with a pattern or a spectrum at every scan position, with ground truth.

=======================  ===========================================================
``"diffraction_grains"``  4D-STEM ``(y, x, ky, kx)``: grains of two crystal phases
                          (square and hexagonal reciprocal lattices), each grain at its
                          own orientation; disks at the rotated reciprocal-lattice
                          points, with thickness and strain varying over the scan, a
                          descan error (the pattern drifts on the detector with the scan
                          position) and Poisson noise at ``dose`` electrons per pattern.
                          ``labels`` are the grains (phase and orientation),
                          ``phase_labels`` the phases.
``"eels_phases"``         EELS spectrum image ``(y, x, energy)``, energy in eV: three
                          chemical phases (Ti-L2,3 with and without crystal-field
                          splitting, shifted in onset; an O-K only phase) on a power-law
                          background ``A E^-r``, thickness varying over the scan, Poisson
                          noise. ``labels`` are the phases.
=======================  ===========================================================

Both return ``xarray.Dataset``s laid out like the image phantoms of
:mod:`phyvae_dash.data.synthetic` (``image``, ``labels``, ``boundaries``, attrs with the
kind, the seed and the recommended ``patch_size``/``stride``), so benchmarks score them
the same way. :func:`phyvae_dash.data.synthetic.make` builds them by name.
"""
from __future__ import annotations

import numpy as np
import xarray as xr
from scipy import ndimage

from ..errors import SettingsError

__all__ = ["KINDS", "BUILDERS", "diffraction_grains", "eels_phases"]

KINDS = ("diffraction_grains", "eels_phases")


def _regions(rng, shape, n, roughness_px=3.0, tries=200):
    """Voronoi regions of ``n`` seeds on a smoothly warped grid, none too small."""
    ny, nx = shape
    yy, xx = np.mgrid[:ny, :nx].astype(float)
    scale = max(min(shape) / 10, 2.0)
    warp = [ndimage.gaussian_filter(rng.normal(size=shape), scale) for _ in range(2)]
    warp = [w / (w.std() + 1e-12) * roughness_px for w in warp]
    yy, xx = yy + warp[0], xx + warp[1]
    for _ in range(tries):
        seeds = rng.uniform((0, 0), (ny, nx), size=(n, 2))
        d2 = (yy[None] - seeds[:, 0, None, None]) ** 2 + (xx[None] - seeds[:, 1, None, None]) ** 2
        labels = np.argmin(d2, axis=0)
        if np.bincount(labels.ravel(), minlength=n).min() >= 0.4 * labels.size / n:
            return labels
    raise SettingsError(f"could not split a {ny} x {nx} scan into {n} regions; use fewer")


def _boundaries(labels) -> np.ndarray:
    edge = np.zeros(labels.shape, dtype=bool)
    dy = labels[1:] != labels[:-1]
    dx = labels[:, 1:] != labels[:, :-1]
    edge[1:] |= dy
    edge[:-1] |= dy
    edge[:, 1:] |= dx
    edge[:, :-1] |= dx
    return edge


def _smooth_field(rng, shape, sigma, low, high):
    f = ndimage.gaussian_filter(rng.normal(size=shape), sigma)
    f = (f - f.min()) / (np.ptp(f) + 1e-12)
    return low + (high - low) * f


def _reciprocal_lattice(kind: str, spacing: float, radius: float) -> np.ndarray:
    """Reciprocal-lattice vectors ``(J, 2)`` (ky, kx) within ``radius``, origin excluded."""
    n = int(radius // spacing) + 2
    i, j = np.mgrid[-n:n + 1, -n:n + 1].reshape(2, -1).astype(float)
    if kind == "square":
        g = np.stack([i, j], axis=1) * spacing
    elif kind == "hexagonal":
        g = np.stack([i * np.sqrt(3) / 2, j + i / 2], axis=1) * spacing
    else:
        raise SettingsError(f"lattice must be 'square' or 'hexagonal', not {kind!r}")
    r = np.hypot(g[:, 0], g[:, 1])
    return g[(r > 0) & (r <= radius)]


def diffraction_grains(scan_shape=(64, 64), detector=64, *, n_grains=4, dose=2000.0,
                       disk_radius_px=None, descan_px=2.0, strain=0.01, thickness=(0.7, 1.3),
                       scan_step_nm=2.0, mrad_per_px=0.5, seed=None) -> xr.Dataset:
    """A 4D-STEM phantom: grains of two phases at several orientations.

    Parameters
    ----------
    scan_shape : (int, int)
        Scan positions ``(ny, nx)``.
    detector : int
        Detector pixels per side (square).
    n_grains : int
        Grains (>= 2); grain ``k`` has phase ``k % 2`` (0: square lattice, spacing 0.17
        of the detector; 1: hexagonal, 0.21) and its own orientation, the orientations
        of grains of one phase at least 15 degrees apart (modulo the lattice symmetry).
    dose : float
        Expected electrons per pattern; the counts are Poisson. 2000 is a clean scan,
        200 a low-dose one.
    disk_radius_px : float, optional
        Radius of the bright-field and Bragg disks; default ``detector / 24``.
    descan_px : float
        Drift of the pattern on the detector from one corner of the scan to the other
        (a linear descan error), in detector pixels.
    strain : float
        Peak-to-peak isotropic strain of the lattice over the scan (smooth field).
    thickness : (float, float)
        Range of the relative thickness (smooth field); it changes how intensity is
        shared between the central beam, the disks and the diffuse background.
    scan_step_nm, mrad_per_px : float
        Calibrations of the scan and of the detector.
    seed : int, optional

    Returns
    -------
    xarray.Dataset
        ``image`` (uint16 counts, dims ``(y, x, ky, kx)``, scan in nm, detector in
        mrad), ``labels`` (grains), ``phase_labels``, ``orientation_deg`` (per grain),
        ``boundaries``; attrs ``kind``, ``seed``, ``dose``, ``patch_size`` (1) and
        ``stride`` (1).

    Examples
    --------
    >>> ds = diffraction_grains(scan_shape=(16, 16), detector=32, seed=0)
    >>> ds.image.dims, ds.image.shape, int(ds.labels.max()) + 1
    (('y', 'x', 'ky', 'kx'), (16, 16, 32, 32), 4)
    """
    ny, nx = (int(v) for v in scan_shape)
    d = int(detector)
    if ny < 4 or nx < 4 or d < 16:
        raise SettingsError(f"scan_shape must be at least 4 x 4 and detector >= 16, got "
                            f"{scan_shape}, {detector}")
    if n_grains < 2 or dose <= 0:
        raise SettingsError(f"n_grains must be >= 2 and dose > 0, got {n_grains}, {dose}")
    rng = np.random.default_rng(seed)
    radius = float(disk_radius_px) if disk_radius_px is not None else d / 24
    labels = _regions(rng, (ny, nx), int(n_grains))
    phase_of_grain = np.arange(n_grains) % 2
    symmetry = np.where(phase_of_grain == 0, 90.0, 60.0)
    angles = np.zeros(n_grains)
    for p in (0, 1):  # orientations of one phase well apart, modulo its symmetry
        members = np.flatnonzero(phase_of_grain == p)
        sym = symmetry[members[0]] if members.size else 90.0
        base = rng.uniform(0, sym)
        angles[members] = (base + np.arange(members.size) * sym / max(members.size, 1)
                           + rng.uniform(-3, 3, members.size)) % sym
    reach = d / 2 - radius - 1
    lattices = [_reciprocal_lattice("square", 0.17 * d, reach),
                _reciprocal_lattice("hexagonal", 0.21 * d, reach)]
    n_refl = max(len(g) for g in lattices)
    # Padded (phase, reflection) tables; padded reflections get zero intensity.
    g_table = np.zeros((2, n_refl, 2))
    on = np.zeros((2, n_refl))
    for p, g in enumerate(lattices):
        g_table[p, :len(g)] = g
        on[p, :len(g)] = 1.0

    grain = labels.ravel()
    phase = phase_of_grain[grain]
    theta = np.deg2rad(angles[grain])
    eps = _smooth_field(rng, (ny, nx), max(ny, nx) / 6, -strain / 2, strain / 2).ravel()
    t = _smooth_field(rng, (ny, nx), max(ny, nx) / 5, *thickness).ravel()
    yy, xx = np.mgrid[:ny, :nx]
    centre = np.stack([(d - 1) / 2 + descan_px * (yy.ravel() / max(ny - 1, 1) - 0.5),
                       (d - 1) / 2 + descan_px * 0.6 * (xx.ravel() / max(nx - 1, 1) - 0.5)], axis=1)
    cos, sin = np.cos(theta)[:, None], np.sin(theta)[:, None]
    g = g_table[phase]  # (n, J, 2)
    gy = (cos * g[..., 0] - sin * g[..., 1]) * (1 + eps[:, None])
    gx = (sin * g[..., 0] + cos * g[..., 1]) * (1 + eps[:, None])
    g_len = np.hypot(gy, gx) / d
    # Kinematic-like intensities: fall off with |g|, and beat with thickness
    # (Pendelloesung), so the disks' relative intensities vary over a grain.
    extinction = 0.6 + 2.0 * g_len
    intensity = on[phase] * np.exp(-(g_len / 0.3) ** 2) * (
        0.3 + np.sin(np.pi * t[:, None] / extinction) ** 2)
    scattered = 0.35 * t / thickness[1]
    intensity *= (scattered / (intensity.sum(axis=1) + 1e-12))[:, None]
    central = 1.0 - scattered - 0.15 * t

    ky = np.arange(d, dtype=np.float32)
    disk_area = np.pi * radius ** 2

    def disk(cy, cx):
        dist = np.sqrt((ky[None, :, None] - cy[:, None, None].astype(np.float32)) ** 2
                       + (ky[None, None, :] - cx[:, None, None].astype(np.float32)) ** 2)
        return np.clip(radius + 0.5 - dist, 0.0, 1.0)

    pattern = disk(centre[:, 0], centre[:, 1]) * (central / disk_area)[:, None, None].astype(np.float32)
    for j in range(n_refl):  # a loop over reflections; every scan position at once
        pattern += disk(centre[:, 0] + gy[:, j], centre[:, 1] + gx[:, j]) * \
            (intensity[:, j] / disk_area)[:, None, None].astype(np.float32)
    r = np.sqrt((ky[None, :, None] - centre[:, 0, None, None]) ** 2
                + (ky[None, None, :] - centre[:, 1, None, None]) ** 2)
    diffuse = 1.0 / (1.0 + (r / (0.15 * d)) ** 2)
    diffuse /= diffuse.sum(axis=(1, 2), keepdims=True)
    pattern += diffuse * (0.15 * t)[:, None, None]
    counts = rng.poisson(pattern * float(dose)).astype(np.uint16)
    counts = counts.reshape(ny, nx, d, d)

    k_coord = (np.arange(d) - d // 2) * mrad_per_px
    coords = {"y": ("y", np.arange(ny) * scan_step_nm, {"units": "nm"}),
              "x": ("x", np.arange(nx) * scan_step_nm, {"units": "nm"}),
              "ky": ("ky", k_coord, {"units": "mrad"}), "kx": ("kx", k_coord, {"units": "mrad"})}
    image = xr.DataArray(counts, dims=("y", "x", "ky", "kx"), coords=coords, name="diffraction",
                         attrs={"units": "counts", "signal_type": "diffraction",
                                "scan_units": "nm", "detector_units": "mrad",
                                "detector_calibration": "file", "source": "phantom",
                                "format": "phantom", "long_name": "diffraction pattern"})
    return xr.Dataset(
        {"image": image,
         "labels": (("y", "x"), labels.astype(np.int64)),
         "phase_labels": (("y", "x"), phase_of_grain[labels].astype(np.int64)),
         "boundaries": (("y", "x"), _boundaries(labels)),
         "orientation_deg": ("grain", angles)},
        attrs={"kind": "diffraction_grains", "seed": -1 if seed is None else int(seed),
               "dose": float(dose), "n_grains": int(n_grains), "n_labels": int(n_grains),
               "descan_px": float(descan_px), "strain": float(strain),
               "disk_radius_px": float(radius), "patch_size": 1, "stride": 1,
               "phases": ["square lattice", "hexagonal lattice"]},
    )


#: Edge components of the EELS phantom's phases: (centre eV, height, width eV) of each
#: white line / fine-structure peak, and (onset eV, step height) of each edge.
_EELS_PHASES = (
    {"name": "TiO2-like", "steps": [(456.0, 0.10), (530.0, 0.08)],
     "peaks": [(457.5, 0.55, 0.8), (459.5, 0.6, 1.0), (462.8, 0.45, 0.9), (465.0, 0.5, 1.1),
               (531.0, 0.25, 1.2), (534.0, 0.15, 2.0), (539.0, 0.2, 3.0)]},
    {"name": "Ti2O3-like", "steps": [(454.5, 0.10), (530.0, 0.06)],
     "peaks": [(456.2, 0.9, 1.3), (461.5, 0.7, 1.5), (532.5, 0.18, 2.5), (540.0, 0.12, 4.0)]},
    {"name": "O-K only", "steps": [(532.0, 0.12)],
     "peaks": [(535.0, 0.3, 2.0), (542.0, 0.2, 4.0)]},
)


def eels_phases(scan_shape=(64, 64), *, n_energy=256, energy_range=(420.0, 580.0),
                n_regions=5, dose=400.0, exponent=3.0, thickness=(0.6, 1.4),
                scan_step_nm=1.0, seed=None) -> xr.Dataset:
    """An EELS spectrum-image phantom: three chemical phases on a power-law background.

    Parameters
    ----------
    scan_shape : (int, int)
        Scan positions.
    n_energy : int
        Energy channels over ``energy_range`` (eV).
    n_regions : int
        Regions (>= 3); region ``k`` has phase ``k % 3``.
    dose : float
        Expected counts in the first energy channel at unit thickness; Poisson noise.
    exponent : float
        Power-law exponent ``r`` of the background ``A E^-r``.
    thickness : (float, float)
        Relative thickness range: scales background and edges alike.
    scan_step_nm : float
    seed : int, optional

    Returns
    -------
    xarray.Dataset
        ``image`` (float32 counts, dims ``(y, x, energy)``, energy in eV), ``labels``
        (phases), ``boundaries``; attrs ``kind``, ``seed``, ``dose``, ``phases``,
        ``patch_size`` (1), ``stride`` (1).

    Examples
    --------
    >>> ds = eels_phases(scan_shape=(16, 16), n_energy=64, seed=0)
    >>> ds.image.dims, ds.image.energy.attrs["units"], sorted(set(ds.labels.values.ravel().tolist()))
    (('y', 'x', 'energy'), 'eV', [0, 1, 2])
    """
    ny, nx = (int(v) for v in scan_shape)
    if ny < 4 or nx < 4 or n_energy < 16 or n_regions < 3 or dose <= 0:
        raise SettingsError("eels_phases needs a scan of at least 4 x 4, n_energy >= 16, "
                            f"n_regions >= 3 and dose > 0 (got {scan_shape}, {n_energy}, "
                            f"{n_regions}, {dose})")
    rng = np.random.default_rng(seed)
    regions = _regions(rng, (ny, nx), int(n_regions))
    labels = regions % 3
    energy = np.linspace(*energy_range, int(n_energy))
    e0 = energy[0]
    background = (energy / e0) ** -exponent
    spectra = []
    for spec in _EELS_PHASES:
        s = np.zeros_like(energy)
        for onset, height in spec["steps"]:
            # A delayed edge: a smooth step, then a slower fall than the background.
            step = 0.5 + np.arctan((energy - onset) / 1.0) / np.pi
            s += height * step * np.clip(energy / onset, 1.0, None) ** -2.0
        for centre, height, width in spec["peaks"]:
            s += height * 0.1 / (1.0 + ((energy - centre) / width) ** 2)
        spectra.append(s * background[np.argmin(np.abs(energy - spec["steps"][0][0]))] * 10)
    spectra = np.asarray(spectra)
    t = _smooth_field(rng, (ny, nx), max(ny, nx) / 5, *thickness)
    r_local = exponent + _smooth_field(rng, (ny, nx), max(ny, nx) / 4, -0.1, 0.1)
    bg = (energy[None, None, :] / e0) ** -r_local[..., None]
    clean = t[..., None] * (bg + spectra[labels])
    counts = rng.poisson(clean * float(dose)).astype(np.float32)
    coords = {"y": ("y", np.arange(ny) * scan_step_nm, {"units": "nm"}),
              "x": ("x", np.arange(nx) * scan_step_nm, {"units": "nm"}),
              "energy": ("energy", energy, {"units": "eV", "long_name": "energy loss"})}
    image = xr.DataArray(counts, dims=("y", "x", "energy"), coords=coords, name="EELS",
                         attrs={"units": "counts", "signal_type": "EELS", "source": "phantom",
                                "format": "phantom", "long_name": "EELS spectrum image"})
    return xr.Dataset(
        {"image": image, "labels": (("y", "x"), labels.astype(np.int64)),
         "boundaries": (("y", "x"), _boundaries(labels))},
        attrs={"kind": "eels_phases", "seed": -1 if seed is None else int(seed),
               "dose": float(dose), "n_labels": 3, "exponent": float(exponent),
               "phases": [p["name"] for p in _EELS_PHASES], "patch_size": 1, "stride": 1},
    )


BUILDERS = {"diffraction_grains": diffraction_grains, "eels_phases": eels_phases}
