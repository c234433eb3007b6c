"""From images to latent maps with a trained model: in memory, or block by block on dask.

`encode_image` is the single place where inputs become latent maps: `fit` uses it for
its final maps, ``result.pvd.encode`` for other images. A NumPy-backed image is encoded
in memory (`features.prepare_inputs`, then `encode_all`); a dask-backed one (``load(...,
lazy=True)``) block by block with `dask.array.map_overlap` (see `blockwise`): the
statistics of the whole scan are gathered first by per-chunk reductions, the model's
weights go into the graph once as a `dask.delayed` key (each worker rebuilds the model
once, on its GPU when it has one), and the result is a dask-backed Dataset whose
``to_zarr``/``to_netcdf`` writes chunk by chunk.
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np
import torch
import xarray as xr

from ..errors import DataError, SettingsError

__all__ = ["as_image", "is_lazy", "encode_all", "latent_dataset", "encode_image",
           "encode_chunked"]


def as_image(image) -> xr.DataArray:
    """``image`` as a DataArray ``(y, x[, channel or spectral])`` or 4D-STEM
    ``(y, x, ky, kx)`` (NumPy arrays of 2 or 3 dims are wrapped as ``(y, x[, channel])``).

    Examples
    --------
    >>> as_image(np.zeros((4, 5))).dims
    ('y', 'x')
    """
    if isinstance(image, np.ndarray):
        if image.ndim not in (2, 3):
            raise SettingsError(f"image must be 2-D or 3-D, got shape {image.shape}")
        dims = ("y", "x") if image.ndim == 2 else ("y", "x", "channel")
        image = xr.DataArray(image, dims=dims)
    if not isinstance(image, xr.DataArray):
        raise SettingsError(f"image must be an xarray.DataArray, got {type(image).__name__}")
    if image.ndim == 4 and image.dims == ("y", "x", "ky", "kx"):
        return image  # 4D-STEM: a diffraction pattern per scan position
    if image.ndim not in (2, 3) or image.dims[:2] != ("y", "x"):
        raise SettingsError(f"image must have dims ('y', 'x'[, channel]) or ('y', 'x', 'ky', "
                            f"'kx'), got {image.dims}")
    return image


def is_lazy(obj) -> bool:
    """Whether a DataArray/Dataset holds dask arrays (``load(..., lazy=True)``)."""
    variables = obj.data_vars.values() if isinstance(obj, xr.Dataset) else [obj]
    return any(v.chunks is not None for v in variables)


@torch.no_grad()
def encode_all(model, data: torch.Tensor, chunk: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior means and stds of every input, in chunks (no gradients)."""
    mus, stds = [], []
    for i in range(0, data.shape[0], chunk):
        mu, std = model.encode(data[i:i + chunk])
        mus.append(mu.float())
        stds.append(std.float())
    return torch.cat(mus), torch.cat(stds)


def _outputs(model) -> list[tuple[str, tuple[str, ...], dict, int]]:
    """The variables of a latent Dataset: (name, leading dim, attrs, count)."""
    L = model.latent_dim
    out = [("z_mean", ("latent",), {"long_name": "latent mean", "units": "prior std"}, L),
           ("z_std", ("latent",), {"long_name": "latent std", "units": "prior std"}, L)]
    pose = model.pose_units(torch.zeros(1, model.n_pose)) if model.n_pose else {}
    if "shift" in pose:
        out.append(("shift", ("shift_dim",), {"long_name": "translation latent", "units": "px"},
                    pose["shift"].shape[-1]))
    if "angle" in pose:
        out.append(("angle", (), {"long_name": "rotation latent", "units": "rad"}, 1))
    return out


def _stack_outputs(model, mu: torch.Tensor, std: torch.Tensor) -> np.ndarray:
    """``(n, K)``: content means, content stds, then the pose in physical units."""
    L = model.latent_dim
    parts = [mu[:, :L], std[:, :L]]
    pose = model.pose_units(mu[:, L:]) if model.n_pose else {}
    if "shift" in pose:
        parts.append(pose["shift"])
    if "angle" in pose:
        parts.append(pose["angle"][:, None])
    return torch.cat([p.float() for p in parts], dim=1).cpu().numpy()


def _assemble(model, values, y, x) -> xr.Dataset:
    """Dataset of latent maps from ``values`` ``(n_y, n_x, K)`` (NumPy or dask)."""
    ds = xr.Dataset(coords={"latent": np.arange(model.latent_dim), "y": y, "x": x})
    start = 0
    for name, lead, attrs, count in _outputs(model):
        block = values[:, :, start:start + count]
        start += count
        if lead:
            ds[name] = (lead + ("y", "x"), block.transpose(2, 0, 1), attrs)
        else:
            ds[name] = (("y", "x"), block[:, :, 0], attrs)
    if "shift" in ds:
        ds = ds.assign_coords(shift_dim=["dy", "dx"] if ds.sizes["shift_dim"] == 2 else ["d"])
    return ds


def latent_dataset(model, mu: torch.Tensor, std: torch.Tensor, y, x) -> xr.Dataset:
    """Dataset of latent maps from per-position posteriors ``(n_y * n_x, n_latents)``."""
    values = _stack_outputs(model, mu.detach(), std.detach())
    return _assemble(model, values.reshape(len(y), len(x), -1), y, x)


def encode_image(model, image: xr.DataArray, settings: dict, *, scheduler=None,
                 device: str = "auto") -> xr.Dataset:
    """Latent maps of ``image`` with ``model`` and a result's ``settings`` (its attrs).

    A dask-backed image goes to `encode_chunked`; a NumPy-backed one is encoded in
    memory. Returns the latent variables only (no attrs).
    """
    from .features import prepare_inputs

    image = as_image(image)
    patch_size, stride = int(settings["patch_size"]), int(settings["stride"])
    if is_lazy(image):
        return encode_chunked(model, image, patch_size, stride, settings["transform"],
                              scheduler=scheduler, device=device)
    inputs = prepare_inputs(image, patch_size, stride, transform=settings["transform"])
    mu, std = encode_all(model, model_inputs(model, inputs))
    return latent_dataset(model, mu, std, inputs.y, inputs.x)


def model_inputs(model, inputs) -> torch.Tensor:
    """``inputs.data`` (`features.Inputs`) as a flat batch on the model's device, after
    checking that it has the shape the model was trained on."""
    shape = tuple(inputs.data.shape[2:])
    _check_shape(shape, model)
    dev = next(model.parameters()).device
    return torch.from_numpy(np.ascontiguousarray(inputs.data.reshape(-1, *shape), dtype=np.float32)).to(dev)


def _check_shape(shape, model) -> None:
    if tuple(shape) != tuple(model.input_shape):
        raise DataError(f"this image gives inputs of shape {tuple(shape)}, the model takes "
                        f"{tuple(model.input_shape)} (different channels or settings)")


# -- block by block ----------------------------------------------------------------------
#: Models rebuilt from weights in this process (a dask worker keeps its own copy per fit).
_WORKER_MODELS: "OrderedDict[tuple, torch.nn.Module]" = OrderedDict()


def weights_token(model) -> str:
    """A hash of the model's config and weights (safetensors bytes are not a stable key:
    the order of their metadata varies from call to call)."""
    import hashlib
    import json

    digest = hashlib.sha1(json.dumps(model.config, sort_keys=True).encode())
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _worker_model(weights: bytes, token: str, device: str):
    """The model behind ``weights``, built once per process and device."""
    from .device import pick_device
    from .weights import model_from_bytes

    key = (token, device)
    if key not in _WORKER_MODELS:
        _WORKER_MODELS[key] = model_from_bytes(weights).to(pick_device(device))
        while len(_WORKER_MODELS) > 4:
            _WORKER_MODELS.popitem(last=False)
    _WORKER_MODELS.move_to_end(key)
    return _WORKER_MODELS[key]


def _encode_block(pixels, like, patch_size, stride, stats, weights, weights_id, device):
    from .blockwise import block_inputs

    model = _worker_model(weights, weights_id, device)
    inputs = block_inputs(pixels, like, patch_size, stride, stats)
    n_y, n_x = inputs.shape[:2]
    dev = next(model.parameters()).device
    data = torch.from_numpy(inputs.reshape(n_y * n_x, *inputs.shape[2:])).to(dev)
    with torch.no_grad():
        mu, std = encode_all(model, data)
    return _stack_outputs(model, mu, std).reshape(n_y, n_x, -1)


def encode_chunked(model, image: xr.DataArray, patch_size: int, stride: int,
                   transform: str, *, stats=None, scheduler=None,
                   device: str = "auto") -> xr.Dataset:
    """Latent maps of a (dask-backed) image, block by block: a dask-backed Dataset.

    Parameters
    ----------
    model : BaseVAE
        The trained model.
    image : xarray.DataArray
        NumPy-backed images are wrapped into dask arrays (their chunks do not matter:
        blocks are re-cut to about `blockwise.POSITIONS_PER_BLOCK` positions each).
    patch_size, stride : int
        The fit's settings.
    transform : str
        The fit's resolved transform (``attrs["transform"]``).
    stats : blockwise.ScanStatistics, optional
        Default: `blockwise.scan_statistics` of ``image`` (computed now, with
        ``scheduler``), as the in-memory encoder does.
    scheduler : optional
        A dask scheduler for the statistics pass (see `cluster.compute_kwargs`);
        the returned Dataset is computed (or written) with whatever scheduler is active.
    device : str
        Where workers run the model: ``"auto"`` picks each worker's GPU if it has one.

    Returns
    -------
    xarray.Dataset
        Like `latent_dataset`'s, with dask arrays chunked like the blocks.

    Examples
    --------
    >>> import phyvae_dash as pvd
    >>> img = xr.DataArray(np.random.default_rng(0).random((40, 40)), dims=("y", "x"))
    >>> result = pvd.fit(img, patch_size=8, stride=2, epochs=1, transform="patch")
    >>> lazy = result.pvd.encode(img.chunk(16))
    >>> lazy.z_mean.chunks is not None
    True
    >>> bool(abs(lazy.z_mean - result.pvd.encode(img).z_mean).max() < 1e-5)
    True
    """
    import dask

    from .weights import weights_to_bytes
    from ..data.patches import patch_centres
    from .blockwise import block_inputs, map_positions, scan_statistics, template
    from .cluster import compute_kwargs

    image = as_image(image)
    if stats is None:
        with compute_kwargs(scheduler) as kw:
            stats = scan_statistics(image, patch_size, stride, transform, **kw)
    like = template(image)
    probe = np.zeros((patch_size, patch_size, image.shape[2] if image.ndim == 3 else 1))
    _check_shape(block_inputs(probe, like, patch_size, 1, stats).shape[2:], model)
    token = weights_token(model)
    # One key for the weights, named by their content: every block of every file that
    # this model encodes depends on it, so a worker receives it once.
    weights = dask.delayed(weights_to_bytes(model), name=f"model-weights-{token}")
    n_out = sum(count for *_, count in _outputs(model))
    values = map_positions(image, patch_size, stride, _encode_block, n_out, like=like,
                           stats=stats, weights=weights, weights_id=token, device=device)
    coords = patch_centres(image, patch_size, stride)
    return _assemble(model, values, coords["y"], coords["x"])
