"""Trained models after `fit`: an in-process registry, the ``pvd`` accessor, save/open.

A fit result is a plain ``xarray.Dataset``; its ``attrs["model_id"]`` (a uuid) names
the trained model in a small in-process LRU registry, so copies and subsets of the
result still reach it. On disk a result is two files: ``<stem>.nc`` (NetCDF, h5netcdf
engine) and ``<stem>.safetensors`` (the weights, with the model's JSON config in the
safetensors metadata; nothing is pickled). `open_result` reads both and registers the
model again.

Examples
--------
>>> import numpy as np, xarray as xr, phyvae_dash as pvd
>>> img = xr.DataArray(np.random.default_rng(0).random((32, 32)), dims=("y", "x"))
>>> result = pvd.fit(img, patch_size=8, stride=4, epochs=2, device="cpu", transform="patch")
>>> result.pvd.decode(result.z_mean.isel(y=0, x=0)).dims
('wy', 'wx')
"""
from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr

from ..data import attrs as attrs_codec
from ..errors import DataError, PhyvaeDashError
from .encode import as_image, encode_all, encode_image, model_inputs
from .weights import load_weights, model_from_bytes, save_weights, weights_to_bytes  # noqa: F401 (re-exported)

MAX_MODELS = 32
#: attrs that are lists of strings, whatever their length (restored by `open_result`).
_REGISTRY: "OrderedDict[str, Entry]" = OrderedDict()


@dataclass
class Entry:
    """A registered model and, while in memory, the inputs it was trained on."""

    model: torch.nn.Module
    inputs: torch.Tensor | None = None     # (n, *feature_shape), on the model's device
    grid_shape: tuple[int, int] | None = None


def register(model_id: str, model, inputs=None, grid_shape=None, config=None) -> str:
    """Keep ``model`` under ``model_id``; the least recently used beyond 32 are dropped."""
    _REGISTRY[model_id] = Entry(model, inputs, tuple(grid_shape) if grid_shape else None)
    _REGISTRY.move_to_end(model_id)
    while len(_REGISTRY) > MAX_MODELS:
        _REGISTRY.popitem(last=False)
    return model_id


def get_entry(model_id: str, source: str | None = None) -> Entry:
    """The registry entry for ``model_id``; reloads weights saved beside ``source``."""
    if model_id in _REGISTRY:
        _REGISTRY.move_to_end(model_id)
        return _REGISTRY[model_id]
    if source:
        weights = Path(source).with_suffix(".safetensors")
        if weights.exists():
            register(model_id, load_weights(weights))
            return _REGISTRY[model_id]
    raise PhyvaeDashError(
        f"model {model_id!r} is not in memory (only the last {MAX_MODELS} fits are kept); "
        "open the saved result with phyvae_dash.open_result(path) or fit again")


# -- result datasets -------------------------------------------------------------------
def _patches(values: np.ndarray, input_shape, lead_dims: tuple[str, ...], coords: dict,
             channels=None) -> xr.DataArray:
    """Decoded inputs as a DataArray: ``(*lead, wy, wx[, channel])`` or ``(*lead, feature)``.

    ``channels`` names the model's input channels (``attrs["input_channels"]``, e.g.
    ``["amplitude", "phase:cos", "phase:sin"]``); the channel coordinate falls back to
    their index for results saved before fits recorded them.
    """
    if len(input_shape) == 3:
        c, p, _ = input_shape
        offsets = np.arange(p) - (p - 1) / 2
        coords = {**coords, "wy": offsets, "wx": offsets}
        if c == 1:
            return xr.DataArray(values[..., 0, :, :], dims=(*lead_dims, "wy", "wx"), coords=coords)
        names = list(channels) if channels is not None and len(channels) == c else list(range(c))
        return xr.DataArray(np.moveaxis(values, -3, -1), dims=(*lead_dims, "wy", "wx", "channel"),
                            coords={**coords, "channel": names})
    return xr.DataArray(values, dims=(*lead_dims, "feature"),
                        coords={**coords, "feature": np.arange(input_shape[0])})


@torch.no_grad()
def _decode(model, z: np.ndarray) -> np.ndarray:
    dev = next(model.parameters()).device
    out = model.decode(torch.as_tensor(np.asarray(z, dtype=np.float32), device=dev))
    return out.float().cpu().numpy()


@xr.register_dataset_accessor("pvd")
class PvdAccessor:
    """``result.pvd``: the trained model behind a fit result.

    Examples
    --------
    >>> import numpy as np, xarray as xr, phyvae_dash as pvd
    >>> img = xr.DataArray(np.random.default_rng(0).random((32, 32)), dims=("y", "x"))
    >>> result = pvd.fit(img, patch_size=8, stride=4, epochs=2, device="cpu", transform="patch")
    >>> result.pvd.manifold(n=3).dims
    ('u', 'v', 'wy', 'wx')
    """

    def __init__(self, ds: xr.Dataset):
        self._ds = ds

    @property
    def _entry(self) -> Entry:
        if "model_id" not in self._ds.attrs:
            raise PhyvaeDashError("this Dataset is not a fit result (no attrs['model_id'])")
        return get_entry(self._ds.attrs["model_id"], self._ds.encoding.get("source"))

    @property
    def model(self):
        """The trained `BaseVAE`."""
        return self._entry.model

    @property
    def _channels(self) -> list | None:
        names = self._ds.attrs.get("input_channels")
        return None if names is None else attrs_codec.as_list(names)

    def encode(self, image: xr.DataArray, *, scheduler=None, device: str = "auto") -> xr.Dataset:
        """Latent maps of another image with this result's model and settings.

        A dask-backed image (``load(path, lazy=True)``, or ``image.chunk(...)``) is
        encoded block by block (`encode.encode_chunked`): the result is then a
        dask-backed Dataset, equal to the in-memory encode within float rounding, to
        compute or write with ``to_zarr``/``to_netcdf`` chunk by chunk. ``scheduler``
        (a dask scheduler name, a ``tcp://`` address or a ``Client``) runs the pass
        that gathers the scan's statistics; ``device`` is where the model runs
        (``"auto"``: each dask worker's GPU when it has one).

        Returns a Dataset like `fit`'s without the loss history; ``attrs`` are the
        result's settings plus ``encoded_with`` (this model's id).
        """
        image = as_image(image)
        a = self._ds.attrs
        ds = encode_image(self.model, image, a, scheduler=scheduler, device=device)
        ds.attrs = {k: v for k, v in a.items() if k not in ("elapsed_s", "patches_per_s")}
        ds.attrs["encoded_with"] = a["model_id"]
        ds.attrs["image_source"] = str(image.attrs.get("source", ""))
        return ds

    def decode(self, z) -> xr.DataArray:
        """Decode content latents ``(..., latent)`` (array or DataArray with a ``latent``
        dim) into inputs: dims ``(sample, wy, wx[, channel])`` (``sample`` dropped for a
        single vector) or ``(sample, feature)``."""
        if isinstance(z, xr.DataArray):
            z = z.transpose(..., "latent").values
        z = np.asarray(z, dtype=np.float32)
        single = z.ndim == 1
        out = _decode(self.model, z.reshape(-1, z.shape[-1]))
        da = _patches(out, self.model.input_shape, ("sample",), {}, self._channels)
        return da.isel(sample=0) if single else da

    def reconstruct(self, image: xr.DataArray | None = None) -> xr.DataArray:
        """Decoded inputs at every scan position (with their shifts/angles):
        ``(y, x, wy, wx[, channel])`` or ``(y, x, feature)``. ``image`` defaults to the
        image the model was trained on (available in the session that fitted it)."""

        entry = self._entry
        if image is not None:
            from .features import prepare_inputs
            a = self._ds.attrs
            inputs = prepare_inputs(image, int(a["patch_size"]), int(a["stride"]), transform=a["transform"])
            data = model_inputs(entry.model, inputs)
            y, x = inputs.y, inputs.x
        elif entry.inputs is not None:
            data, y, x = entry.inputs, self._ds["y"], self._ds["x"]
        else:
            raise PhyvaeDashError("the training inputs are not in memory (result opened from "
                                  "disk); pass the image: result.pvd.reconstruct(image)")
        mu, _ = encode_all(entry.model, data)
        out = _decode(entry.model, mu.cpu().numpy()).reshape(len(y), len(x), *entry.model.input_shape)
        return _patches(out, entry.model.input_shape, ("y", "x"), {"y": y, "x": x}, self._channels)

    def manifold(self, n: int = 8, latents: tuple[int, int] = (0, 1),
                 span: tuple[float, float, float, float] | None = None) -> xr.DataArray:
        """Decoded inputs over an ``n x n`` grid of a latent plane.

        Parameters
        ----------
        n : int
            Grid points per axis.
        latents : (int, int)
            The latents on the ``u`` (rows) and ``v`` (columns) axes; the others are
            held at their median over the map.
        span : (u_min, u_max, v_min, v_max), optional
            Default: the 2nd to 98th percentiles of those latents over the map.

        Returns
        -------
        xarray.DataArray
            ``(u, v, wy, wx[, channel])`` or ``(u, v, feature)``, ``u``/``v`` the latent
            values.
        """
        zm = self._ds["z_mean"].values.reshape(self._ds.sizes["latent"], -1)
        L = zm.shape[0]
        iu, iv = latents if L > 1 else (0, 0)
        if span is None:
            lo = np.percentile(zm, 2, axis=1)
            hi = np.percentile(zm, 98, axis=1)
            span = (lo[iu], hi[iu], lo[iv], hi[iv])
        u = np.linspace(span[0], span[1], n)
        v = np.linspace(span[2], span[3], n)
        z = np.tile(np.median(zm, axis=1), (n, n, 1))
        z[..., iu] = u[:, None]
        z[..., iv] = v[None, :] if L > 1 else z[..., iv]
        out = _decode(self.model, z.reshape(n * n, L)).reshape(n, n, *self.model.input_shape)
        da = _patches(out, self.model.input_shape, ("u", "v"), {"u": u, "v": v}, self._channels)
        da.attrs = {"latents": [int(iu), int(iv)]}
        return da

    def save(self, path) -> Path:
        """Same as ``save(result, path)``."""
        return save(self._ds, path)


# -- files -----------------------------------------------------------------------------


def save(result: xr.Dataset, path) -> Path:
    """Write a fit result to ``<stem>.nc`` and its model to ``<stem>.safetensors``.

    Parameters
    ----------
    result : xarray.Dataset
        A `fit` result (or `PvdAccessor.encode`'s).
    path : str or Path
        The NetCDF path; ``.nc`` is added when it has another suffix.

    Returns
    -------
    Path
        The NetCDF path.

    Examples
    --------
    >>> import tempfile, numpy as np, xarray as xr, phyvae_dash as pvd
    >>> img = xr.DataArray(np.random.default_rng(0).random((32, 32)), dims=("y", "x"))
    >>> result = pvd.fit(img, patch_size=8, stride=4, epochs=1, device="cpu", transform="patch")
    >>> path = save(result, tempfile.mkdtemp() + "/fit.nc")
    >>> bool(np.allclose(open_result(path).z_mean, result.z_mean))
    True
    """
    path = Path(path)
    if path.suffix != ".nc":
        path = path.with_suffix(".nc")
    path.parent.mkdir(parents=True, exist_ok=True)
    model_id = result.attrs.get("encoded_with", result.attrs.get("model_id"))
    model = get_entry(model_id, result.encoding.get("source")).model if model_id else None
    ds = result.copy()
    ds.attrs = attrs_codec.encode(ds.attrs)
    for var in ds.variables.values():
        var.attrs = attrs_codec.encode(var.attrs)
    ds.to_netcdf(path, engine="h5netcdf")
    if model is not None:
        save_weights(model, path.with_suffix(".safetensors"))
    return path


def open_result(path, *, lazy: bool = False) -> xr.Dataset:
    """Read a result written by `save` (or by `encode_many`, ``.zarr``) and register its
    model (if its weights exist).

    ``lazy=True`` reads nothing but the metadata: the variables are dask arrays, read
    chunk by chunk when used (the file stays open).

    Examples
    --------
    See `save`.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path} does not exist")
    if path.suffix == ".zarr":
        ds = xr.open_zarr(path)
    else:
        ds = xr.open_dataset(path, engine="h5netcdf", chunks={} if lazy else None)
    if not lazy:
        with ds:
            ds = ds.load()
    ds.encoding["source"] = str(path)
    ds.attrs = attrs_codec.decode(ds.attrs)
    for var in ds.variables.values():
        var.attrs = attrs_codec.decode(var.attrs)
    weights = path.with_suffix(".safetensors")
    model_id = ds.attrs.get("encoded_with", ds.attrs.get("model_id"))
    if weights.exists() and model_id:
        register(model_id, load_weights(weights))
    return ds
