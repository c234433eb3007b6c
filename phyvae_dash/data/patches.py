"""Patches cut around a grid of scan positions, as a labelled array."""
from __future__ import annotations

import numpy as np
import xarray as xr

from ..errors import DataError, SettingsError

NORMALIZATIONS = (None, "minmax", "zscore")


def normalize(image: xr.DataArray, method: str | None = "minmax") -> xr.DataArray:
    """Normalise an image per channel (or spectral point) over the whole scan.

    Parameters
    ----------
    image : xarray.DataArray
        Dims ``("y", "x"[, third])``.
    method : {"minmax", "zscore", None}
        ``"minmax"`` maps each channel to [0, 1]; ``"zscore"`` to zero mean, unit
        standard deviation; ``None`` returns the image unchanged.

    Returns
    -------
    xarray.DataArray
        Same dims and coordinates, ``attrs["normalization"]`` set.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> img = xr.DataArray(np.arange(12.0).reshape(3, 4), dims=("y", "x"))
    >>> float(normalize(img).max())
    1.0
    """
    if method not in NORMALIZATIONS:
        raise SettingsError(f"normalization must be one of {NORMALIZATIONS}, not {method!r}")
    if method is None:
        return image
    spatial = ("y", "x")
    if method == "minmax":
        low, high = image.min(spatial), image.max(spatial)
        out = (image - low) / (high - low).where(high > low, 1.0)
    else:
        mean, std = image.mean(spatial), image.std(spatial)
        out = (image - mean) / std.where(std > 0, 1.0)
    out.attrs = {**image.attrs, "normalization": method}
    return out


def patch_centres(image: xr.DataArray, patch_size: int, stride: int = 1) -> dict:
    """Coordinates ``{"y": (dim, values, attrs), "x": ...}`` of the patch centres.

    Needs only the image's coordinates, not its data (the chunked encoder calls it on
    dask-backed images).

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> img = xr.DataArray(np.zeros((10, 10)), dims=("y", "x"))
    >>> patch_centres(img, 4, 3)["y"][1]
    array([1.5, 4.5, 7.5])
    """
    coords = {}
    for dim in ("y", "x"):
        size = image.sizes[dim]
        n = (size - patch_size) // stride + 1
        full = image[dim].values if dim in image.coords else np.arange(size, dtype=float)
        starts = np.arange(n) * stride
        # Mean of first and last pixel = centre, also for even patch sizes.
        centre = (full[starts] + full[starts + patch_size - 1]) / 2
        attrs = dict(image[dim].attrs) if dim in image.coords else {"units": "px"}
        coords[dim] = (dim, centre, attrs)
    return coords


def extract_patches(
    image: xr.DataArray,
    patch_size: int,
    stride: int = 1,
    normalization: str | None = None,
) -> xr.DataArray:
    """Cut square patches around a regular grid of positions.

    The result is a strided *view* of the image's data (no copy, no loop over
    positions) unless a normalisation is asked for.

    Parameters
    ----------
    image : xarray.DataArray
        Dims ``("y", "x")`` or ``("y", "x", channel_or_spectral_dim)``.
    patch_size : int
        Side of the square patch in pixels, at least 2.
    stride : int, optional
        Step between neighbouring patch positions in pixels, at least 1.
    normalization : {None, "minmax", "zscore"}
        Normalise the image per channel before cutting (see :func:`normalize`).

    Returns
    -------
    xarray.DataArray
        Dims ``("y", "x", "wy", "wx"[, third])``; ``y``/``x`` are the patch centres in
        the image's coordinates (with their ``units``), ``wy``/``wx`` the pixel offsets
        inside a patch. ``attrs`` record ``patch_size``, ``stride`` and
        ``normalization``.

    See Also
    --------
    skimage.util.view_as_windows : the same strided view, without coordinates.
    phyvae_dash.models.features.prepare_inputs : patches and the other input transforms.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> img = xr.DataArray(np.random.rand(64, 64), dims=("y", "x"))
    >>> patches = extract_patches(img, patch_size=16, stride=4)
    >>> patches.sizes["y"], patches.sizes["wy"]
    (13, 16)
    """
    if image.ndim not in (2, 3) or image.dims[:2] != ("y", "x"):
        raise DataError(f"extract_patches needs dims ('y', 'x'[, channel]), got {image.dims}")
    if not isinstance(patch_size, (int, np.integer)) or patch_size < 2:
        raise SettingsError(f"patch_size must be an integer >= 2, got {patch_size!r}")
    if not isinstance(stride, (int, np.integer)) or stride < 1:
        raise SettingsError(f"stride must be an integer >= 1, got {stride!r}")
    ny, nx = image.sizes["y"], image.sizes["x"]
    if patch_size > min(ny, nx):
        raise SettingsError(
            f"patch_size {patch_size} is larger than the image ({ny} x {nx} pixels)"
        )
    image = normalize(image, normalization)
    data = np.asarray(image.data)
    windows = np.lib.stride_tricks.sliding_window_view(data, (patch_size, patch_size), axis=(0, 1))
    windows = windows[::stride, ::stride]
    if image.ndim == 3:  # sliding_window_view puts window axes last: (y, x, c, wy, wx)
        windows = np.moveaxis(windows, 2, -1)
    n_y, n_x = windows.shape[:2]

    coords = patch_centres(image, patch_size, stride)
    offsets = np.arange(patch_size) - (patch_size - 1) / 2
    coords["wy"] = ("wy", offsets)
    coords["wx"] = ("wx", offsets)
    dims = ("y", "x", "wy", "wx")
    if image.ndim == 3:
        third = image.dims[2]
        dims = dims + (third,)
        if third in image.coords:
            coords[third] = image[third]
    return xr.DataArray(
        windows,
        dims=dims,
        coords=coords,
        name="patches",
        attrs={
            **{k: v for k, v in image.attrs.items() if k != "normalization"},
            "patch_size": int(patch_size),
            "stride": int(stride),
            "normalization": str(normalization),
        },
    )
