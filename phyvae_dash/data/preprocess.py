"""Preprocessing a microscopist expects, each step recorded in ``attrs["preprocessing"]``.

Every function takes a labelled image (dims ``("y", "x")``, ``("y", "x", "channel")`` or
``("y", "x", <spectral>)``) and returns a new one with the same labels, so steps chain:

>>> import numpy as np, xarray as xr
>>> from phyvae_dash.data import preprocess as pp
>>> img = xr.DataArray(np.random.rand(64, 64), dims=("y", "x"))
>>> out = pp.downsample(pp.correct_scan_lines(pp.flatten(img)), 2)
>>> out.attrs["preprocessing"]
['flatten(order=1)', "correct_scan_lines(method='median')", 'downsample(factor=2)']

Per-channel steps work on each channel (or spectral point) separately. Phase channels
(``attrs["phase_channels"]``, see :func:`phyvae_dash.data.io.load`) are angles: in a
multi-channel image, background fits and line levelling leave them alone unless named in
``channels=``, binning averages them on the circle, and :func:`phase_to_cos_sin` turns
them into continuous inputs for a model.
"""
from __future__ import annotations

import math

import numpy as np
import xarray as xr

from ..errors import DataError, SettingsError
from .attrs import as_list
from .channels import channel_units, phase_names
from .units import clean_units, is_angle

__all__ = ["flatten", "correct_scan_lines", "clip_outliers", "downsample", "phase_to_cos_sin"]

SCAN_LINE_METHODS = ("median", "mean")


def flatten(image: xr.DataArray, order: int = 1, channels=None) -> xr.DataArray:
    """Subtract a polynomial background surface (a plane for ``order=1``) per channel.

    The surface is a least-squares fit of all 2-D monomials ``y**i * x**j`` with
    ``i + j <= order``, done for every channel at once; it removes sample tilt (order 1)
    and scanner bow (order 2-3) in SPM images.

    Parameters
    ----------
    image : xarray.DataArray
        Dims ``("y", "x"[, third])``.
    order : int
        Polynomial order, 0 (offset) to 5.
    channels : list of str, optional
        Channels to flatten; default every channel except phase channels.

    Returns
    -------
    xarray.DataArray
        The image minus its background; ``attrs["preprocessing"]`` extended.

    See Also
    --------
    correct_scan_lines : row-by-row offsets rather than a plane.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> yy, xx = np.mgrid[:32, :32]
    >>> tilted = xr.DataArray(0.5 * xx + 0.2 * yy + 3.0, dims=("y", "x"))
    >>> bool(abs(flatten(tilted)).max() < 1e-9)
    True
    """
    _check_image(image, "flatten")
    if not isinstance(order, (int, np.integer)) or not 0 <= order <= 5:
        raise SettingsError(f"flatten: order must be an integer from 0 to 5, not {order!r}")
    cube, selected = _selected_cube(image, channels)
    if not selected:
        return _record(image.copy(), f"flatten(order={order}{_channels_note(image, selected)})")
    ny, nx, nc = cube.shape
    # Pixel indices scaled to [-1, 1] keep the normal equations well conditioned.
    v, u = np.meshgrid(np.linspace(-1, 1, ny), np.linspace(-1, 1, nx), indexing="ij")
    terms = [v**i * u**j for i in range(order + 1) for j in range(order + 1 - i)]
    design = np.stack([t.ravel() for t in terms], axis=1)
    values = cube.reshape(ny * nx, nc).astype(np.float64)
    coefficients, *_ = np.linalg.lstsq(design, values, rcond=None)
    background = (design @ coefficients).reshape(ny, nx, nc)
    out = _replace(image, selected, cube - background)
    return _record(out, f"flatten(order={order}{_channels_note(image, selected)})")


def correct_scan_lines(image: xr.DataArray, method: str = "median", channels=None) -> xr.DataArray:
    """Remove the offset of each fast-scan line (row), as SPM "align rows" does.

    Each row's median (or mean) is subtracted and the image's overall median (or mean)
    added back, so the levels stay in the original range while jumps between lines,
    from feedback or tip changes, disappear.

    Parameters
    ----------
    image : xarray.DataArray
        Dims ``("y", "x"[, third])``; rows are lines along ``x``.
    method : {"median", "mean"}
        The median ignores features covering less than half a line.
    channels : list of str, optional
        Channels to correct; default every channel except phase channels.

    See Also
    --------
    flatten : a plane or polynomial background.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> offsets = np.arange(16.0)[:, None]  # each line shifted by a different amount
    >>> striped = xr.DataArray(np.zeros((16, 32)) + offsets, dims=("y", "x"))
    >>> float(correct_scan_lines(striped).std())
    0.0
    """
    _check_image(image, "correct_scan_lines")
    if method not in SCAN_LINE_METHODS:
        raise SettingsError(f"correct_scan_lines: method must be one of {SCAN_LINE_METHODS}, "
                            f"not {method!r}")
    cube, selected = _selected_cube(image, channels)
    if not selected:
        return _record(image.copy(), f"correct_scan_lines(method={method!r}{_channels_note(image, selected)})")
    stat = np.median if method == "median" else np.mean
    line_level = stat(cube, axis=1, keepdims=True)  # one level per row and channel
    overall = stat(cube, axis=(0, 1), keepdims=True)
    out = _replace(image, selected, cube - line_level + overall)
    note = _channels_note(image, selected)
    return _record(out, f"correct_scan_lines(method={method!r}{note})")


def clip_outliers(image: xr.DataArray, percentile=(0.1, 99.9)) -> xr.DataArray:
    """Clip each channel to its lower and upper percentiles.

    Hot pixels, dust and tip crashes otherwise dominate any min-max normalisation.

    Parameters
    ----------
    image : xarray.DataArray
        Dims ``("y", "x"[, third])``.
    percentile : (float, float)
        Lower and upper percentile, ``0 <= low < high <= 100``.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> data = np.zeros((20, 20)); data[3, 4] = 1e6  # one hot pixel
    >>> float(clip_outliers(xr.DataArray(data, dims=("y", "x")), (0, 99)).max())
    0.0
    """
    _check_image(image, "clip_outliers")
    try:
        low, high = (float(p) for p in percentile)
    except (TypeError, ValueError):
        raise SettingsError(
            f"clip_outliers: percentile must be (low, high), not {percentile!r}") from None
    if not 0 <= low < high <= 100:
        raise SettingsError(f"clip_outliers: need 0 <= low < high <= 100, got {percentile!r}")
    limits = image.quantile([low / 100, high / 100], dim=("y", "x"))
    out = image.clip(limits.isel(quantile=0).drop_vars("quantile"),
                     limits.isel(quantile=1).drop_vars("quantile"))
    out.attrs = dict(image.attrs)
    return _record(out, f"clip_outliers(percentile=({low:g}, {high:g}))")


def downsample(image: xr.DataArray, factor) -> xr.DataArray:
    """Bin ``factor x factor`` pixels into one (averaging values and coordinates).

    Binning keeps the physical coordinates right (each new pixel sits at the mean
    position of the pixels it averages) and improves the signal-to-noise ratio; rows or
    columns that do not fill a whole bin at the far edge are dropped. Phase channels are
    averaged on the circle so that -179° and 179° give 180°, not 0°.

    Parameters
    ----------
    image : xarray.DataArray
        Dims ``("y", "x"[, third])``.
    factor : int or (int, int)
        Bin size along ``y`` and ``x``; 1 leaves that axis as it is.

    See Also
    --------
    skimage.measure.block_reduce : the same binning for non-angle data.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> img = xr.DataArray(np.arange(16.0).reshape(4, 4), dims=("y", "x"),
    ...                    coords={"y": np.arange(4.0), "x": np.arange(4.0)})
    >>> binned = downsample(img, 2)
    >>> binned.values.tolist(), binned.x.values.tolist()
    ([[2.5, 4.5], [10.5, 12.5]], [0.5, 2.5])
    """
    _check_image(image, "downsample")
    fy, fx = (factor, factor) if np.ndim(factor) == 0 else tuple(factor)
    for f in (fy, fx):
        if not isinstance(f, (int, np.integer)) or isinstance(f, bool) or f < 1:
            raise SettingsError(
                f"downsample: factor must be a positive integer or a pair, not {factor!r}")
    if fy > image.sizes["y"] or fx > image.sizes["x"]:
        raise SettingsError(f"downsample: factor {factor!r} is larger than the image "
                            f"({image.sizes['y']} x {image.sizes['x']} pixels)")
    if "y" not in image.coords or "x" not in image.coords:  # give coarsen coordinates to average
        image = image.assign_coords({d: (d, np.arange(image.sizes[d], dtype=float), {"units": "px"})
                                     for d in ("y", "x") if d not in image.coords})
    binned = image.coarsen(y=fy, x=fx, boundary="trim").mean(keep_attrs=True)
    phases = [name for name in phase_names(image)]
    if phases:
        binned = _circular_bin(image, binned, phases, fy, fx)
    for d in ("y", "x"):
        binned[d].attrs = dict(image[d].attrs)
    binned.attrs = dict(image.attrs)
    label = fy if fy == fx else (int(fy), int(fx))
    return _record(binned, f"downsample(factor={label})")


def phase_to_cos_sin(image: xr.DataArray, channel=None) -> xr.DataArray:
    """Replace a phase channel by its cosine and sine.

    A phase is an angle: -179° and 181° are the same state, but as numbers they are
    far apart, and a model would see a domain wall where the phase wraps. ``cos`` and
    ``sin`` are continuous. Whether the phase is in degrees or radians is read from the
    channel's units (``attrs["channel_units"]`` / ``attrs["units"]``) or, where those do
    not say, from its range (more than 2π wide means degrees).

    Parameters
    ----------
    image : xarray.DataArray
        Dims ``("y", "x")`` (a phase image) or ``("y", "x", "channel")``.
    channel : str or list of str, optional
        Phase channel(s) to replace; default every channel in ``attrs["phase_channels"]``.

    Returns
    -------
    xarray.DataArray
        Dims ``("y", "x", "channel")``; ``<name>`` becomes ``<name>_cos`` and
        ``<name>_sin`` in its place, with units ``"1"``.

    See Also
    --------
    phyvae_dash.models.features.phase_channel_indices : which channels are angles.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> phase = xr.DataArray(np.full((4, 4), 90.0), dims=("y", "x"), name="Phase",
    ...                      attrs={"units": "deg", "phase_channels": ["Phase"]})
    >>> out = phase_to_cos_sin(phase)
    >>> out.channel.values.tolist(), round(float(out.sel(channel="Phase_sin")[0, 0]), 6)
    (['Phase_cos', 'Phase_sin'], 1.0)
    """
    _check_image(image, "phase_to_cos_sin")
    multi = _as_channels(image)
    names = [str(n) for n in multi.channel.values]
    if channel is None:
        wanted = [n for n in phase_names(image) if n in names]
        if not wanted:
            raise DataError("phase_to_cos_sin: the image has no phase channel "
                            f"(attrs['phase_channels'] is empty); channels: {names}")
    else:
        wanted = as_list(channel)
    missing = [n for n in wanted if n not in names]
    if missing:
        raise DataError(f"phase_to_cos_sin: no channel {missing[0]!r}; channels: {names}")
    units = channel_units(multi)
    pieces, new_names, new_units = [], [], []
    for name, unit in zip(names, units):
        values = multi.sel(channel=name).values
        if name not in wanted:
            pieces.append(values)
            new_names.append(name)
            new_units.append(unit)
            continue
        radians = np.deg2rad(values) if _in_degrees(values, unit) else values
        pieces += [np.cos(radians), np.sin(radians)]
        new_names += [f"{name}_cos", f"{name}_sin"]
        new_units += ["1", "1"]
    attrs = dict(image.attrs)
    attrs.pop("units", None)
    attrs.pop("long_name", None)
    attrs["channel_units"] = new_units
    attrs["phase_channels"] = [n for n in phase_names(image) if n not in wanted]
    out = xr.DataArray(
        np.stack(pieces, axis=-1), dims=("y", "x", "channel"),
        coords={**{d: multi[d] for d in ("y", "x") if d in multi.coords}, "channel": new_names},
        name=image.name, attrs=attrs,
    )
    return _record(out, f"phase_to_cos_sin(channel={wanted!r})")


# -------------------------------------------------------------------------- helpers


def _check_image(image, what: str) -> None:
    if not isinstance(image, xr.DataArray):
        raise DataError(f"{what}: expected an xarray.DataArray, got {type(image).__name__}")
    if image.ndim not in (2, 3) or image.dims[:2] != ("y", "x"):
        raise DataError(f"{what}: expected dims ('y', 'x'[, channel]), got {image.dims}")
    if image.sizes["y"] == 0 or image.sizes["x"] == 0:
        raise DataError(f"{what}: the image is empty ({dict(image.sizes)})")


def _as_channels(image: xr.DataArray) -> xr.DataArray:
    """A 2-D image as a one-channel ``(y, x, channel)`` array named after the image."""
    if image.ndim == 3:
        if image.dims[2] != "channel":
            raise DataError(f"expected a channel image, got a spectral dim {image.dims[2]!r}")
        return image
    name = str(image.attrs.get("long_name") or image.name or "image")
    return image.expand_dims(channel=[name], axis=-1)


def _selected_cube(image: xr.DataArray, channels):
    """The data as ``(y, x, n)`` and the indices along the third dim to process."""
    cube = np.asarray(image.values)
    if image.ndim == 2:
        # A lone phase channel must not be levelled either: its two levels are the data.
        name = str(image.attrs.get("long_name") or image.name or "image")
        if channels is None and name in phase_names(image):
            return cube[..., :0], []
        return cube[..., None], [0]
    n = cube.shape[2]
    if image.dims[2] != "channel":  # spectral: every point
        return cube, list(range(n))
    names = [str(c) for c in image.channel.values]
    if channels is None:
        phases = set(phase_names(image))
        selected = [i for i, c in enumerate(names) if c not in phases]
    else:
        wanted = as_list(channels)
        missing = [c for c in wanted if c not in names]
        if missing:
            raise DataError(f"no channel {missing[0]!r}; channels: {names}")
        selected = [names.index(c) for c in wanted]
    return cube[..., selected], selected


def _replace(image: xr.DataArray, selected, processed: np.ndarray) -> xr.DataArray:
    data = np.array(image.values, dtype=np.result_type(image.dtype, processed.dtype), copy=True)
    if image.ndim == 2:
        if selected:
            data[...] = processed[..., 0]
    else:
        data[..., selected] = processed
    out = image.copy(data=data)
    out.attrs = dict(image.attrs)
    return out


def _channels_note(image: xr.DataArray, selected) -> str:
    if image.ndim == 2 and not selected:
        return ", phase channel left unchanged"
    if image.ndim == 2 or image.dims[2] != "channel" or len(selected) == image.sizes["channel"]:
        return ""
    return f", channels={[str(image.channel.values[i]) for i in selected]!r}"


def _circular_bin(image, binned, phases, fy, fx):
    """Average phase channels on the circle and put them back in their original range."""
    multi = _as_channels(image)
    units = dict(zip([str(c) for c in multi.channel.values], channel_units(multi)))
    out = _as_channels(binned).copy()
    for name in phases:
        if name not in units:
            continue
        values = multi.sel(channel=name)
        in_degrees = _in_degrees(values.values, units[name])
        angle = np.deg2rad(values) if in_degrees else values
        mean_cos = np.cos(angle).coarsen(y=fy, x=fx, boundary="trim").mean()
        mean_sin = np.sin(angle).coarsen(y=fy, x=fx, boundary="trim").mean()
        mean = np.arctan2(mean_sin, mean_cos)
        mean = np.rad2deg(mean) if in_degrees else mean
        # Back into the channel's own range, e.g. [-90, 270) for a PFM phase.
        period, low = (360.0 if in_degrees else 2 * math.pi), float(values.min())
        out.loc[{"channel": name}] = (low + np.mod(mean - low, period)).values
    return out if image.ndim == 3 else out.isel(channel=0, drop=True)


def _in_degrees(values: np.ndarray, unit: str) -> bool:
    """Degrees if the units say so; where they do not, a range wider than 2π."""
    if is_angle(unit):
        return clean_units(unit) == "deg"
    return bool(np.nanmax(values) - np.nanmin(values) > 2 * math.pi * 1.05)


def _record(image: xr.DataArray, step: str) -> xr.DataArray:
    history = image.attrs.get("preprocessing", [])
    history = as_list(history)
    image.attrs["preprocessing"] = [*history, step]
    return image
