"""Images larger than memory: dask-backed arrays, and a memory check before reading.

``load(path, lazy=True)`` returns a DataArray whose data is a dask array: the file's
metadata is read, its pixels only when a computation needs them, chunk by chunk. An
eager ``load`` first checks that the file fits in the memory that is free (`ensure_fits`):
a file too big gives a `DataError` that suggests ``lazy=True``, rather than a machine
that swaps or a process the OOM killer ends.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

from ..errors import DataError, SettingsError

__all__ = ["available_memory", "ensure_fits", "MEMORY_FRACTION", "as_lazy", "H5Array"]

#: An eager read may use at most this fraction of the free memory: training and the
#: input transforms need a few times the image's size on top of it.
MEMORY_FRACTION = 0.5


def available_memory() -> int:
    """Bytes of memory free for this process (psutil's ``available``)."""
    import psutil

    return int(psutil.virtual_memory().available)


def ensure_fits(nbytes: int, path) -> None:
    """Raise `DataError` when reading ``nbytes`` eagerly would not fit in memory.

    Examples
    --------
    >>> ensure_fits(1000, "small.npy")
    >>> ensure_fits(10 ** 18, "huge.zarr")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    phyvae_dash.errors.DataError: huge.zarr: reading it into memory needs 1000000000.0 GB...
    """
    free = available_memory()
    if nbytes > MEMORY_FRACTION * free:
        raise DataError(
            f"{path}: reading it into memory needs {nbytes / 1e9:.1f} GB, and only "
            f"{free / 1e9:.1f} GB is free; load it with load(path, lazy=True) (phyvae-dash "
            "fit --lazy): chunks are read when needed, fit and encode work block by block")


def file_size(path: Path) -> int:
    """Bytes on disk of a file, or of every file in a folder (Zarr)."""
    path = Path(path)
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def as_lazy(image: xr.DataArray, chunks=None) -> xr.DataArray:
    """``image`` backed by dask, chunked by ``chunks`` (dask's chunks argument, or a
    dict by dim name); ``None`` keeps the file's chunks, else dask's ``"auto"`` over
    ``y``/``x`` with the channel or spectral dim whole."""
    import dask.array as da

    if chunks is None and isinstance(image.data, da.Array):
        return image
    if chunks is None or chunks == "auto":
        chunks = {"y": "auto", "x": "auto", **{d: -1 for d in image.dims[2:]}}
    if isinstance(chunks, dict):
        unknown = set(chunks) - set(image.dims)
        if unknown:
            raise SettingsError(f"chunks names dims {sorted(unknown)} that the image lacks "
                                f"(its dims are {image.dims})")
        chunks = tuple(chunks.get(d, -1 if d not in ("y", "x") else "auto") for d in image.dims)
    if not isinstance(image.data, da.Array):
        return image.copy(data=da.from_array(image.data, chunks=chunks))
    return image.copy(data=image.data.rechunk(chunks))


class H5Array:
    """An HDF5 dataset that dask can read by slices, in threads or on other machines.

    An open ``h5py.Dataset`` cannot be pickled (sent to a dask worker); this holds the
    file's path and the dataset's name, and opens the file in each process on first use.
    """

    def __init__(self, path, name: str, shape, dtype):
        self.path, self.name = str(path), name
        self.shape, self.dtype, self.ndim = tuple(shape), np.dtype(dtype), len(shape)
        self._dataset = None

    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k != "_dataset"}

    def __setstate__(self, state):
        self.__dict__.update(state, _dataset=None)

    def __getitem__(self, key):
        if self._dataset is None:
            import h5py

            self._dataset = h5py.File(self.path, "r")[self.name]
        return self._dataset[key]
