"""What an image's third dim holds, and the names, units and phases of its channels.

One place for the conventions of ARCHITECTURE.md: a third dim called ``channel`` holds
channels (PFM amplitude and phase, ...); any other third dim is spectral (a spectrum
per scan position). Every layer reads channel names, units and phase channels here.

Examples
--------
>>> import numpy as np, xarray as xr
>>> pfm = xr.DataArray(np.zeros((4, 4, 2)), dims=("y", "x", "channel"),
...                    coords={"channel": ["amplitude", "phase"]},
...                    attrs={"phase_channels": "phase", "channel_units": ["nm", "deg"]})
>>> is_spectral(pfm), channel_names(pfm), phase_names(pfm), channel_units(pfm)
(False, ['amplitude', 'phase'], ['phase'], ['nm', 'deg'])
"""
from __future__ import annotations

import numpy as np
import xarray as xr

from .attrs import as_list

__all__ = ["is_spectral", "channel_names", "channel_units", "phase_names"]


def is_spectral(image: xr.DataArray) -> bool:
    """True for ``(y, x, <spectral>)`` data: a spectrum per scan position."""
    return image.ndim == 3 and image.dims[2] != "channel"


def channel_names(image: xr.DataArray) -> list[str]:
    """Names along the third dim (its coordinate, else ``"<dim><i>"``); a 2-D image has
    one channel, named after the image."""
    if image.ndim == 2:
        return [str(image.name or image.attrs.get("long_name") or "intensity")]
    dim = image.dims[2]
    if dim in image.coords:
        return [str(v) for v in image[dim].values]
    return [f"{dim}{i}" for i in range(image.sizes[dim])]


def channel_units(image: xr.DataArray) -> list[str]:
    """Units of each channel: ``attrs["channel_units"]`` (list, dict or one for all), the
    channel coordinate's ``units``, or the image's ``units`` for a single channel."""
    names = channel_names(image)
    units = image.attrs.get("channel_units")
    if units is None and image.ndim == 3 and image.dims[2] in image.coords:
        units = image[image.dims[2]].attrs.get("units")
    if units is None:
        units = image.attrs.get("units")
    if isinstance(units, dict):
        return [str(units.get(n, "")) for n in names]
    if isinstance(units, str):
        return [units] * len(names)
    units = [str(u) for u in np.atleast_1d(units)] if units is not None else []
    return units + [""] * (len(names) - len(units))


def phase_names(image: xr.DataArray) -> list[str]:
    """The channels marked as phase angles (``attrs["phase_channels"]``)."""
    return as_list(image.attrs.get("phase_channels", []))
