"""Model inputs for EELS spectrum images: background-subtracted, normalised spectra.

The core-loss edges that tell phases apart sit on a falling power-law background
``A E^-r`` whose height follows the local thickness. The ``"eels"`` transform

1. fits ``A E^-r`` at every position in a window before the first edge, with the
   two-area method (Egerton, *Electron Energy-Loss Spectroscopy in the Electron
   Microscope*, 3rd ed., section 4.4.2; the estimate exspy's ``PowerLaw`` component
   starts from), vectorised over all positions;
2. subtracts it from the edge onward;
3. divides each spectrum by its integral over that range, so that thickness (which
   scales everything) drops out and what remains is the shape: onset, fine structure,
   relative edge heights;
4. optionally averages neighbouring positions (``patch_size``/``stride``) and bins the
   energy axis to at most ``max_channels``.

References
----------
R. F. Egerton, Electron Energy-Loss Spectroscopy in the Electron Microscope, Springer
(2011), 4.4.2 "Background fitting".
"""
from __future__ import annotations

import numpy as np
import xarray as xr

from ..errors import DataError, SettingsError

__all__ = ["is_eels", "find_edge_onset", "powerlaw_background", "eels_features"]


def is_eels(image: xr.DataArray) -> bool:
    """An EELS spectrum image: ``(y, x, energy)`` in eV, or marked ``signal_type`` EELS.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> si = xr.DataArray(np.ones((2, 2, 8)), dims=("y", "x", "energy"),
    ...                   coords={"energy": ("energy", np.arange(8.), {"units": "eV"})})
    >>> is_eels(si)
    True
    """
    if not isinstance(image, xr.DataArray) or image.ndim != 3 or image.dims[2] == "channel":
        return False
    dim = image.dims[2]
    units = str(image[dim].attrs.get("units", "")) if dim in image.coords else ""
    return "eels" in str(image.attrs.get("signal_type", "")).lower() or (
        dim == "energy" and units == "eV")


def _energy(image):
    dim = image.dims[2]
    if dim not in image.coords:
        raise DataError(f"EELS data needs an energy coordinate on {dim!r} (eV)")
    energy = np.asarray(image[dim].values, float)
    if np.any(energy <= 0) or np.any(np.diff(energy) <= 0):
        raise DataError("EELS energies must be positive and increasing for a power-law "
                        f"background; got {energy[0]:.4g} ... {energy[-1]:.4g} eV")
    return energy


def powerlaw_background(spectra: np.ndarray, energy: np.ndarray, window) -> tuple:
    """Two-area power-law fit ``A E^-r`` of every spectrum over ``window`` (eV).

    The window is split in two halves of equal width; with ``I1``, ``I2`` their
    integrals and ``E1``, ``E2`` the window ends, ``r = 2 ln(I1 / I2) / ln(E2 / E1)``
    and ``A`` follows from the total integral (Egerton eq. 4.64).

    Returns
    -------
    (A, r) : numpy arrays of the spectra's leading shape.

    Examples
    --------
    >>> import numpy as np
    >>> e = np.linspace(300, 400, 201)
    >>> a, r = powerlaw_background(5e7 * e ** -3.0, e, (300, 350))
    >>> round(float(r), 2), round(float(a / 5e7), 1)
    (3.0, 1.0)
    """
    e1, e2 = float(window[0]), float(window[1])
    inside = (energy >= e1) & (energy <= e2)
    if inside.sum() < 4:
        raise SettingsError(f"background window {window} eV holds fewer than 4 channels")
    idx = np.flatnonzero(inside)
    half = len(idx) // 2
    idx = idx[:2 * half]
    width = np.gradient(energy)[idx]
    # Channel values are bin centres: the window runs from the first bin's lower edge
    # to the last bin's upper edge.
    e1 = energy[idx[0]] - width[0] / 2
    e2 = energy[idx[-1]] + width[-1] / 2
    s = np.clip(np.asarray(spectra, np.float64)[..., idx], 1e-12, None) * width
    i1 = s[..., :half].sum(axis=-1)
    i2 = s[..., half:].sum(axis=-1)
    r = 2.0 * np.log(i1 / i2) / np.log(e2 / e1)
    r = np.clip(r, 1.0 + 1e-3, 8.0)  # outside this, the fit has no physical meaning
    a = (i1 + i2) * (1.0 - r) / (e2 ** (1.0 - r) - e1 ** (1.0 - r))
    return a, r


def find_edge_onset(mean_spectrum: np.ndarray, energy: np.ndarray) -> float:
    """Energy of the first edge: where ``log I`` against ``log E`` first rises steeply.

    A power law is a straight falling line in log-log; an edge is a rise. The first rise
    at least half as steep as the steepest one is taken.

    Examples
    --------
    >>> import numpy as np
    >>> e = np.linspace(400, 600, 401)
    >>> s = 1e9 * e ** -3.0 * (1 + 0.5 * (e > 455))
    >>> round(find_edge_onset(s, e))
    455
    """
    from scipy import ndimage

    log_i = ndimage.gaussian_filter1d(np.log(np.clip(mean_spectrum, 1e-12, None)), 1.0)
    slope = np.gradient(log_i, np.log(energy))
    margin = max(4, len(energy) // 20)  # an edge needs a pre-edge window in front of it
    inner = slope[margin:-2]
    # The first edge, not the strongest: the first rise reaching half the steepest one.
    k = margin + int(np.argmax(inner >= 0.5 * inner.max()))
    return float(energy[k])


def eels_features(image: xr.DataArray, *, background_window=None, signal_range=None,
                  patch_size: int = 1, stride: int = 1, max_channels: int = 128):
    """Background-subtracted, normalised spectra at every position.

    Parameters
    ----------
    image : xarray.DataArray
        ``(y, x, energy)``, energy in eV.
    background_window : (float, float), optional
        Pre-edge fit window in eV; default from just above the start of the energy
        axis up to 3 channels before the first edge (:func:`find_edge_onset` of the
        mean spectrum).
    signal_range : (float, float), optional
        Energies kept as features; default from the window's end to the last channel.
    patch_size, stride : int
        Average spectra over ``patch_size x patch_size`` neighbouring positions.
    max_channels : int
        Bin the kept energies down to at most this many.

    Returns
    -------
    (numpy.ndarray, dict)
        float32 ``(n_y, n_x, F)``, centred and scaled; options with the windows used.

    Examples
    --------
    >>> from phyvae_dash.data.synthetic_spectral import eels_phases
    >>> feats, options = eels_features(eels_phases(scan_shape=(8, 8), n_energy=64, seed=0).image)
    >>> feats.shape[:2], options["background_window_eV"][0] < options["edge_onset_eV"]
    ((8, 8), True)
    """
    energy = _energy(image)
    spectra = np.asarray(image.data, np.float64)
    if not np.all(np.isfinite(spectra)):
        raise DataError("the spectrum image contains NaN or Inf; fill them first "
                        "(load(..., fill_nan=...))")
    onset = None
    if background_window is None:
        onset = find_edge_onset(spectra.mean(axis=(0, 1)), energy)
        k = int(np.searchsorted(energy, onset))
        start = min(2, max(0, k - 6))
        background_window = (float(energy[start]), float(energy[max(start + 4, k - 3)]))
    a, r = powerlaw_background(spectra, energy, background_window)
    lo, hi = signal_range if signal_range is not None else (background_window[1], energy[-1])
    keep = (energy >= lo) & (energy <= hi)
    if keep.sum() < 2:
        raise SettingsError(f"signal_range {signal_range} eV keeps fewer than 2 channels")
    e = energy[keep]
    signal = spectra[..., keep] - a[..., None] * e ** -r[..., None]
    signal /= np.abs(signal).sum(axis=-1, keepdims=True) + 1e-12
    if patch_size > 1 or stride > 1:
        from numpy.lib.stride_tricks import sliding_window_view

        signal = sliding_window_view(signal, (patch_size, patch_size), axis=(0, 1))[
            ::stride, ::stride].mean(axis=(-2, -1))
    factor = int(np.ceil(signal.shape[-1] / max_channels))
    n = signal.shape[-1] // factor
    signal = signal[..., :n * factor].reshape(*signal.shape[:2], n, factor).mean(axis=-1)
    flat = signal.reshape(-1, n)
    flat = flat - flat.mean(axis=0)
    flat /= np.sqrt(flat.var(axis=0).mean()) + 1e-12
    options = {"background_window_eV": [float(v) for v in background_window],
               "signal_range_eV": [float(lo), float(hi)], "bin_factor": factor,
               "edge_onset_eV": float(onset) if onset is not None else float(background_window[1]),
               "mean_powerlaw_r": float(np.mean(r))}
    return flat.reshape(signal.shape).astype(np.float32), options
