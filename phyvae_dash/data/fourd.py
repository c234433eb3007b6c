"""4D-STEM data: a diffraction pattern ``(ky, kx)`` at every scan position ``(y, x)``.

:func:`read_4d` turns a 4D-STEM file into a ``DataArray`` with dims
``("y", "x", "ky", "kx")``: ``y``/``x`` are scan positions in length units, ``ky``/``kx``
detector coordinates in reciprocal units (``"mrad"``, ``"1/nm"``, ``"1/Å"``) where the file
has such a calibration, else ``"px"`` with ``attrs["detector_calibration"]`` saying why.
:func:`phyvae_dash.data.io.load` calls it first, so ``load`` reads 4D-STEM files too.

=====================================  ==============================================
file                                   reader
=====================================  ==============================================
``.mrc``, ``.blo``, ``.mib``, ``.hspy``, rosettasciio (lazily, then computed unless
``.zspy``, ``.emd``, ``.ser``/``.emi``, ``lazy=True``); a 3-D stack of patterns needs
``.dm3``/``.dm4``                       ``scan_shape=(ny, nx)``
``.h5``/``.hdf5``/``.emd`` (EMD 1.0,   h5py: a group with ``emd_group_type`` 1, a 4-D
py4DSTEM ``DataCube``)                 ``data`` and ``dim1`` ... ``dim4`` calibrations
``.npy``                               numpy (memory-mapped when ``lazy=True``); dims
                                       ``("y", "x", "ky", "kx")`` unless ``dims=``
``.zarr``                              a DataArray written by xarray with dims
                                       ``(y, x, ky, kx)``, or a bare 4-D Zarr array
=====================================  ==============================================

The rest of the module is the numerics a viewer of such data needs, all vectorised and
dask-friendly: :func:`virtual_image` (bright-field / annular dark-field detectors),
:func:`value_at` (the pattern or spectrum at a scan position) and :func:`selection_mean`
(the mean pattern or spectrum of a brushed region).
"""
from __future__ import annotations

import math
import re
import warnings
from pathlib import Path

import numpy as np
import xarray as xr

from ..errors import DataError, SettingsError
from .attrs import metadata_summary
from .units import clean_units, is_length, readable_length

__all__ = ["FOURD_DIMS", "RECIPROCAL_UNITS", "read_4d", "as_4d", "is_4d", "virtual_image",
           "bright_field_radius", "value_at", "selection_mean", "DETECTORS"]

FOURD_DIMS = ("y", "x", "ky", "kx")
#: Detector units taken as a diffraction calibration (after spelling clean-up).
RECIPROCAL_UNITS = ("mrad", "rad", "1/nm", "1/Å", "1/pm", "1/m")
DETECTORS = ("bf", "adf", "annular")
#: Options :func:`read_4d` takes that the other readers of ``load`` do not.
READER_OPTIONS = ("scan_shape", "lazy", "chunks")

_RSCIIO_4D = {".mrc": "rsciio.mrc", ".blo": "rsciio.blockfile", ".mib": "rsciio.quantumdetector",
              ".hspy": "rsciio.hspy", ".zspy": "rsciio.zspy", ".emd": "rsciio.emd",
              ".ser": "rsciio.tia", ".emi": "rsciio.tia", ".dm3": "rsciio.digitalmicrograph",
              ".dm4": "rsciio.digitalmicrograph"}
_HDF5 = (".h5", ".hdf5", ".hf5", ".emd")
# MRC data mode -> bytes per value (MRC2014 header word 4).
_MRC_MODE_BYTES = {0: 1, 1: 2, 2: 4, 3: 4, 4: 8, 6: 2, 12: 2}
_MIB_BYTES = {"U01": 1 / 8, "U08": 1, "U16": 2, "U32": 4, "R64": 8}


# --------------------------------------------------------------------------- reading


def read_4d(path, *, scan_shape=None, dims=None, lazy=False, chunks="auto",
            variable=None, **options) -> xr.DataArray | None:
    """Read a 4D-STEM file, or return None when the file holds no 4-D data.

    Parameters
    ----------
    path : str or pathlib.Path
        The file (a folder for ``.zarr``); formats in the module docstring.
    scan_shape : (int, int), optional
        ``(ny, nx)`` for files that store the patterns as one flat stack
        (``.mrc``/``.mib``/``.npy`` of shape ``(n, ky, kx)``), ``ny * nx == n``.
    dims : tuple of str, optional
        ``.npy``/Zarr: the array's dims when they are not ``("y", "x", "ky", "kx")``,
        e.g. ``("x", "y", "kx", "ky")``; they are transposed to the standard order.
    lazy : bool
        Keep the data dask-backed (rosettasciio/Zarr) or memory-mapped (``.npy``).
    chunks : str, int or tuple
        Dask chunks for ``lazy=True`` (rosettasciio's and Zarr's ``chunks``).
    variable : str, optional
        Zarr written by xarray: the variable to read.
    **options
        Passed to the rosettasciio reader.

    Returns
    -------
    xarray.DataArray or None
        Dims ``("y", "x", "ky", "kx")``; ``attrs``: ``source``, ``format``,
        ``signal_type`` (``"diffraction"``), ``scan_units``, ``detector_units``,
        ``detector_calibration`` (``"file"`` or why it is in pixels) and ``metadata``.

    Raises
    ------
    phyvae_dash.errors.DataError
        A truncated file or one whose size does not match its header, a stack of
        frames without ``scan_shape``, or a ``scan_shape`` that does not fit.

    Examples
    --------
    >>> import numpy as np, tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "scan.npy"
    >>> np.save(path, np.zeros((4, 5, 16, 12), dtype=np.uint16))
    >>> data = read_4d(path)
    >>> data.dims, data.shape, data.attrs["detector_calibration"]
    (('y', 'x', 'ky', 'kx'), (4, 5, 16, 12), 'none in the file: detector coordinates in pixels; detector not square (16 x 12)')
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if not path.exists():
        return None  # load() reports the missing file
    try:
        if suffix == ".npy":
            found = _read_numpy_4d(path, dims, scan_shape, lazy)
        elif suffix == ".zarr":
            found = _read_zarr_4d(path, dims, variable, lazy, chunks)
        elif suffix in _HDF5 and _is_emd1(path):
            found = _read_emd1(path, lazy)
        elif suffix in _RSCIIO_4D:
            _check_raw_size(path, suffix)
            found = _read_rsciio_4d(path, _RSCIIO_4D[suffix], scan_shape, lazy, chunks, options)
        else:
            return None
    except DataError:
        raise
    except Exception as err:  # a corrupt file can fail in any way inside a reader
        raise DataError(f"{path}: cannot read as 4D-STEM ({type(err).__name__}: {err})") from None
    if found is None:
        return None
    data, coords, fmt, metadata = found
    return _assemble(path, data, coords, fmt, metadata)


def as_4d(data, *, scan_step=1.0, scan_units="px", detector_step=1.0,
          detector_units="px", name="diffraction") -> xr.DataArray:
    """Wrap a 4-D numpy or dask array ``(y, x, ky, kx)`` as a labelled 4D-STEM DataArray.

    Examples
    --------
    >>> import numpy as np
    >>> da4 = as_4d(np.ones((2, 3, 8, 8)), scan_step=2.0, scan_units="nm",
    ...             detector_step=0.5, detector_units="mrad")
    >>> float(da4.kx[1] - da4.kx[0]), da4.kx.attrs["units"], da4.attrs["detector_calibration"]
    (0.5, 'mrad', 'file')
    """
    if getattr(data, "ndim", 0) != 4:
        raise DataError(f"4D-STEM data needs 4 dims (y, x, ky, kx), got shape {np.shape(data)}")
    ny, nx, nky, nkx = data.shape
    coords = {
        "y": (np.arange(ny) * scan_step, scan_units), "x": (np.arange(nx) * scan_step, scan_units),
        "ky": ((np.arange(nky) - nky // 2) * detector_step, detector_units),
        "kx": ((np.arange(nkx) - nkx // 2) * detector_step, detector_units),
    }
    out = _assemble(Path(name), data, coords, "array", {})
    out.attrs["source"] = ""
    return out


def is_4d(image) -> bool:
    """Whether ``image`` is 4D-STEM data (a DataArray with dims ``(y, x, ky, kx)``).

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> is_4d(xr.DataArray(np.zeros((2, 2, 4, 4)), dims=FOURD_DIMS))
    True
    """
    return isinstance(image, xr.DataArray) and tuple(image.dims) == FOURD_DIMS


def _assemble(path, data, coords, fmt, metadata) -> xr.DataArray:
    ny, nx, nky, nkx = data.shape
    xr_coords, notes = {}, []
    scan_units = clean_units(coords["y"][1]) or "px"
    for dim in ("y", "x"):
        values, units = coords[dim]
        values, units = np.asarray(values, float), clean_units(units) or "px"
        if is_length(units):
            values, units = readable_length(values, units)
        scan_units = units
        xr_coords[dim] = (dim, values, {"units": units, "long_name": f"scan {dim}"})
    detector_units = "px"
    k_units = [clean_units(coords[d][1]) for d in ("ky", "kx")]
    if all(u in RECIPROCAL_UNITS for u in k_units) and k_units[0] == k_units[1]:
        detector_units = k_units[0]
        calibration = "file"
    else:
        found = ", ".join(sorted({u or "(none)" for u in k_units}))
        calibration = ("none in the file: detector coordinates in pixels" if set(k_units) <= {"", "px"}
                       else f"the file gives detector units {found}, not a reciprocal unit: "
                            "detector coordinates in pixels")
    if nky != nkx:
        notes.append(f"detector not square ({nky} x {nkx})")
    for dim, n in (("ky", nky), ("kx", nkx)):
        values = np.asarray(coords[dim][0], float)
        if detector_units == "px":
            values = np.arange(n, dtype=float) - n // 2
        xr_coords[dim] = (dim, values, {"units": detector_units,
                                        "long_name": f"detector {dim[1]}"})
    attrs = {
        "source": str(path), "format": fmt, "signal_type": "diffraction",
        "scan_units": scan_units, "detector_units": detector_units,
        "detector_calibration": "; ".join([calibration, *notes]),
        "units": "counts", "long_name": "diffraction pattern",
        "metadata": metadata_summary(metadata or {}),
    }
    return xr.DataArray(data, dims=FOURD_DIMS, coords=xr_coords, name=path.stem or "diffraction",
                        attrs=attrs)


def _read_numpy_4d(path, dims, scan_shape, lazy):
    data = np.load(path, mmap_mode="r", allow_pickle=False)
    if data.ndim == 3 and scan_shape is not None:
        data = _unflatten(path, data, scan_shape)
    if data.ndim != 4:
        return None
    data, order = _reorder(path, data, dims)
    if not lazy:
        data = np.asarray(data)
    n = data.shape
    coords = {d: (np.arange(s, dtype=float), "px") for d, s in zip(FOURD_DIMS, n)}
    return data, coords, "numpy", {"dims_in_file": list(order)}


def _reorder(path, data, dims):
    order = tuple(dims) if dims is not None else FOURD_DIMS
    if sorted(order) != sorted(FOURD_DIMS) or len(order) != data.ndim:
        raise DataError(f"{path}: dims {order} do not fit a 4-D array of shape {data.shape}; "
                        f"give a permutation of {FOURD_DIMS}")
    return data.transpose([order.index(d) for d in FOURD_DIMS]), order


def _read_zarr_4d(path, dims, variable, lazy, chunks):
    import dask.array as dsa
    import zarr

    try:
        with warnings.catch_warnings():
            # Stores written without consolidated metadata are read all the same.
            warnings.filterwarnings("ignore", message=".*consolidated metadata.*")
            ds = xr.open_zarr(path, chunks=chunks if lazy else None)
    except Exception:  # a bare Zarr array, not an xarray store
        ds = None
    if ds is not None and ds.data_vars:
        names = [v for v in ds.data_vars if set(FOURD_DIMS) <= set(ds[v].dims)]
        if variable is not None:
            names = [variable] if variable in names else []
        if not names:
            return None
        da = ds[names[0]].transpose(*FOURD_DIMS)
        data = da.data if lazy else da.values
        coords = {d: (da[d].values if d in da.coords else np.arange(da.sizes[d]),
                      da[d].attrs.get("units", "px") if d in da.coords else "px")
                  for d in FOURD_DIMS}
        return data, coords, "Zarr", {"variable": names[0]}
    array = zarr.open_array(str(path), mode="r")
    if array.ndim != 4:
        return None
    data = dsa.from_zarr(array, chunks=chunks if lazy else None)
    data, order = _reorder(path, data, dims)
    if not lazy:
        data = data.compute()
    coords = {d: (np.arange(s, dtype=float), "px") for d, s in zip(FOURD_DIMS, data.shape)}
    return data, coords, "Zarr", {"dims_in_file": list(order)}


def _is_emd1(path) -> bool:
    import h5py

    try:
        with h5py.File(path, "r") as h5:
            return _emd1_datacube(h5) is not None
    except OSError:
        return False


def _emd1_datacube(h5):
    """The first EMD 1.0 array group holding 4-D ``data`` (py4DSTEM's DataCube)."""
    import h5py

    found = []

    def visit(name, obj):
        if isinstance(obj, h5py.Group) and str(obj.attrs.get("emd_group_type", "")) in ("1", "array"):
            if "data" in obj and getattr(obj["data"], "ndim", 0) == 4:
                found.append(name)
                return True
        return None

    h5.visititems(visit)
    return found[0] if found else None


def _read_emd1(path, lazy):
    import h5py

    with h5py.File(path, "r") as h5:
        group = h5[_emd1_datacube(h5)]
        dataset = group["data"]
        shape = dataset.shape
        if lazy:
            import dask.array as dsa

            h5_lazy = h5py.File(path, "r")  # stays open for dask, as rosettasciio's lazy does
            data = dsa.from_array(h5_lazy[group.name]["data"], chunks=(16, 16, -1, -1))
        else:
            data = dataset[()]
        coords = {}
        for k, dim in enumerate(FOURD_DIMS, start=1):
            n = shape[k - 1]
            node = group.get(f"dim{k}")
            values, units = np.arange(n, dtype=float), "px"
            if node is not None:
                raw = np.asarray(node[()], float).ravel()
                units = _text(node.attrs.get("units", "px"))
                # EMD 1.0 stores a linear axis as its first two values (emdfile's Array).
                if raw.size == n:
                    values = raw
                elif raw.size >= 2:
                    values = raw[0] + (raw[1] - raw[0]) * np.arange(n)
            coords[dim] = (values, units)
        metadata = {"group": group.name, "emd_version": "1.0",
                    **{k: _text(v) for k, v in group.attrs.items()}}
    return data, coords, "EMD 1.0 (py4DSTEM)", metadata


def _read_rsciio_4d(path, plugin, scan_shape, lazy, chunks, options):
    from importlib import import_module

    reader = import_module(plugin).file_reader
    kwargs = dict(options)
    if scan_shape is not None and path.suffix.lower() in (".mrc", ".mib"):
        kwargs["navigation_shape"] = tuple(int(v) for v in scan_shape)[::-1]  # hyperspy: (x, y)
    signals = reader(str(path), lazy=True, **kwargs)
    for signal in signals:
        data = signal["data"]
        axes = sorted(signal["axes"], key=lambda ax: ax.get("index_in_array", 0))
        nav = [bool(ax.get("navigate", False)) for ax in axes]
        if data.ndim == 3 and sum(nav) <= 1 and not nav[-1] and not nav[-2]:
            if scan_shape is None:
                raise DataError(
                    f"{path}: holds a stack of {data.shape[0]} frames of {data.shape[1]} x "
                    f"{data.shape[2]} pixels: a tilt or time series, or a 4D-STEM scan stored "
                    "flat. For 4D-STEM give the scan, load(path, scan_shape=(ny, nx)); to use "
                    "one frame as an image, select it from the array yourself")
            data = _unflatten(path, data, scan_shape)
            axes = [{"name": "y", "units": "px"}, {"name": "x", "units": "px"}, *axes[1:]]
        elif data.ndim != 4:
            continue
        elif sum(nav[:2]) != 2 and any(nav):
            data = data.transpose([i for i in range(4) if nav[i]] + [i for i in range(4) if not nav[i]])
            axes = [axes[i] for i in range(4) if nav[i]] + [axes[i] for i in range(4) if not nav[i]]
        coords = {}
        for dim, ax, n in zip(FOURD_DIMS, axes, data.shape):
            if "axis" in ax:
                values = np.asarray(ax["axis"], float)
            else:
                values = ax.get("offset", 0.0) + ax.get("scale", 1.0) * np.arange(n)
            coords[dim] = (values, ax.get("units") or "px")
        if not lazy:
            data = data.compute() if hasattr(data, "compute") else np.asarray(data)
        elif chunks != "auto" and hasattr(data, "rechunk"):
            data = data.rechunk(chunks)
        title = str(signal.get("metadata", {}).get("General", {}).get("title", ""))
        fmt = f"rosettasciio:{plugin.split('.')[-1]}"
        return data, coords, fmt, {"title": title, "original_metadata": signal.get("original_metadata", {})}
    return None


def _unflatten(path, data, scan_shape):
    ny, nx = (int(v) for v in scan_shape)
    if ny * nx != data.shape[0]:
        raise DataError(f"{path}: scan_shape {(ny, nx)} holds {ny * nx} patterns but the file "
                        f"has {data.shape[0]}")
    return data.reshape(ny, nx, *data.shape[1:])


def _check_raw_size(path, suffix):
    """Refuse truncated or mis-sized ``.mrc``/``.mib`` files before a reader memory-maps them.

    A memory map of a short file fails late (on first access, or inside dask) or reads
    garbage; the header says how many bytes the data take, so compare.
    """
    size = path.stat().st_size
    if suffix == ".mrc":
        if size < 1024:
            raise DataError(f"{path}: {size} bytes is shorter than the 1024-byte MRC header "
                            "(the file is truncated or not MRC)")
        with open(path, "rb") as f:
            head = np.frombuffer(f.read(1024), dtype="<i4")
        nx, ny, nz, mode = (int(v) for v in head[:4])
        extended = int(head[23])
        if mode not in _MRC_MODE_BYTES or min(nx, ny, nz) < 1 or extended < 0:
            raise DataError(f"{path}: not a valid MRC header (size {nx} x {ny} x {nz}, mode "
                            f"{mode})")
        expected = 1024 + extended + nx * ny * nz * _MRC_MODE_BYTES[mode]
        if size != expected:
            what = "truncated" if size < expected else "longer than its header says"
            raise DataError(f"{path}: MRC file {what}: the header announces {nx} x {ny} x {nz} "
                            f"values of mode {mode} ({expected} bytes), the file has {size}")
    elif suffix == ".mib":
        with open(path, "rb") as f:
            head = f.read(384).decode("ascii", errors="replace")
        fields = head.split(",")
        if len(fields) < 7 or not fields[0].startswith("MQ1"):
            raise DataError(f"{path}: not a Merlin .mib file (no MQ1 header)")
        try:
            header_bytes, width, height = int(fields[2]), int(fields[4]), int(fields[5])
            depth = _MIB_BYTES[fields[6].strip()]
        except (ValueError, KeyError):
            raise DataError(f"{path}: unreadable Merlin .mib header {head[:60]!r}") from None
        frame = header_bytes + int(math.ceil(width * height * depth))
        if size % frame:
            raise DataError(f"{path}: truncated or mis-sized Merlin .mib file: {size} bytes is "
                            f"not a whole number of {frame}-byte frames ({width} x {height}, "
                            f"{fields[6].strip()}, {header_bytes}-byte headers)")


# --------------------------------------------------------------------------- numerics


def _scan_axes_first(data: xr.DataArray):
    if tuple(data.dims[:2]) != ("y", "x"):
        raise DataError(f"expected data with dims ('y', 'x', ...), got {data.dims}")


def bright_field_radius(pattern: xr.DataArray) -> float:
    """Radius of the bright-field disk of a (mean) pattern, in detector coordinates.

    The disk is the connected bright region around the brightest pixel above half of
    the pattern's maximum (after a light blur); its radius is ``sqrt(area / pi)``.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> yy, xx = np.mgrid[-16:16, -16:16]
    >>> disk = xr.DataArray((np.hypot(yy, xx) < 5).astype(float), dims=("ky", "kx"),
    ...                     coords={"ky": np.arange(-16, 16), "kx": np.arange(-16, 16)})
    >>> round(bright_field_radius(disk))
    5
    """
    from scipy import ndimage

    p = ndimage.gaussian_filter(np.asarray(pattern, dtype=np.float64), 0.7)
    mask = p > 0.5 * p.max()
    parts, _ = ndimage.label(mask)
    centre = np.unravel_index(int(np.argmax(p)), p.shape)
    area = float(np.sum(parts == parts[centre]))
    step = float(abs(pattern["kx"][1] - pattern["kx"][0])) if pattern.sizes["kx"] > 1 else 1.0
    return math.sqrt(area / math.pi) * step


def virtual_image(data: xr.DataArray, detector: str = "adf", inner=None, outer=None,
                  centre=None) -> xr.DataArray:
    """The image a virtual detector would record: pattern intensity summed over a region.

    Parameters
    ----------
    data : xarray.DataArray
        4D-STEM data ``(y, x, ky, kx)`` (numpy- or dask-backed; dask stays lazy until
        the result is computed).
    detector : {"adf", "bf", "annular"}
        ``"bf"``: a disk of radius ``outer`` (default the bright-field disk radius of
        the mean pattern). ``"adf"``: an annulus from ``inner`` (default 1.2 x the
        bright-field radius) to ``outer`` (default the detector edge). ``"annular"``:
        ``inner`` to ``outer``, both required.
    inner, outer : float, optional
        Radii in the detector coordinates (``ky``/``kx`` units: mrad, 1/nm or px).
    centre : (float, float), optional
        ``(ky, kx)`` of the detector centre; default the centre of mass of the mean
        pattern's bright-field disk.

    Returns
    -------
    xarray.DataArray
        ``(y, x)``, float, with ``attrs`` ``detector``, ``inner``, ``outer``, ``centre``
        and ``units`` (the detector units of the radii).

    Examples
    --------
    >>> import numpy as np
    >>> from phyvae_dash.data.synthetic_spectral import diffraction_grains
    >>> ds = diffraction_grains(scan_shape=(8, 8), detector=32, seed=0)
    >>> adf = virtual_image(ds.image, "adf")
    >>> adf.dims, adf.attrs["detector"]
    (('y', 'x'), 'adf')
    """
    if not is_4d(data):
        raise DataError(f"virtual_image needs 4D-STEM data (y, x, ky, kx), got {data.dims}")
    if detector not in DETECTORS:
        raise SettingsError(f"detector must be one of {DETECTORS}, not {detector!r}")
    mean = _mean_pattern(data)
    ky, kx = np.asarray(data.ky, float), np.asarray(data.kx, float)
    if centre is None:
        centre = _disk_centre(mean, ky, kx)
    rr = np.hypot(ky[:, None] - centre[0], kx[None, :] - centre[1])
    edge = float(min(ky.max() - centre[0], centre[0] - ky.min(), kx.max() - centre[1],
                     centre[1] - kx.min()))
    if detector == "bf":
        outer = float(outer) if outer is not None else bright_field_radius(mean)
        inner = 0.0
    elif detector == "adf":
        inner = float(inner) if inner is not None else 1.2 * bright_field_radius(mean)
        outer = float(outer) if outer is not None else edge
    elif inner is None or outer is None:
        raise SettingsError("detector='annular' needs both inner and outer radii")
    inner, outer = float(inner), float(outer)
    if not 0 <= inner < outer:
        raise SettingsError(f"virtual detector radii must satisfy 0 <= inner < outer, got "
                            f"inner={inner}, outer={outer}")
    mask = xr.DataArray(((rr >= inner) & (rr < outer)).astype(np.float32), dims=("ky", "kx"))
    image = xr.dot(_small_blocks(data).astype(np.float32), mask, dim=("ky", "kx"))
    image.name = f"{detector}"
    image.attrs = {"detector": detector, "inner": inner, "outer": outer,
                   "centre": [float(c) for c in centre], "units": str(data.kx.attrs.get("units", "px")),
                   "long_name": f"virtual {detector.upper()} image", "source": str(data.attrs.get("source", ""))}
    for dim in ("y", "x"):
        image[dim].attrs = dict(data[dim].attrs)
    return image


def value_at(data: xr.DataArray, y: float, x: float) -> xr.DataArray:
    """The pattern (4D-STEM) or spectrum (EELS) at the scan position nearest ``(y, x)``.

    ``y``/``x`` are in the scan's coordinates (its ``units``), as a click on an image
    gives them.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> data = xr.DataArray(np.arange(2 * 3 * 4.).reshape(2, 3, 4), dims=("y", "x", "energy"),
    ...                     coords={"y": [0., 10.], "x": [0., 10., 20.]})
    >>> value_at(data, 9.0, 19.0).values.tolist()
    [20.0, 21.0, 22.0, 23.0]
    """
    _scan_axes_first(data)
    picked = data.sel(y=y, x=x, method="nearest")
    return picked.compute() if hasattr(picked.data, "compute") else picked


def selection_mean(data: xr.DataArray, mask) -> xr.DataArray:
    """Mean pattern or spectrum over the scan positions where ``mask`` is True.

    Parameters
    ----------
    data : xarray.DataArray
        ``(y, x, ky, kx)`` or ``(y, x, energy)`` (any trailing dims).
    mask : array-like of bool or xarray.DataArray
        ``(y, x)`` selection (a brushed region).

    Returns
    -------
    xarray.DataArray
        The trailing dims, with ``attrs["n_positions"]``.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> data = xr.DataArray(np.arange(2 * 2 * 3.).reshape(2, 2, 3), dims=("y", "x", "energy"))
    >>> selection_mean(data, np.array([[True, False], [False, True]])).values.tolist()
    [4.5, 5.5, 6.5]
    """
    _scan_axes_first(data)
    mask = xr.DataArray(np.asarray(mask, dtype=bool), dims=("y", "x"))
    if mask.shape != (data.sizes["y"], data.sizes["x"]):
        raise DataError(f"selection mask of shape {mask.shape} does not fit the scan "
                        f"{(data.sizes['y'], data.sizes['x'])}")
    n = int(mask.sum())
    if n == 0:
        raise DataError("the selection holds no scan positions")
    weights = mask.astype(np.float32) / n
    out = xr.dot(data.astype(np.float32), weights, dim=("y", "x"))
    out = out.compute() if hasattr(out.data, "compute") else out
    out.attrs = {**{k: v for k, v in data.attrs.items() if k in ("units", "signal_type")},
                 "n_positions": n}
    return out


def _small_blocks(data: xr.DataArray, values: int = 2 ** 21) -> xr.DataArray:
    """Dask-backed data rechunked to blocks of about ``values`` detector values, so that
    the float copies made while reducing a block stay small; numpy data as it is."""
    if not hasattr(data.data, "dask"):
        return data
    per_pattern = data.sizes["ky"] * data.sizes["kx"]
    cols = int(min(data.sizes["x"], max(1, values // per_pattern)))
    rows = int(min(data.sizes["y"], max(1, values // (cols * per_pattern))))
    return data.chunk({"y": rows, "x": cols, "ky": -1, "kx": -1})


def _mean_pattern(data: xr.DataArray, max_positions: int = 1024) -> xr.DataArray:
    """Mean pattern over (a regular subsample of) the scan positions."""
    step = max(1, int(math.ceil(math.sqrt(data.sizes["y"] * data.sizes["x"] / max_positions))))
    mean = _small_blocks(data)[::step, ::step].astype(np.float64).mean(("y", "x"))
    return mean.compute() if hasattr(mean.data, "compute") else mean


def _disk_centre(mean: xr.DataArray, ky, kx) -> tuple[float, float]:
    p = np.asarray(mean, float)
    mask = p > 0.5 * p.max()
    w = np.where(mask, p, 0.0)
    total = w.sum()
    return float((w.sum(axis=1) @ ky) / total), float((w.sum(axis=0) @ kx) / total)


# --------------------------------------------------------------------------- helpers


def _text(value) -> str:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, np.ndarray) and value.size == 1:
        return _text(value.item())
    return str(value)
