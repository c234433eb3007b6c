"""Many files, one model: `encode_many` encodes every file on a dask scheduler.

Each file is opened lazily and encoded block by block (`encode.encode_chunked`); all
the files' writes go to the scheduler as one computation, so a cluster works on many
files at once. The model's weights are one key of that graph (the same `dask.delayed`
for every file): each worker receives them once and builds the model once, on its GPU
when it has one. A worker that dies is replaced and its tasks rerun by dask
(``distributed``'s ``allowed_failures``); the writes are idempotent.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DataError

__all__ = ["encode_many", "zarr_attrs"]


def zarr_attrs(attrs: dict) -> dict:
    """attrs as JSON values (Zarr keeps lists as lists, unlike NetCDF).

    Examples
    --------
    >>> zarr_attrs({"a": (1, 2), "b": True, "c": None, "d": np.float32(0.5)})
    {'a': [1, 2], 'b': 1, 'c': '', 'd': 0.5}
    """
    out = {}
    for k, v in attrs.items():
        if isinstance(v, (bool, np.bool_)):
            v = int(v)
        elif v is None:
            v = ""
        elif isinstance(v, (list, tuple, np.ndarray)):
            v = [e.item() if isinstance(e, np.generic) else e for e in list(v)]
        elif isinstance(v, np.generic):
            v = v.item()
        elif not isinstance(v, (int, float, str)):
            v = str(v)
        out[k] = v
    return out


def encode_many(paths, result, out_dir, *, scheduler=None, channel=None, chunks=None,
                device: str = "auto", progress: bool = True) -> list[Path]:
    """Encode every file with one trained model; write ``<out_dir>/<stem>.zarr`` each.

    Parameters
    ----------
    paths : iterable of str or Path
        Microscopy files (any format `load` reads; Zarr, NetCDF and NSID HDF5 are read
        chunk by chunk on the workers).
    result : xarray.Dataset, str or Path
        A `fit` result, or the path of one saved with `persist.save` (its weights
        beside it).
    out_dir : str or Path
        Folder for the Zarr stores (created).
    scheduler : optional
        ``None`` (dask's default: an active Client, else threads), a name
        (``"threads"``, ``"processes"``), an address ``"tcp://host:8786"`` or a
        ``distributed.Client`` / ``LocalCluster`` (see `cluster.compute_kwargs`).
    channel, chunks
        Passed to ``load(path, lazy=True, ...)``.
    device : str
        Where the workers run the model (``"auto"``: their GPU if they have one).
    progress : bool
        A tqdm bar over the files (with a cluster: also its dashboard link).

    Returns
    -------
    list of Path
        The Zarr stores, in the order of ``paths``; ``open_result(path)`` reads one.

    Examples
    --------
    >>> import tempfile, numpy as np, xarray as xr, phyvae_dash as pvd
    >>> folder = tempfile.mkdtemp()
    >>> img = xr.DataArray(np.random.default_rng(0).random((32, 32)), dims=("y", "x"))
    >>> np.save(folder + "/a.npy", img.values)
    >>> result = pvd.fit(img, patch_size=8, stride=4, epochs=1, transform="patch")
    >>> out = encode_many([folder + "/a.npy"], result, folder + "/out", progress=False)
    >>> pvd.open_result(out[0]).z_mean.shape
    (2, 7, 7)
    """
    import dask

    from ..data.io import load
    from .cluster import client_of, compute_kwargs
    from .persist import open_result

    paths = [Path(p) for p in paths]
    if not paths:
        raise DataError("encode_many got no files")
    if isinstance(result, (str, Path)):
        result = open_result(result)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stems = [p.stem for p in paths]
    if len(set(stems)) != len(stems):
        raise DataError(f"files with the same name would overwrite each other in {out_dir}: "
                        f"{sorted({s for s in stems if stems.count(s) > 1})}")
    targets = [out_dir / f"{stem}.zarr" for stem in stems]
    with compute_kwargs(scheduler) as kw:
        client = client_of(kw)
        if progress and client is not None:
            print(f"dask dashboard: {client.dashboard_link}")
        writes = []
        for path, target in zip(paths, targets):
            image = load(path, channel=channel, lazy=True, chunks=chunks)
            ds = result.pvd.encode(image, scheduler=kw.get("scheduler"), device=device)
            ds.attrs = zarr_attrs({**ds.attrs, "image_source": str(path)})
            writes.append(ds.to_zarr(target, mode="w", compute=False))
        if client is not None:
            _run_on_cluster(client, writes, progress)
        elif progress:
            from tqdm.dask import TqdmCallback

            with TqdmCallback(desc=f"encoding {len(paths)} files"):
                dask.compute(*writes, **kw)
        else:
            dask.compute(*writes, **kw)
    return targets


def _run_on_cluster(client, writes, progress: bool) -> None:
    """Submit every file's write at once; a bar ticks as files finish."""
    from distributed import as_completed
    from tqdm.auto import tqdm

    futures = client.compute(writes)
    with tqdm(total=len(futures), desc="files encoded", unit="file", disable=not progress) as bar:
        for future in as_completed(futures):
            future.result()  # re-raises a task's error here
            bar.update()
