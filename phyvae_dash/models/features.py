"""Input transforms: what the encoder sees for each patch of the scan grid.

A patch VAE fed raw pixels encodes *where the atoms sit inside the patch* as soon as
the image shows a lattice whose period is not a multiple of the stride: neighbouring
patches see the same lattice at different offsets and look different. The transforms
here give the models inputs that fit the physics of the image:

==============  =======================================================================
``"patch"``     the patch itself, each channel normalised over the scan; ``(C, p, p)``.
                Phase channels (angles) become two channels, cos and sin, so that
                -179 deg and +179 deg are neighbours rather than opposite ends.
``"fft"``       log power of each patch's Hann-windowed 2-D FFT, one non-redundant
                half-plane per channel; a vector ``(F,)``. Invariant to translation
                (exactly for circular shifts of a periodic patch whose reflections
                are over two bins apart, nearly for real sub-period shifts), so a
                lattice's period and orientation are seen, not its offset.
``"fft+mean"``  ``"fft"`` plus each channel's (window-weighted) patch mean, the two
                blocks weighted so that both count: a lattice image can also have
                domains defined by intensity (a brighter layer, a 180 deg phase).
``"spectrum"``  for ``(y, x, spectral)`` data: the spectrum at each patch centre,
                averaged over the patch window; a vector ``(S,)``.
``"eels"``      for EELS spectrum images (energy in eV): power-law background
                subtracted before the first edge, each spectrum normalised
                (`features_eels`); a vector.
4D-STEM         ``"pattern"``, ``"profiles"``, ``"profiles_invariant"``, ``"virtual"``
                for ``(y, x, ky, kx)`` data (`features_4d`); ``patch_size``/``stride``
                there average neighbouring scan positions (1, 1: each on its own).
``"auto"``      4D-STEM -> `features_4d.choose_4d_transform`; EELS -> ``"eels"``;
                other spectral data -> ``"spectrum"``; an image with a lattice (sharp
                reflections in its power spectrum) whose period fits at least 1.8
                times in a patch -> ``"fft+mean"``; otherwise ``"patch"``.
==============  =======================================================================

Vector features are centred per feature and scaled by one number per block, so that
they are O(1) and a Gaussian likelihood suits them; relative sizes inside a block
(which frequencies carry the contrast) are kept.

All transforms are vectorised: one batched FFT over all patches (in row chunks that
bound the memory), no Python loop over patches.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.fft
import xarray as xr
from scipy import ndimage
from scipy.stats import median_abs_deviation
from skimage.measure import block_reduce

from ..data.channels import channel_names, channel_units, is_spectral, phase_names
from ..data.patches import extract_patches
from ..data.units import is_angle, to_radians
from ..errors import DataError, SettingsError
from . import features_4d, features_eels

__all__ = ["TRANSFORMS", "PRESETS", "SEGMENT_PRESETS", "Inputs", "prepare_inputs",
           "detect_lattice_period", "choose_transform", "phase_channel_indices", "fft_features", "preset_for"]

TRANSFORMS = ("auto", "patch", "fft", "fft+mean", "spectrum", "eels", *features_4d.TRANSFORMS_4D)

#: Smoothed power over the radial background needed to call a reflection a lattice peak.
#: Measured (Welch spectra, 8 seeds each): noise, smooth random fields, random domains
#: and the PFM labyrinth phantom reach at most 8.6; the lattice and stripe phantoms
#: 15-1100 at 128-256 px (graphene at 96 px is the weakest, 5-22: small images of a
#: fine lattice may go undetected, which the per-kind presets cover).
LATTICE_PEAK_RATIO = 11.0

#: "auto" uses |FFT| features when the lattice period fits at least this many times in
#: a patch: below ~1.8 periods the reflection sits inside the window's central lobe
#: (``python benchmarks/quality.py --phantom bfo_stripes`` compares both inputs).
MIN_PERIODS_PER_PATCH = 1.8
#: Shortest period (px) taken for a lattice by `detect_lattice_period`.
MIN_LATTICE_PERIOD_PX = 3.0

#: ``"eels"`` inputs are projected on this many leading principal components: most
#: energy channels hold only counting noise, and at low dose the VAE fed every channel
#: misses the phases that PCA+GMM on the same inputs finds (README, 4D-STEM and EELS).
#: The 4D-STEM profiles are not projected: there the projection loses.
EELS_COMPONENTS = 8

#: Largest number of FFT features per channel; bigger patches get their power
#: spectrum average-pooled down to this size.
MAX_FFT_FEATURES = 600



@dataclass
class Inputs:
    """Model inputs on the patch-centre grid, and how they were made.

    Attributes
    ----------
    data : numpy.ndarray
        float32 ``(n_y, n_x, *feature_shape)``: ``(C, p, p)`` for ``"patch"``, ``(F,)``
        for vector features.
    y, x : xarray.DataArray
        Patch-centre coordinates in the image's units.
    transform : str
        The transform used (``"auto"`` resolved).
    reason : str
        Why ``"auto"`` chose it (or ``"chosen by the user"``).
    lattice_period_px : float or None
        Period of the image's strongest lattice reflection in pixels, when one was
        detected (also available as ``period``, which ``fit`` uses to size shift priors).
    channels : list of str
        Names of the input channels after the transform (``"phase:cos"``,
        ``"phase:sin"`` for phase channels).
    options : dict
        The transform options used (JSON-able).
    """

    data: np.ndarray
    y: xr.DataArray
    x: xr.DataArray
    transform: str
    reason: str = ""
    lattice_period_px: float | None = None
    channels: list = field(default_factory=list)
    options: dict = field(default_factory=dict)

    @property
    def period(self) -> float | None:
        """Alias of `lattice_period_px`."""
        return self.lattice_period_px

    @property
    def feature_shape(self) -> tuple:
        """Shape of one patch's input: ``(C, p, p)`` or ``(F,)``."""
        return tuple(self.data.shape[2:])


# --------------------------------------------------------------------------- channels

def phase_channel_indices(image: xr.DataArray) -> dict[int, float]:
    """Which channels hold angles, and the factor that turns them into radians.

    A channel is a phase channel when its name is in ``image.attrs["phase_channels"]``
    or its unit is an angle (deg, rad). Spectral data has none.

    Parameters
    ----------
    image : xarray.DataArray
        ``(y, x)`` or ``(y, x, channel)``.

    Returns
    -------
    dict
        ``{channel index: radians per unit}``.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> img = xr.DataArray(np.zeros((8, 8, 2)), dims=("y", "x", "channel"),
    ...                    coords={"channel": ["amplitude", "phase"]},
    ...                    attrs={"phase_channels": ["phase"], "channel_units": ["a.u.", "deg"]})
    >>> phase_channel_indices(img)
    {1: 0.017453292519943295}
    """
    if is_spectral(image):
        return {}
    names = channel_names(image)
    units = [u.strip().lower() for u in channel_units(image)]
    marked = set(phase_names(image))
    out = {}
    for i, (name, unit) in enumerate(zip(names, units)):
        if is_angle(unit):
            out[i] = to_radians(unit)
        elif name in marked:
            # Marked as phase without a unit: degrees if the values exceed 2 pi.
            values = np.asarray(image.data if image.ndim == 2 else image.data[..., i])
            out[i] = np.pi / 180 if np.nanmax(np.abs(values)) > 2 * np.pi + 0.1 else 1.0
    return out


def channel_scaling(image: xr.DataArray, normalization: str = "zscore") -> tuple[np.ndarray, np.ndarray]:
    """Offset and scale of each channel over the scan, as `_standard_channels` applies them.

    ``(mean, std)`` for ``"zscore"``, ``(min, max - min)`` for ``"minmax"`` (a scale of 1
    where a channel is constant), in float64. Works on NumPy- and dask-backed images
    alike: on a dask array these are per-chunk reductions, nothing is materialised.
    Phase channels get ``(0, 1)`` (they are turned into cos/sin, not rescaled).
    """
    a = image.data
    if a.ndim == 2:
        a = a[:, :, None]
    a = a.astype(np.float64)
    if normalization == "minmax":
        low, high = a.min(axis=(0, 1)), a.max(axis=(0, 1))
        stats = (low, high - low)
    elif normalization == "zscore":
        stats = (a.mean(axis=(0, 1)), a.std(axis=(0, 1)))
    else:
        stats = (np.zeros(a.shape[2]), np.ones(a.shape[2]))
    if not isinstance(stats[0], np.ndarray):  # dask: one pass for both reductions
        import dask

        stats = dask.compute(*stats)
    offset, scale = (np.asarray(v, dtype=np.float64).copy() for v in stats)
    scale[~(scale > 0)] = 1.0
    for i in phase_channel_indices(image):
        offset[i], scale[i] = 0.0, 1.0
    return offset, scale


def _standard_channels(image: xr.DataArray, normalization: str = "zscore", scaling=None,
                       phases: dict | None = None):
    """The image as float ``(ny, nx, C)`` with phase channels split into cos/sin and
    the other channels normalised over the scan, plus the new channel names.

    cos/sin are left as they are ([-1, 1], or [0, 1] for min-max): they are already on a
    natural scale, and re-normalising a nearly constant one would amplify its noise.
    ``scaling`` is `channel_scaling`'s output for the whole scan, when ``image`` is one
    block of it (the chunked encoder); by default it is computed from ``image``, and so
    are ``phases`` (`phase_channel_indices`).
    """
    a = np.asarray(image.data, dtype=np.float64)
    if a.ndim == 2:
        a = a[:, :, None]
    names = channel_names(image)
    phases = phase_channel_indices(image) if phases is None else phases
    offset, scale = scaling if scaling is not None else channel_scaling(image, normalization)
    out, out_names = [], []
    for i, name in enumerate(names):
        c = a[:, :, i]
        if i in phases:
            angle = c * phases[i]
            for fn, suffix in ((np.cos, "cos"), (np.sin, "sin")):
                v = fn(angle)
                out.append((v + 1) / 2 if normalization == "minmax" else v)
                out_names.append(f"{name}:{suffix}")
            continue
        out.append((c - offset[i]) / scale[i])
        out_names.append(name)
    return np.stack(out, axis=-1), out_names


# --------------------------------------------------------------------------- lattice

def detect_lattice_period(image: xr.DataArray, max_period: float | None = None,
                          threshold: float = LATTICE_PEAK_RATIO) -> float | None:
    """Period in pixels of the image's strongest lattice reflection, or None.

    The power spectrum of the Hann-windowed image (summed over channels, phase
    channels as cos/sin) is lightly smoothed and divided by its median over each ring
    of equal spatial frequency. A lattice or a regular stripe pattern puts sharp peaks
    far above that ring median; random textures, labyrinths and noise do not, since
    their power is spread around the ring.

    Parameters
    ----------
    image : xarray.DataArray
        ``(y, x)`` or ``(y, x, channel)``. Spectral data has no lattice (None).
    max_period : float, optional
        Longest period considered, in pixels; default a quarter of the analysis
        tile (half the image's shorter side, at most 256 px): a lattice needs a few
        periods to be one.
    threshold : float
        Peak-over-ring-median ratio needed (see `LATTICE_PEAK_RATIO`).

    Returns
    -------
    float or None
        ``1 / |k|`` of the strongest reflection, in pixels.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> yy, xx = np.mgrid[:128, :128]
    >>> rng = np.random.default_rng(0)
    >>> lattice = np.cos(2 * np.pi * (xx * 0.6 + yy * 0.8) / 5.3) + rng.normal(size=xx.shape)
    >>> round(detect_lattice_period(xr.DataArray(lattice, dims=("y", "x"))), 1)
    5.3
    >>> print(detect_lattice_period(xr.DataArray(rng.normal(size=xx.shape), dims=("y", "x"))))
    None
    """
    if is_spectral(image):
        return None
    ratio, k = _peak_ratio(image, max_period)
    if ratio is None or ratio < threshold:
        return None
    return float(1.0 / k)


def _peak_ratio(image: xr.DataArray, max_period: float | None = None):
    """(peak ratio, |k| of the peak in cycles/px) of the strongest reflection."""
    spectrum = _reflection_ratios(image, max_period)
    if spectrum is None:
        return None, None
    ratio, power, background, ring, k1 = spectrum
    iy, ix = np.unravel_index(int(np.argmax(ratio)), ratio.shape)
    # Refine |k| with the power-weighted centroid of the 3x3 bins around the peak.
    sl = (slice(max(iy - 1, 0), iy + 2), slice(max(ix - 1, 0), ix + 2))
    weight = np.clip(power[sl] - background[ring[sl]], 0, None) + 1e-30
    kyc = np.sum(weight * k1[sl[0]][:, None]) / weight.sum()
    kxc = np.sum(weight * k1[sl[1]][None, :]) / weight.sum()
    return float(ratio[iy, ix]), float(np.hypot(kyc, kxc))


def _reflection_ratios(image: xr.DataArray, max_period: float | None = None):
    """Power over its ring's median, on the centred ``(k_y, k_x)`` grid, or None.

    Returns ``(ratio, power, background, ring, k1)``: ``ratio`` is 0 outside the band of
    periods considered, ``k1`` the frequencies (cycles/px) along each axis. Welch's
    method: the power spectra of Hann-windowed half-size tiles (50% overlap) are
    averaged, which tames the speckle of random textures (single-bin power is
    exponentially distributed) while a lattice's peaks add up in every tile.
    """
    a, _ = _standard_channels(image, "zscore")
    ny, nx, c = a.shape
    t = int(min(256, max(32, min(ny, nx) // 2), ny, nx))
    if max_period is None:
        max_period = t / 4
    step = max(1, t // 2)
    tiles = np.lib.stride_tricks.sliding_window_view(a, (t, t), axis=(0, 1))[::step, ::step]
    tiles = tiles.reshape(-1, c, t, t)
    tiles = tiles - tiles.mean(axis=(2, 3), keepdims=True)
    win = _hann(t)[:, None] * _hann(t)[None, :]
    power = (np.abs(scipy.fft.fft2(tiles * win, axes=(2, 3))) ** 2).sum(axis=1).mean(axis=0)
    # Scan-line offsets (one constant per row, common in SPM and STEM) put power on
    # the kx = 0 column at every ky: a line, not a lattice. Replace that column by its
    # neighbours' mean, which still hold a real reflection's window leakage.
    power[:, 0] = 0.5 * (power[:, 1] + power[:, -1])
    power = np.fft.fftshift(power)
    k1 = (np.arange(t) - t // 2) / t
    k = np.hypot(k1[:, None], k1[None, :])
    ring = np.round(k * t).astype(int)
    # Periods under 3 px sit at the Nyquist edge: in SPM scans they are electronic
    # pick-up or feedback ringing (seen on real PFM amplitude), not a lattice that
    # patches could resolve.
    band = (k >= 1.0 / max_period) & (k <= 1.0 / MIN_LATTICE_PERIOD_PX)
    if band.sum() < 16:
        return None
    # The background under a reflection: the median power over its ring of |k|.
    rings = np.unique(ring[band])
    background = np.zeros(ring.max() + 1)
    background[rings] = ndimage.median(power, labels=np.where(band, ring, -1), index=rings)
    # The floor keeps a band where a smooth image has (numerically) no power at all
    # from producing huge ratios out of round-off.
    floor = 0.1 * power[band].mean() + 1e-30
    ratio = np.where(band, power / (background[ring] + floor), 0.0)
    return ratio, power, background, ring, k1


def _hann(n: int) -> np.ndarray:
    # The "half-sample" Hann has no zero end points, so a small patch loses no pixels.
    return (0.5 - 0.5 * np.cos(2 * np.pi * (np.arange(n) + 0.5) / n)).astype(np.float64)


# --------------------------------------------------------------------------- features

def _patch_stack(image_std: np.ndarray, ref: xr.DataArray, patch_size: int, stride: int):
    """Patches ``(n_y, n_x, p, p, C)`` (a view) and their centre coordinates."""
    da = xr.DataArray(image_std, dims=("y", "x", "channel"),
                      coords={d: ref[d] for d in ("y", "x") if d in ref.coords})
    patches = extract_patches(da, patch_size, stride)
    return np.asarray(patches.data), patches["y"], patches["x"]


def _half_plane_mask(p: int) -> np.ndarray:
    """Boolean mask over the ``rfft2`` grid ``(p, p//2+1)`` keeping each |F| once.

    rfft2 already drops kx < 0; in the kx = 0 (and, for even p, kx = p/2) columns ky
    and -ky are still both present and equal in magnitude, so keep ky >= 0 there.
    DC is dropped: patches are mean-subtracted. For p = 16: 129 of 144 bins.
    """
    mask = np.ones((p, p // 2 + 1), dtype=bool)
    ky = np.fft.fftfreq(p) * p
    nyquist = (ky == -p / 2) if p % 2 == 0 else np.zeros(p, dtype=bool)
    mask[:, 0] = (ky > 0) | nyquist
    if p % 2 == 0:
        mask[:, p // 2] = (ky >= 0) | nyquist
    mask[0, 0] = False
    return mask


def fft_features(patches: np.ndarray, pool: int | None = None,
                 floor: float = 0.05) -> np.ndarray:
    """Log power of the Hann-windowed 2-D FFT of each patch (translation invariant).

    Parameters
    ----------
    patches : numpy.ndarray
        ``(..., p, p, C)`` patches (any leading shape), channels last.
    pool : int, optional
        Average the power over ``pool x pool`` frequency bins (for big patches); default
        chosen so that each channel gives at most `MAX_FFT_FEATURES` features.
    floor : float
        The log is taken of ``power + floor * mean power``: this floor keeps bins that
        hold only noise from dominating through the log's large spread near zero.

    Returns
    -------
    numpy.ndarray
        float32 ``(..., C * F)``.

    Examples
    --------
    >>> import numpy as np
    >>> yy, xx = np.mgrid[:16, :16]
    >>> patch = (np.cos(2 * np.pi * xx / 4) + np.cos(2 * np.pi * yy / 16 * 3))[..., None]
    >>> shifted = np.roll(patch, (5, 3), axis=(0, 1))  # a periodic patch, shifted
    >>> f = fft_features(np.stack([patch, shifted]))
    >>> f.shape, bool(np.allclose(f[0], f[1], atol=1e-4))
    ((2, 129), True)
    """
    lead = patches.shape[:-3]
    power = patch_power(patches, pool)
    ref = power.mean() if power.size else 1.0
    feats = np.log(power + floor * ref + 1e-30).astype(np.float32)
    return feats.reshape(*lead, -1)


def patch_power(patches: np.ndarray, pool: int | None = None) -> np.ndarray:
    """Power spectra behind `fft_features` (before the floor and the log), float32
    ``(n, C * F)`` for ``(..., p, p, C)`` patches."""
    p, _, c = patches.shape[-3:]
    flat = patches.reshape(-1, p, p, c)
    if pool is None:
        pool = 1
        while (p // pool) * (p // (2 * pool) + 1) > MAX_FFT_FEATURES:
            pool += 1
    mask = _half_plane_mask(p)
    win = (_hann(p)[:, None] * _hann(p)[None, :]).astype(np.float32)
    out = []
    # Rows in chunks keep the complex intermediate under ~64 MB at any stride.
    chunk = max(1, int(4e6 // (p * p * c)))
    for start in range(0, flat.shape[0], chunk):
        block = np.asarray(flat[start:start + chunk], dtype=np.float32)
        block = block - block.mean(axis=(1, 2), keepdims=True)
        spec = scipy.fft.rfft2(block * win[None, :, :, None], axes=(1, 2))
        power = spec.real ** 2 + spec.imag ** 2  # (n, p, p//2+1, C)
        if pool > 1:
            power = _pool_power(power, pool)
            feats = power.reshape(power.shape[0], -1, c)
        else:
            feats = power[:, mask]  # (n, F, C)
        out.append(np.moveaxis(feats, -1, 1).reshape(feats.shape[0], -1))
    if not out:
        return np.zeros((0, c * int(mask.sum() if pool == 1 else 0)), dtype=np.float32)
    return np.concatenate(out, axis=0)


def _pool_power(power: np.ndarray, pool: int) -> np.ndarray:
    """Average power over pool x pool bins of the (fftshifted in ky) half plane."""
    power = np.fft.fftshift(power, axes=1)
    _, py, px, _ = power.shape
    # Whole blocks only: block_reduce would pad a partial block with zeros.
    power = power[:, : py // pool * pool, : px // pool * pool]
    return block_reduce(power, (1, pool, pool, 1), np.mean)


def _window_mean(patches: np.ndarray) -> np.ndarray:
    """Hann-weighted mean of each patch and channel, ``(..., C)``.

    The smooth window keeps a lattice's offset out of the mean (a flat mean over a
    non-integer number of periods still oscillates with the offset).
    """
    p = patches.shape[-2]
    win = _hann(p)[:, None] * _hann(p)[None, :]
    win = (win / win.sum()).astype(np.float32)
    return np.einsum("...ijc,ij->...c", patches.astype(np.float32, copy=False), win)


def _noise_std(block: np.ndarray) -> np.ndarray:
    """Robust per-feature noise of a ``(n_y, n_x, F)`` feature map.

    From differences between grid neighbours: inside domains they are noise, and the
    median ignores the few that straddle a wall.
    """
    diffs = []
    if block.shape[0] > 1:
        diffs.append(np.diff(block, axis=0).reshape(-1, block.shape[-1]))
    if block.shape[1] > 1:
        diffs.append(np.diff(block, axis=1).reshape(-1, block.shape[-1]))
    if not diffs:
        return np.ones(block.shape[-1], dtype=np.float32)
    # A difference of two independent noisy values has sqrt(2) times their noise.
    mad = median_abs_deviation(np.concatenate(diffs, axis=0), axis=0, scale="normal")
    return (mad / np.sqrt(2)).astype(np.float32)


def _centre_scale(block: np.ndarray) -> np.ndarray:
    """Centre each feature; divide by one number so the mean feature variance is 1."""
    block = block - block.reshape(-1, block.shape[-1]).mean(axis=0)
    scale = np.sqrt(np.mean(block.astype(np.float64) ** 2))
    return (block / (scale if scale > 0 else 1.0)).astype(np.float32)


def _combine(fft_block: np.ndarray, mean_block: np.ndarray, mean_weight: float,
             weighting: str) -> np.ndarray:
    """Concatenate |FFT| and mean-intensity blocks so that both count.

    ``weighting="balanced"``: each block scaled to the same total variance, then the
    mean block multiplied by ``sqrt(mean_weight)``. ``"noise"``: every feature in units
    of its own noise (neighbour differences), so a block counts by its signal to noise.
    """
    f = fft_block - fft_block.reshape(-1, fft_block.shape[-1]).mean(axis=0)
    m = mean_block - mean_block.reshape(-1, mean_block.shape[-1]).mean(axis=0)
    if weighting == "noise":
        nf = np.sqrt(np.mean(_noise_std(f) ** 2)) + 1e-12
        nm = _noise_std(m)
        nm = np.maximum(nm, 1e-3 * m.reshape(-1, m.shape[-1]).std(axis=0) + 1e-12)
        f, m = f / nf, m / nm * np.sqrt(mean_weight)
    elif weighting == "balanced":
        vf = np.sum(f.reshape(-1, f.shape[-1]).var(axis=0)) + 1e-12
        vm = np.sum(m.reshape(-1, m.shape[-1]).var(axis=0)) + 1e-12
        f = f / np.sqrt(vf)
        m = m / np.sqrt(vm) * np.sqrt(mean_weight)
    else:
        raise SettingsError(f"weighting must be 'balanced' or 'noise', not {weighting!r}")
    return _centre_scale(np.concatenate([f, m], axis=-1))


def _project(data: np.ndarray, k: int) -> np.ndarray:
    """Scores on the ``k`` leading principal components, scaled as `_centre_scale`."""
    flat = data.reshape(-1, data.shape[-1]).astype(np.float64)
    flat = flat - flat.mean(axis=0)
    _, _, vt = np.linalg.svd(flat, full_matrices=False)
    scores = (flat @ vt[:k].T).reshape(*data.shape[:-1], k)
    return _centre_scale(scores)


# --------------------------------------------------------------------------- entry

def choose_transform(image: xr.DataArray, patch_size: int) -> tuple[str, str, float | None]:
    """What ``transform="auto"`` picks for this image: ``(name, reason, period)``.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> flat = xr.DataArray(np.random.default_rng(0).normal(size=(64, 64)), dims=("y", "x"))
    >>> choose_transform(flat, 16)[0]
    'patch'
    """
    if features_eels.is_eels(image):
        return ("eels", "EELS spectrum image (energy in eV): power-law background "
                "subtracted before the first edge, spectra normalised", None)
    if is_spectral(image):
        return ("spectrum", f"spectral data (third dim {image.dims[2]!r}): the input is "
                "the spectrum at each position", None)
    period = detect_lattice_period(image)
    if period is None:
        return "patch", "no lattice reflections in the power spectrum: raw patches", None
    if period <= patch_size / MIN_PERIODS_PER_PATCH:
        return ("fft+mean", f"lattice period {period:.1f} px fits {patch_size / period:.1f}x "
                "in a patch: translation-invariant |FFT| features plus each patch's mean "
                "intensity", period)
    return ("patch", f"lattice period {period:.1f} px fits fewer than "
            f"{MIN_PERIODS_PER_PATCH} times in the patch "
            f"({patch_size} px), too long for |FFT| features: raw patches (use "
            f"patch_size >= {int(np.ceil(MIN_PERIODS_PER_PATCH * period))} for "
            "translation-invariant inputs)",
            period)


def prepare_inputs(image: xr.DataArray, patch_size: int, stride: int = 1,
                   transform: str = "auto", *, normalization: str = "zscore",
                   mean_weight: float = 0.25, weighting: str = "balanced",
                   neighbourhood: str = "patch", fft_floor: float = 0.05,
                   components: int | None = None) -> Inputs:
    """Turn an image into model inputs on the patch-centre grid.

    Parameters
    ----------
    image : xarray.DataArray
        ``(y, x)``, ``(y, x, channel)`` or ``(y, x, spectral)``. Phase channels are
        those named in ``attrs["phase_channels"]`` or with angle units
        (``attrs["channel_units"]``, deg or rad).
    patch_size, stride : int
        Square patches of ``patch_size`` pixels, centres ``stride`` pixels apart.
    transform : {"auto", "patch", "fft", "fft+mean", "spectrum"}
        See the module docstring; ``"auto"`` decides from the image and says why in
        ``Inputs.reason``.
    normalization : {"zscore", "minmax"}
        Per-channel normalisation over the scan for ``"patch"`` (``"minmax"`` gives
        inputs in [0, 1], for a Bernoulli likelihood).
    mean_weight : float
        ``"fft+mean"``: total variance of the mean-intensity block relative to the
        |FFT| block. 0.25: where domains differ in intensity it separates them as well
        as 1 does, and where they do not (NiO-LSMO, same mean intensity) a slow
        background in the mean block disturbs less (``benchmarks/quality.py``).
    weighting : {"balanced", "noise"}
        ``"fft+mean"``: how the blocks are scaled (see `_combine`).
    neighbourhood : {"patch", "centre"}
        ``"spectrum"``: average the spectra over the patch window, or take the one at
        the centre pixel.
    fft_floor : float
        Floor of the log power, as a fraction of the mean power.
    components : int, optional
        ``"fft"``/``"fft+mean"``: project the vectors on their leading principal
        components (denoising: most |FFT| bins hold only noise). ``"eels"``: the
        same, default `EELS_COMPONENTS`.

    Returns
    -------
    Inputs

    Examples
    --------
    >>> import phyvae_dash.data.synthetic as synthetic
    >>> ds = synthetic.make("graphene_grains", shape=(128, 128), seed=0)
    >>> inputs = prepare_inputs(ds.image, patch_size=24, stride=4)
    >>> inputs.transform, inputs.data.shape, inputs.data.dtype
    ('fft+mean', (27, 27, 290), dtype('float32'))
    >>> print(inputs.reason)  # doctest: +ELLIPSIS
    lattice period 4.2 px fits 5.7x in a patch: translation-invariant |FFT| features...

    """
    if transform not in TRANSFORMS:
        raise SettingsError(f"transform must be one of {TRANSFORMS}, not {transform!r}")
    if isinstance(image, xr.DataArray) and image.ndim == 4:
        return _prepare_4d(image, patch_size, stride, transform)
    if transform in features_4d.TRANSFORMS_4D:
        raise SettingsError(f"transform {transform!r} needs 4D-STEM data (y, x, ky, kx); "
                            f"this image has dims {getattr(image, 'dims', None)}")
    if (not isinstance(image, xr.DataArray) or image.ndim not in (2, 3)
            or image.dims[:2] != ("y", "x")):
        raise DataError("prepare_inputs needs a DataArray with dims ('y', 'x'[, channel])")
    if normalization not in ("zscore", "minmax"):
        raise SettingsError(f"normalization must be 'zscore' or 'minmax', not {normalization!r}")
    if neighbourhood not in ("patch", "centre"):
        raise SettingsError(f"neighbourhood must be 'patch' or 'centre', not {neighbourhood!r}")
    if not np.all(np.isfinite(np.asarray(image.data, dtype=float))):
        raise DataError("the image contains NaN or Inf; fill them first (load(..., fill_nan=...))")

    period = None
    if transform == "auto":
        transform, reason, period = choose_transform(image, patch_size)
    else:
        reason = "chosen by the user"
        if transform in ("fft", "fft+mean"):
            period = detect_lattice_period(image)
    if transform == "spectrum" and not is_spectral(image):
        raise SettingsError("transform 'spectrum' needs (y, x, spectral) data; this image "
                            f"has dims {image.dims}")
    options = {"normalization": normalization, "mean_weight": float(mean_weight),
               "weighting": weighting, "neighbourhood": neighbourhood,
               "fft_floor": float(fft_floor), "components": int(components or 0)}

    if transform == "eels":
        if not is_spectral(image):
            raise SettingsError("transform 'eels' needs (y, x, energy) data; this image has "
                                f"dims {image.dims}")
        data, eels_options = features_eels.eels_features(image, patch_size=patch_size,
                                                         stride=stride)
        k = int(components or EELS_COMPONENTS)
        if data.shape[-1] > k:
            data = _project(data, k)
        eels_options["components"] = k
        y, x = features_4d.scan_centres(image, patch_size, stride)
        return Inputs(data, y, x, "eels", reason, None, ["eels"], {**options, **eels_options})
    if transform == "spectrum":
        a = np.asarray(image.data, dtype=np.float32)
        names = channel_names(image)
        coords = {d: image[d] for d in ("y", "x") if d in image.coords}
        da = xr.DataArray(a, dims=image.dims, coords=coords)
        if patch_size == 1:  # each position's own spectrum, every stride-th position
            data = a[::stride, ::stride]
            y, x = features_4d.scan_centres(image, 1, stride)
            return Inputs(_centre_scale(data), y, x, "spectrum", reason, None, names, options)
        patches = extract_patches(da, patch_size, stride)
        window = np.asarray(patches.data)  # (n_y, n_x, p, p, S)
        if neighbourhood == "patch":
            data = window.mean(axis=(2, 3))
        else:
            c = (patch_size - 1) // 2
            data = window[:, :, c, c]
        return Inputs(_centre_scale(data), patches["y"], patches["x"], "spectrum", reason,
                      None, names, options)

    # Vector features are scaled afterwards; only raw patches use the user's choice.
    std_image, names = _standard_channels(
        image, normalization if transform == "patch" else "zscore")
    patches, y, x = _patch_stack(std_image, image, patch_size, stride)  # (n_y, n_x, p, p, C)
    if transform == "patch":
        data = np.ascontiguousarray(np.moveaxis(patches, -1, 2), dtype=np.float32)
        return Inputs(data, y, x, "patch", reason, period, names, options)

    feats = fft_features(patches, floor=fft_floor)
    if transform == "fft":
        data = _centre_scale(feats)
    else:
        data = _combine(feats, _window_mean(patches), mean_weight, weighting)
    if components and data.shape[-1] > components:
        data = _project(data, components)
    return Inputs(np.ascontiguousarray(data, dtype=np.float32), y, x, transform, reason,
                  period, names, options)


def _prepare_4d(image: xr.DataArray, patch_size: int, stride: int, transform: str) -> Inputs:
    """4D-STEM inputs (`features_4d`): one vector or binned pattern per window of positions."""
    if tuple(image.dims) != ("y", "x", "ky", "kx"):
        raise DataError(f"4-D data needs dims ('y', 'x', 'ky', 'kx'), got {image.dims}")
    geometry = features_4d.pattern_geometry(image)
    if transform == "auto":
        transform, reason = features_4d.choose_4d_transform(image, geometry)
    elif transform in features_4d.TRANSFORMS_4D:
        reason = "chosen by the user"
    else:
        raise SettingsError(f"transform {transform!r} does not apply to 4D-STEM data; choose "
                            f"'auto' or one of {features_4d.TRANSFORMS_4D}")
    data, options = features_4d.features_4d(image, transform, patch_size=patch_size,
                                            stride=stride, geometry=geometry)
    y, x = features_4d.scan_centres(image, patch_size, stride)
    return Inputs(data, y, x, transform, reason, None, [transform], options)


# --------------------------------------------------------------------------- presets

#: Documented starting points for `fit` per kind of image, offered by the dashboard and
#: used by ``benchmarks/quality.py``. ``fit(image)`` does not need them: it chooses its
#: settings from the image (``models.auto.choose_settings``). Phantom kinds
#: (``synthetic.KINDS``) and real-data kinds (``"pfm"``, ``"stem"``, ``"spectral"``).
#: ``patch_size`` is clipped to a third of the image by `preset_for`. ``"transform":
#: "auto"`` lets `choose_transform` decide from the image. Figures: ``python
#: benchmarks/quality.py --repeats 3`` (and ``--low-snr``).
PRESETS: dict[str, dict] = {
    # Rotated honeycomb grains (three of them): |FFT| sees the orientation of the
    # reflections; one latent per grain. The default boundary weight: on the clean
    # phantom every misclassified cell is already a wall cell, so the prior has little
    # to remove; it pays off at low dose.
    "graphene_grains": {"patch_size": 24, "stride": 4, "transform": "fft+mean",
                        "latent_dim": 3},
    # Stripe orientation domains, period 11.3 px: a 24 px patch holds two periods
    # (16 px holds 1.4, too few for |FFT| features). The phantoms' recommended
    # patch_size/stride attrs equal these presets (tests/test_features.py checks it).
    # The default weight; the prior matters with noise, where PCA on the same inputs
    # fails.
    "bfo_stripes": {"patch_size": 24, "stride": 4, "transform": "fft+mean", "latent_dim": 2},
    # Two lattices (periods 8.9 and 4.8 px) with the same mean intensity; two domains,
    # so one latent. The default weight is a compromise between noise levels: a
    # larger one rescues noisy scans and costs a little on clean ones (which is why
    # fit's automatic weight rises with the estimated noise).
    "nio_lsmo": {"patch_size": 24, "stride": 4, "transform": "fft+mean", "latent_dim": 1},
    # 180 degree domains: the phase channel (as cos/sin) defines them; raw patches. One
    # latent: a second one can follow the amplitude's slow background. Boundary weight
    # 10: the middle of a plateau of good weights with the steadiest worst seed.
    "pfm_labyrinth": {"patch_size": 16, "stride": 4, "transform": "patch", "latent_dim": 1,
                      "boundary_weight": 10.0},
    # Real data: let "auto" decide from the image.
    "pfm": {"patch_size": 16, "stride": 4, "transform": "auto", "latent_dim": 2},
    # HAADF-STEM at a few nm field of view: the strongest reflection of the MoS2 file
    # has a period of about 20 px, so a 48 px patch holds over two periods.
    "stem": {"patch_size": 48, "stride": 8, "transform": "auto", "latent_dim": 2},
    "spectral": {"patch_size": 3, "stride": 1, "transform": "spectrum", "latent_dim": 2},
}

#: Recommended `segment` options per kind (keyword arguments of
#: ``phyvae_dash.segment``); kinds not listed use its default. The stripe phantom's four
#: orientation domains in two latents form elongated clusters that k-means sometimes
#: splits along their length; a tied-covariance GMM does so less often.
SEGMENT_PRESETS: dict[str, dict] = {
    "bfo_stripes": {"method": "tied"},
}


def preset_for(kind: str, image: xr.DataArray | None = None) -> dict:
    """The recommended `fit` settings for a kind of image (a copy of `PRESETS[kind]`).

    Parameters
    ----------
    kind : str
        A key of `PRESETS`.
    image : xarray.DataArray, optional
        When given, ``patch_size`` is clipped to a third of the image's shorter side
        (and ``stride`` to at most the patch size).

    Returns
    -------
    dict
        Keyword arguments for ``phyvae_dash.fit``.

    Examples
    --------
    >>> preset_for("pfm_labyrinth")["patch_size"]
    16
    """
    if kind not in PRESETS:
        raise SettingsError(f"no preset for {kind!r}; choose one of {', '.join(PRESETS)}")
    settings = dict(PRESETS[kind])
    if image is not None and settings.get("patch_size", 0) > 2:
        cap = max(4, min(image.sizes["y"], image.sizes["x"]) // 3)
        settings["patch_size"] = int(min(settings["patch_size"], cap))
        settings["stride"] = int(min(settings["stride"], settings["patch_size"]))
    return settings
