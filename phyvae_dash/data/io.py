"""Microscopy files to labelled ``xarray.DataArray`` images: one entry point, :func:`load`.

Every reader below turns a file into a list of :class:`_Channel` records (an array with
dims ``(y, x[, spectral])``, its coordinates with units, its name and a metadata dict);
:func:`load` then picks channels, stacks them, checks for NaN/Inf and writes the
NetCDF-safe ``attrs``. Readers never leak their own exceptions: anything that goes wrong
inside a third-party reader becomes a :class:`~phyvae_dash.errors.DataError` that names
the file.

Supported formats
-----------------
=====================================  ==============================================
extension                              reader
=====================================  ==============================================
``.h5``, ``.hdf5``, ``.hf5``           pycroscopy NSID (pyNSID/sidpy), USID (pyUSID),
                                       HyperSpy/EMD HDF5 (rosettasciio)
``.dm3``, ``.dm4``, ``.emd``,          rosettasciio, plugin chosen by extension
``.hspy``, ``.mrc``, ``.ser``, ...
``.tif``, ``.tiff``                    tifffile (ImageJ / centimetre resolution tags)
``.png``, ``.jpg``, ``.jpeg``, ...     imageio; RGB becomes grayscale (luminance)
                                       unless ``rgb="channels"``
``.npy``, ``.npz``                     numpy, never unpickling; a ``<stem>.json``
                                       sidecar may give the field of view
``.nc``, ``.zarr``                     xarray (files written by xarray)
``.ibw``                               igor2: Igor Pro binary waves, as Asylum Research
                                       AFM/PFM microscopes write them (layers are the
                                       channels; the wave note goes to ``attrs``)
=====================================  ==============================================
"""
from __future__ import annotations

import json
import math
import re
import warnings
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import xarray as xr

from ..errors import DataError, SettingsError
from . import fourd
from .attrs import flatten_metadata, metadata_summary
from .lazy import H5Array, as_lazy, ensure_fits, file_size
from .units import clean_units, is_length, readable_length

__all__ = ["load", "list_channels", "FILL_NAN_METHODS", "SUPPORTED_EXTENSIONS"]

FILL_NAN_METHODS = ("mean", "median", "interpolate")
HDF5_EXTENSIONS = (".h5", ".hdf5", ".hf5")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
TIFF_EXTENSIONS = (".tif", ".tiff")
NUMPY_EXTENSIONS = (".npy", ".npz")
XARRAY_EXTENSIONS = (".nc", ".zarr")
IGOR_EXTENSIONS = (".ibw",)
# rosettasciio plugins by extension; ambiguous ones (.h5, .tif, images, .npy, .nc) are
# handled above with more specific readers.
RSCIIO_PLUGINS = {
    ".dm3": "rsciio.digitalmicrograph", ".dm4": "rsciio.digitalmicrograph",
    ".emd": "rsciio.emd", ".hspy": "rsciio.hspy", ".zspy": "rsciio.zspy",
    ".mrc": "rsciio.mrc", ".mrcz": "rsciio.mrcz", ".ser": "rsciio.tia",
    ".emi": "rsciio.tia", ".blo": "rsciio.blockfile", ".unf": "rsciio.semper",
    ".bcf": "rsciio.bruker", ".sur": "rsciio.digitalsurf", ".pro": "rsciio.digitalsurf",
    ".prz": "rsciio.pantarhei", ".rpl": "rsciio.ripple", ".wdf": "rsciio.renishaw",
    ".nxs": "rsciio.nexus", ".tvips": "rsciio.tvips", ".mib": "rsciio.quantumdetector",
}
SUPPORTED_EXTENSIONS = tuple(sorted(
    {*HDF5_EXTENSIONS, *IMAGE_EXTENSIONS, *TIFF_EXTENSIONS, *NUMPY_EXTENSIONS,
     *XARRAY_EXTENSIONS, *IGOR_EXTENSIONS, *RSCIIO_PLUGINS}
))
# Formats users ask for that no installed reader handles: say what to do instead.
_UNSUPPORTED_HINTS = {
    ".sxm": "Nanonis .sxm is not read by rosettasciio; export the scan to HDF5 or TIFF",
}



@dataclass
class _Channel:
    """One channel as read from a file, before stacking."""

    name: str
    data: np.ndarray  # dims (y, x) or (y, x, spectral)
    coords: dict  # dim -> (values, attrs dict with at least "units")
    units: str = ""
    metadata: dict = field(default_factory=dict)
    spectral_dim: str | None = None
    is_phase: bool | None = None  # None: guess from the name and units
    attrs: dict = field(default_factory=dict)  # carried over as is (files we wrote)


# --------------------------------------------------------------------------- public API


def load(path, channel=None, *, fill_nan=None, lazy: bool = False, chunks=None,
         **reader_options) -> xr.DataArray:
    """Read a microscopy file into a labelled image.

    Parameters
    ----------
    path : str or pathlib.Path
        The file (a folder for ``.zarr``). See the module docstring for the formats.
    channel : str, int or list of those, optional
        Which channel(s) of a multi-channel file to keep, by name (as
        :func:`list_channels` gives them) or position. ``None`` keeps all.
    fill_nan : {"mean", "median", "interpolate"} or float, optional
        What to put in place of NaN/Inf values. By default a file with non-finite
        values is refused, because models silently break on them. ``"mean"`` and
        ``"median"`` use the statistics of the channel's finite values,
        ``"interpolate"`` inpaints from the neighbours (biharmonic, scikit-image), a
        number is used as is.
    **reader_options
        Passed to the reader: for ``.npy``/``.npz``/TIFF/PNG ``dims`` names a 3-D
        array's dims (e.g. ``("y", "x", "energy")``); ``.npz`` takes ``key``;
        PNG/JPEG take ``rgb="gray"`` (default) or ``"channels"``; NetCDF/Zarr take
        ``variable``; rosettasciio formats take their own ``file_reader`` options.
    lazy : bool
        Return a dask-backed DataArray (same dims, coordinates and attrs) that reads
        the pixels only when needed, chunk by chunk: for data larger than memory. Zarr,
        NetCDF, NSID/USID HDF5 and the rosettasciio formats that read lazily (.mrc,
        .hspy, .zspy, .emd, .blo, .mib, ...) read nothing now; other formats are read,
        then wrapped. NaN/Inf are then not checked here (``fit`` checks them per chunk);
        ``fill_nan`` takes a number or ``"mean"``.
    chunks : int, tuple, dict or "auto", optional
        With ``lazy=True``: dask chunks (a dict by dim name). Default: the file's own
        chunks, else ``"auto"`` over ``y``/``x``. Any chunking works: the encoder cuts
        its own blocks, with a halo of half a patch.

    Returns
    -------
    xarray.DataArray
        Dims ``("y", "x")`` for one channel, ``("y", "x", "channel")`` for several
        (channel names as the ``channel`` coordinate), or ``("y", "x", <spectral>)``
        for a spectrum per position. ``y``/``x`` (and a spectral dim) carry physical
        coordinates with ``units`` (``"px"`` when the file has no calibration; SI metres
        are shown with a readable prefix such as ``"µm"``). ``attrs``: ``source``,
        ``format``, ``metadata`` (a JSON string of a flat summary), ``units`` /
        ``channel_units`` and ``phase_channels`` (names of channels holding a phase
        angle, whose units are ``"deg"`` or ``"rad"``).

    Raises
    ------
    phyvae_dash.errors.DataError
        Missing file, unknown or corrupt format, wrong dimensionality, empty array,
        NaN/Inf without ``fill_nan``, a channel that does not exist, or (without
        ``lazy=True``) a file larger than half the free memory.

    Examples
    --------
    >>> import numpy as np, tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "scan.npy"
    >>> np.save(path, np.random.rand(32, 48))
    >>> image = load(path)
    >>> image.dims, image.shape, image.x.attrs["units"]
    (('y', 'x'), (32, 48), 'px')
    """
    path = Path(path)
    diffraction = fourd.read_4d(path, lazy=lazy, chunks="auto" if chunks is None else chunks,
                                **reader_options)  # None: not 4D-STEM
    if diffraction is not None:
        return diffraction
    reader_options = {k: v for k, v in reader_options.items() if k not in fourd.READER_OPTIONS}
    channels, fmt = _read_channels(path, reader_options, lazy)
    channels = _select(channels, channel, path)
    image = _assemble(channels, path, fmt)
    if lazy:
        return _fill_lazy(as_lazy(image, chunks), path, fill_nan)
    return _check_finite(image, path, fill_nan)


def list_channels(path, **reader_options) -> list[str]:
    """Names of the channels in a file, in the order :func:`load` stacks them.

    Examples
    --------
    >>> import numpy as np, tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "pfm.npz"
    >>> np.savez(path, amplitude=np.ones((8, 8)), phase=np.zeros((8, 8)))
    >>> list_channels(path)
    ['amplitude', 'phase']
    """
    channels, _ = _read_channels(Path(path), reader_options)
    return [c.name for c in channels]


# ---------------------------------------------------------------------- dispatching


def _read_channels(path: Path, options: dict, lazy: bool = False) -> tuple[list[_Channel], str]:
    if not path.exists():
        raise DataError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if lazy and suffix in (*HDF5_EXTENSIONS, *XARRAY_EXTENSIONS, *RSCIIO_PLUGINS):
        options = {**options, "lazy": True}
    else:  # these readers read the whole file: it has to fit
        ensure_fits(file_size(path), path)
    if suffix in _UNSUPPORTED_HINTS:
        raise DataError(f"{path}: unsupported format {suffix}: {_UNSUPPORTED_HINTS[suffix]}")
    if suffix in HDF5_EXTENSIONS:
        return _read_hdf5(path, options)
    if suffix in TIFF_EXTENSIONS:
        return _guarded(path, "TIFF", _read_tiff, options), "TIFF"
    if suffix in IMAGE_EXTENSIONS:
        return _guarded(path, suffix[1:].upper(), _read_image, options), suffix[1:].upper()
    if suffix in NUMPY_EXTENSIONS:
        return _guarded(path, "numpy", _read_numpy, options), "numpy"
    if suffix in XARRAY_EXTENSIONS:
        fmt = "NetCDF" if suffix == ".nc" else "Zarr"
        return _guarded(path, fmt, _read_xarray, options), fmt
    if suffix in IGOR_EXTENSIONS:
        return _guarded(path, "Igor binary wave", _read_ibw, options), "IBW"
    if suffix in RSCIIO_PLUGINS:
        plugin = RSCIIO_PLUGINS[suffix]
        fmt = f"rosettasciio:{plugin.split('.')[-1]}"
        return _guarded(path, fmt, _read_rsciio, options, plugin), fmt
    raise DataError(
        f"{path}: unknown format {suffix or '(no extension)'}; "
        f"supported extensions: {', '.join(SUPPORTED_EXTENSIONS)}"
    )


def _guarded(path, fmt, reader, options, *args):
    """Run a reader; turn anything it raises into a DataError naming the file."""
    try:
        return reader(path, *args, **options)
    except DataError:
        raise
    except TypeError as err:
        if "unexpected keyword" in str(err):
            raise DataError(f"{path}: option not understood by the {fmt} reader: {err}") from None
        raise DataError(f"{path}: cannot read as {fmt} ({type(err).__name__}: {err})") from None
    except Exception as err:  # a corrupt file can fail in any way inside a reader
        raise DataError(
            f"{path}: cannot read as {fmt}; the file may be corrupt or of another "
            f"format ({type(err).__name__}: {err})"
        ) from None


# --------------------------------------------------------------------------- HDF5


def _read_hdf5(path: Path, options: dict) -> tuple[list[_Channel], str]:
    import h5py

    try:
        with h5py.File(path, "r") as h5:
            layout = _hdf5_layout(h5)
    except OSError as err:
        raise DataError(f"{path}: not a readable HDF5 file ({err})") from None
    if layout == "NSID":
        return _guarded(path, "NSID HDF5", _read_nsid, options), "NSID"
    if layout == "USID":
        return _guarded(path, "USID HDF5", _read_usid, options), "USID"
    if layout == "HSPY":
        fmt = "rosettasciio:hspy"
        return _guarded(path, "HyperSpy HDF5", _read_rsciio, options, "rsciio.hspy"), fmt
    if layout == "EMD":
        return _guarded(path, "EMD HDF5", _read_rsciio, options, "rsciio.emd"), "rosettasciio:emd"
    raise DataError(
        f"{path}: an HDF5 file, but neither pycroscopy NSID/USID nor HyperSpy/EMD layout "
        "(no dataset with dimension scales, no Raw_Data with Position_Indices)"
    )


def _hdf5_layout(h5) -> str | None:
    import h5py

    if "file_format" in h5.attrs and "hyperspy" in str(h5.attrs["file_format"]).lower():
        return "HSPY"
    if "version_major" in h5.attrs or "emd_group_type" in str(dict(h5.attrs)):
        return "EMD"
    found = []

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset):
            if name.endswith("Raw_Data") and "Position_Indices" in obj.attrs:
                found.append("USID")
            elif "DIMENSION_LIST" in obj.attrs and "quantity" in obj.attrs:
                found.append("NSID")
        return "USID" in found or None  # USID wins: its Raw_Data is unambiguous

    h5.visititems(visit)
    if "USID" in found:
        return "USID"
    return "NSID" if found else None


def _read_nsid(path: Path, lazy: bool = False) -> list[_Channel]:
    import h5py
    from pyNSID.io.hdf_utils import get_all_main, read_h5py_dataset

    channels = []
    with h5py.File(path, "r") as h5:
        for h5_main in get_all_main(h5):
            dataset = read_h5py_dataset(h5_main)
            if lazy:
                import dask.array as da

                data = da.from_array(H5Array(path, h5_main.name, h5_main.shape, h5_main.dtype),
                                     chunks=h5_main.chunks or "auto")
            else:
                ensure_fits(h5_main.nbytes, path)
                data = np.asarray(h5_main[()])  # keep the stored dtype (sidpy upcasts)
            axes = [dataset._axes[i] for i in range(dataset.ndim)]
            dim_names = [str(ax.name) for ax in axes]
            spatial = _spatial_axes(dim_names, [str(ax.dimension_type) for ax in axes])
            if spatial is None or data.ndim not in (2, 3):
                raise DataError(
                    f"{path}: dataset {h5_main.name} has dims {dim_names} of shape "
                    f"{data.shape}; expected two spatial dims (x, y) and at most one spectral"
                )
            rest = [i for i in range(data.ndim) if i not in spatial]
            data = data.transpose((*spatial, *rest))
            coords = {}
            for dim, i in zip(("y", "x"), spatial):
                coords[dim] = (np.asarray(axes[i].values, float), {"units": str(axes[i].units)})
            spectral_dim = None
            if rest:
                ax = axes[rest[0]]
                spectral_dim = _safe_dim_name(str(ax.name))
                coords[spectral_dim] = (
                    np.asarray(ax.values, float),
                    {"units": str(ax.units), "long_name": str(ax.name),
                     "quantity": str(ax.quantity)},
                )
            name = str(dataset.quantity or "") or str(h5_main.attrs.get("title", "")) \
                or h5_main.name.rsplit("/", 1)[-1]
            metadata = {"dataset": h5_main.name, "data_type": str(dataset.data_type),
                        "modality": str(dataset.modality),
                        **getattr(dataset, "original_metadata", {})}
            channels.append(_Channel(name, data, coords, str(dataset.units), metadata,
                                     spectral_dim))
    return _use_common_spatial_units(channels)


def _spatial_axes(names: list[str], types: list[str]) -> tuple[int, int] | None:
    """Array axes of (y, x): by name where the file says x/y, else by dimension type."""
    lower = [n.lower() for n in names]
    if "x" in lower and "y" in lower:
        return lower.index("y"), lower.index("x")
    spatial = [i for i, t in enumerate(types) if "SPATIAL" in t.upper()]
    if len(spatial) == 2:
        return spatial[0], spatial[1]
    if len(names) in (2, 3):  # no labels: treat the first two axes as rows, columns
        return 0, 1
    return None


def _use_common_spatial_units(channels: list[_Channel]) -> list[_Channel]:
    """Give every channel the scan's length units.

    Some NSID writers copy a channel's data units onto its x/y scales (a phase channel
    then has x/y in "deg"); the scan grid is the same for all channels, so take the
    spatial coordinates from a channel whose x/y units are lengths.
    """
    good = next((c for c in channels if is_length(c.coords["x"][1]["units"])), None)
    if good is None:
        return channels
    for c in channels:
        if not is_length(c.coords["x"][1]["units"]) and \
                c.data.shape[:2] == good.data.shape[:2]:
            c.coords["y"], c.coords["x"] = good.coords["y"], good.coords["x"]
    return channels


def _read_usid(path: Path, lazy: bool = False) -> list[_Channel]:
    import h5py
    import pyUSID

    channels = []
    # Lazily, pyUSID's dask arrays read from the open file: it stays open with them.
    h5 = h5py.File(path, "r")
    with nullcontext(h5) if lazy else h5:
        for h5_main in pyUSID.hdf_utils.get_all_main(h5):
            pos_labels = list(h5_main.pos_dim_labels)
            if len(pos_labels) != 2:
                raise DataError(
                    f"{path}: USID dataset {h5_main.name} has position dims {pos_labels}; "
                    "expected a 2-D scan (X, Y)"
                )
            # n-dim form has the position dims in label order, then the spectroscopic ones.
            if lazy:  # a dask array over the open file: threads, not other processes
                data = h5_main.get_n_dim_form(lazy=True)
            else:
                ensure_fits(h5_main.nbytes, path)
                data = np.asarray(h5_main.get_n_dim_form(lazy=False))
            iy, ix = _spatial_axes(pos_labels, ["SPATIAL", "SPATIAL"])
            spec_labels = list(h5_main.spec_dim_labels)
            spec_sizes = list(h5_main.spec_dim_sizes)
            pos_units = dict(zip(pos_labels, _usid_units(h5_main.pos_dim_descriptors)))
            coords = {
                "y": (np.asarray(h5_main.get_pos_values(pos_labels[iy]), float),
                      {"units": pos_units[pos_labels[iy]]}),
                "x": (np.asarray(h5_main.get_pos_values(pos_labels[ix]), float),
                      {"units": pos_units[pos_labels[ix]]}),
            }
            data = np.moveaxis(data, (iy, ix), (0, 1))
            spectral_dim = None
            long_spec = [i for i, n in enumerate(spec_sizes) if n > 1]
            if len(long_spec) > 1:
                raise DataError(
                    f"{path}: USID dataset {h5_main.name} has {len(long_spec)} spectroscopic "
                    f"dims {spec_labels}; at most one is supported"
                )
            data = data.reshape(data.shape[:2] + tuple(spec_sizes[i] for i in long_spec))
            if long_spec:
                label = spec_labels[long_spec[0]]
                spectral_dim = _safe_dim_name(label)
                spec_units = _usid_units(h5_main.spec_dim_descriptors)[long_spec[0]]
                coords[spectral_dim] = (np.asarray(h5_main.get_spec_values(label), float),
                                        {"units": spec_units, "long_name": label})
            name = str(_attr(h5_main, "quantity") or h5_main.parent.name.rsplit("/", 1)[-1])
            metadata = {"dataset": h5_main.name, **{
                k: _attr(h5_main.parent, k) for k in h5_main.parent.attrs}}
            channels.append(_Channel(name, data, coords, str(_attr(h5_main, "units") or ""),
                                     metadata, spectral_dim))
    return channels


def _usid_units(descriptors) -> list[str]:
    """Units from pyUSID descriptors such as ``"X (m)"``."""
    return [m.group(1) if (m := re.search(r"\(([^()]*)\)\s*$", d)) else "" for d in descriptors]


def _attr(h5obj, key):
    value = h5obj.attrs.get(key)
    return value.decode() if isinstance(value, bytes) else value


# ------------------------------------------------------------------- rosettasciio


def _read_rsciio(path: Path, plugin: str, **options) -> list[_Channel]:
    from importlib import import_module

    signals = import_module(plugin).file_reader(str(path), **options)
    channels = []
    for k, signal in enumerate(signals):
        data = signal["data"] if options.get("lazy") else np.asarray(signal["data"])
        axes = sorted(signal["axes"], key=lambda ax: ax.get("index_in_array", 0))
        if data.ndim < 2:
            continue  # a spectrum or a scalar stored next to the image (e.g. in EMD)
        general = signal.get("metadata", {}).get("General", {})
        title = str(general.get("title", "")) or (path.stem if len(signals) == 1 else f"signal {k}")
        quantity = str(signal.get("metadata", {}).get("Signal", {}).get("quantity", ""))
        units = m.group(1) if (m := re.search(r"\(([^()]*)\)\s*$", quantity)) else ""
        # Per array axis: its name and calibrated values. Axis names can repeat or be
        # empty in some files, so they are matched by position, not by name.
        calibrated = []
        for ax, size in zip(axes, data.shape):
            if "axis" in ax:  # non-uniform axis
                values = np.asarray(ax["axis"], float)
            else:
                values = ax.get("offset", 0.0) + ax.get("scale", 1.0) * np.arange(size)
            calibrated.append((str(ax.get("name") or ""), values,
                               {"units": clean_units(ax.get("units"))}))
        nav = [bool(ax.get("navigate", False)) for ax in axes]
        if data.ndim == 2:
            dims = ["y", "x"]
        elif data.ndim == 3 and sum(nav) == 2:  # spectrum image: navigation is the scan
            signal_axis = nav.index(False)
            order = [i for i, n in enumerate(nav) if n] + [signal_axis]
            data = data.transpose(order)
            calibrated = [calibrated[i] for i in order]
            # EELS/EDS energy axes are "energy" (eV) whatever the file calls them.
            is_energy = calibrated[2][2]["units"] in ("eV", "keV")
            dims = ["y", "x", "energy" if is_energy else
                    _safe_dim_name(calibrated[2][0] or "spectral")]
        else:
            raise DataError(
                f"{path}: signal '{title}' has shape {data.shape}; load() reads 2-D images "
                "and spectrum images (two scan axes and one signal axis)"
            )
        coords = {d: (values, attrs) for d, (_, values, attrs) in zip(dims, calibrated)}
        for d, size in zip(dims, data.shape):  # a file without axis information
            coords.setdefault(d, (np.arange(size, dtype=float), {"units": "px"}))
        metadata = {"title": title, "original_metadata": signal.get("original_metadata", {})}
        signal_type = str(signal.get("metadata", {}).get("Signal", {}).get("signal_type", ""))
        channels.append(_Channel(title, data, coords, units, metadata,
                                 dims[2] if data.ndim == 3 else None,
                                 attrs={"signal_type": signal_type} if signal_type else {}))
    if not channels:
        raise DataError(f"{path}: holds no image (no signal with two or more dims)")
    return channels


# ----------------------------------------------------------- TIFF, PNG/JPEG, numpy


def _read_tiff(path: Path, dims=None) -> list[_Channel]:
    import tifffile

    with tifffile.TiffFile(path) as tif:
        data = tif.asarray()
        page = tif.pages[0]
        pixel_size, units = _tiff_pixel_size(tif, page)
        description = page.description or ""
    channels = _channels_from_array(np.squeeze(data), path, dims, name=path.stem)
    for c in channels:
        if pixel_size is not None:
            for dim, size in zip(("y", "x"), pixel_size):
                n = c.data.shape[0 if dim == "y" else 1]
                c.coords[dim] = (np.arange(n) * size, {"units": units})
        if description:
            c.metadata["description"] = description[:500]
    return channels


def _tiff_pixel_size(tif, page):
    """(dy, dx) and units from ImageJ metadata or centimetre resolution tags, else None.

    Resolution in inches is what image editors write for printing (72 dpi), not a
    calibration, so it is ignored.
    """
    tags = page.tags
    if "XResolution" not in tags or "YResolution" not in tags:
        return None, "px"
    xres, yres = (tags[k].value for k in ("XResolution", "YResolution"))
    per_unit = [num / den if den else 0.0 for num, den in (yres, xres)]
    if not all(per_unit):
        return None, "px"
    imagej = tif.imagej_metadata or {}
    unit = imagej.get("unit")
    resunit = int(getattr(tags.get("ResolutionUnit"), "value", 1))
    if unit and unit.lower() not in ("pixel", "pixels", ""):
        return tuple(1.0 / p for p in per_unit), clean_units(unit)
    if resunit == 3:  # centimetre
        return tuple(1e4 / p for p in per_unit), "µm"
    return None, "px"


def _read_image(path: Path, rgb: str = "gray", dims=None) -> list[_Channel]:
    import imageio.v3 as iio

    data = np.asarray(iio.imread(path))
    if data.ndim == 3 and data.shape[-1] in (3, 4):
        data = data[..., :3].astype(np.float32)  # alpha carries no signal
        if rgb == "gray":
            from skimage.color import rgb2gray  # float input keeps the 0..255 scale

            data = rgb2gray(data)
        elif rgb == "channels":
            return _channels_from_array(data, path, ("y", "x", "channel"), names=["R", "G", "B"])
        else:
            raise DataError(f"{path}: rgb must be 'gray' or 'channels', not {rgb!r}")
    return _channels_from_array(data, path, dims, name=path.stem)


def _read_numpy(path: Path, key=None, dims=None) -> list[_Channel]:
    if path.suffix.lower() == ".npy":
        try:
            data = np.load(path, allow_pickle=False)
        except ValueError as err:
            if "pickle" in str(err).lower():
                raise DataError(f"{path}: holds Python objects (pickled); only plain numeric "
                                "arrays are read, for safety") from None
            raise
        channels = _channels_from_array(data, path, dims, name=path.stem)
    else:
        with np.load(path, allow_pickle=False) as npz:
            keys = list(npz.files)
            if key is not None:
                if key not in keys:
                    raise DataError(f"{path}: no array {key!r}; arrays in the file: {keys}")
                keys = [key]
            arrays = {k: npz[k] for k in keys}
        if not arrays:
            raise DataError(f"{path}: the .npz file holds no arrays")
        if len(arrays) == 1:
            (k, data), = arrays.items()
            channels = _channels_from_array(data, path, dims, name=k)
        elif len({a.shape for a in arrays.values()}) == 1 and next(iter(arrays.values())).ndim == 2:
            channels = [c for k, a in arrays.items()
                        for c in _channels_from_array(a, path, None, name=k)]
        else:
            shapes = {k: a.shape for k, a in arrays.items()}
            raise DataError(f"{path}: arrays of different shapes {shapes}; choose one with key=")
    _apply_json_sidecar(path, channels)
    return channels


def _channels_from_array(data, path, dims=None, name="image", names=None) -> list[_Channel]:
    """Split a bare 2-D/3-D array into channels following the dims convention.

    A 3-D array whose last (or first) axis has at most 16 entries is read as channels
    ``(y, x, channel)`` (``(channel, y, x)`` stacks are moved); a longer third axis is
    a spectrum per position, dim ``"spectral"``. ``dims`` overrides the guess.
    """
    data = np.asarray(data)
    if data.dtype.kind not in "biuf":
        raise DataError(f"{path}: array of dtype {data.dtype} is not numeric")
    if data.size == 0:
        raise DataError(f"{path}: the array is empty (shape {data.shape})")
    data = np.squeeze(data) if data.ndim > 2 else data
    if data.ndim not in (2, 3):
        raise DataError(
            f"{path}: wrong dimensionality: shape {data.shape}; load() reads 2-D images, "
            "multi-channel images (y, x, channel) and spectral maps (y, x, spectrum)"
        )
    if dims is None and data.ndim == 3:
        if data.shape[2] <= 16:
            dims = ("y", "x", "channel")
        elif data.shape[0] <= 16:
            data, dims = np.moveaxis(data, 0, -1), ("y", "x", "channel")
        else:
            dims = ("y", "x", "spectral")
        assumed = (f"{path}: read the 3-D array of shape {data.shape} as {dims}; if it is a "
                   "tilt or time series (frame, y, x), load one frame instead, or pass "
                   "dims=(...) to say how its axes are laid out")
        warnings.warn(assumed, UserWarning, stacklevel=5)
    dims = tuple(dims or ("y", "x"))
    if len(dims) != data.ndim or dims[:2] != ("y", "x"):
        raise DataError(f"{path}: dims {dims} do not fit an array of shape {data.shape}; "
                        "give ('y', 'x'[, third])")
    coords = {d: (np.arange(n, dtype=float), {"units": "px"}) for d, n in zip(dims[:2], data.shape)}
    if data.ndim == 2:
        return [_Channel(name, data, coords)]
    if dims[2] == "channel":
        names = names or [f"{name}_{i}" for i in range(data.shape[2])]
        return [_Channel(n, data[..., i], dict(coords)) for i, n in enumerate(names)]
    coords[dims[2]] = (np.arange(data.shape[2], dtype=float), {"units": ""})
    return [_Channel(name, data, coords, spectral_dim=dims[2])]


def _apply_json_sidecar(path: Path, channels: list[_Channel]) -> None:
    """Calibrate x/y from a ``<stem>.json`` sidecar giving a field of view or pixel size."""
    sidecar = path.with_suffix(".json")
    if not sidecar.exists():
        return
    try:
        info = flatten_metadata(json.loads(sidecar.read_text()))
    except (ValueError, OSError) as err:
        raise DataError(f"{sidecar}: unreadable JSON sidecar of {path.name} ({err})") from None
    short = {k.rsplit(".", 1)[-1].lower(): v for k, v in info.items()}
    units = next((str(v) for k, v in short.items() if k.endswith("units")), "px")
    for c in channels:
        c.metadata.update(info)
        for dim, axis in (("y", 0), ("x", 1)):
            n = c.data.shape[axis]
            fov = short.get(f"field_of_view_{dim}", short.get("field_of_view"))
            step = short.get(f"pixel_size_{dim}", short.get("pixel_size"))
            if isinstance(fov, (int, float)):
                step = fov / n
            if isinstance(step, (int, float)):
                c.coords[dim] = (np.arange(n) * float(step), {"units": clean_units(units)})


# ------------------------------------------------------------- Igor binary wave

# Attribute names load() writes itself; a wave-note key with one of these names is kept as
# "note_<key>" so that it cannot overwrite them.
_RESERVED_ATTRS = {"source", "format", "metadata", "phase_channels", "channel_units", "units",
                   "long_name", "preprocessing", "original_source", "normalization"}
#: Wave-note entries (Asylum Research names) that become attrs of an .ibw image.
IBW_NOTE_ATTRS = ("ScanSize", "FastScanSize", "SlowScanSize", "ScanRate", "ScanAngle",
                  "ScanPoints", "ScanLines", "ImagingMode", "DriveAmplitude", "DriveFrequency",
                  "SetPoint", "MicroscopeModel", "Date", "Time")
_NOTE_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Bytes in front of the data of each version: the version field plus BinHeader<n>, and
# for version 5 the 320-byte WaveHeader5 that wfmSize also counts (TN003).
_IBW_BIN_HEADER = {1: ("lh", 8), 2: ("lllh", 16), 3: ("llllh", 20),
                   5: ("hllll4l4llll", 64)}


def _read_ibw(path: Path) -> list[_Channel]:
    """An Igor binary wave (``.ibw``): a 2-D image, or a 3-D wave whose layers are channels.

    Orientation. Igor's first dimension is the rows of a wave, and an Igor image plot
    draws rows along the horizontal axis; Asylum Research stores a scan as
    ``(points per line, lines, channels)``, i.e. rows = fast scan axis x, columns = slow
    scan axis y (a wave's scaling ``sfA[0]``/``sfB[0]`` is the x scale, ``sfA[1]``/
    ``sfB[1]`` the y scale). igor2 returns the data in that Fortran layout
    ``(n_rows, n_cols[, n_layers])``, so each layer is transposed to ``(y, x)``: array
    row ``j`` is scan line ``j`` at ``y = sfB[1] + j * sfA[1]`` (ascending, as in Igor and
    the other readers here; plotting with the coordinates puts the first scan line at the
    bottom, as Igor shows it). Nothing is flipped and ``ScanAngle`` is not applied; it is
    kept in ``attrs`` with the rest of the note.
    """
    from igor2 import binarywave

    _check_ibw_size(path)
    loaded = binarywave.load(str(path))
    wave = loaded["wave"]
    header, bin_header = wave["wave_header"], wave["bin_header"]
    data = np.asarray(wave["wData"])
    if data.dtype.kind not in "biuf":
        kind = "a text wave" if data.dtype.kind in "SU" else f"of dtype {data.dtype}"
        raise DataError(f"{path}: the Igor wave is {kind}; only real numeric waves are images")
    if data.size == 0:
        raise DataError(f"{path}: the Igor wave holds no data (shape {data.shape})")
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim not in (2, 3):
        raise DataError(f"{path}: wrong dimensionality: the Igor wave has shape {data.shape}; "
                        "load() reads 2-D images and 3-D waves whose layers are channels")
    n_rows, n_cols = data.shape[:2]
    scale, offset = np.asarray(header["sfA"], float), np.asarray(header["sfB"], float)
    dim_units = _ibw_dim_units(header, bin_header, wave.get("dimension_units"))
    data_units = _ibw_text(wave.get("data_units")) or _ibw_text(header.get("dataUnits"))
    coords = {  # Igor dim 1 (columns, slow scan) is y, dim 0 (rows, fast scan) is x
        "y": (offset[1] + scale[1] * np.arange(n_cols), {"units": dim_units[1]}),
        "x": (offset[0] + scale[0] * np.arange(n_rows), {"units": dim_units[0]}),
    }
    note = _ibw_note(wave.get("note"))
    # An Asylum note has hundreds of entries: the scan's main settings become attrs, the
    # whole note is kept as one JSON attr (attrs are copied wherever the image goes).
    note_attrs = {key: value for key, value in note.items() if key in IBW_NOTE_ATTRS}
    if note:
        note_attrs["ibw_note"] = json.dumps(note)
    wave_name = _ibw_text(header.get("bname")) or path.stem
    metadata = {"wave_name": wave_name, "igor_version": int(loaded.get("version", 0)),
                **{key: value for key, value in note.items() if key in IBW_NOTE_ATTRS}}
    # Native byte order, C layout and a writable copy (igor2's array views the file bytes).
    data = data.astype(data.dtype.newbyteorder("="), copy=False)
    if data.ndim == 2:
        return [_Channel(wave_name, np.array(data.T, order="C"), coords, data_units,
                         metadata, attrs=dict(note_attrs))]
    n_layers = data.shape[2]
    names = _ibw_layer_labels(wave.get("labels"), n_layers)
    channels = []
    for k, name in enumerate(names):
        phase = "phase" in name.lower()
        # One data unit serves the whole wave; Asylum records phase layers in degrees.
        channels.append(_Channel(name, np.array(data[:, :, k].T, order="C"), dict(coords),
                                 "deg" if phase else data_units, metadata, is_phase=phase,
                                 attrs=dict(note_attrs)))
    return channels


def _check_ibw_size(path: Path) -> None:
    """Refuse a truncated or non-Igor file before igor2 meets it, with the byte counts."""
    import struct

    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(64)
    if len(head) < 8:
        raise DataError(f"{path}: {size} bytes is too short for an Igor binary wave "
                        "(the file is truncated or not an .ibw)")
    for order in "<>":
        version = struct.unpack(order + "h", head[:2])[0]
        if version in _IBW_BIN_HEADER:
            break
    else:
        raise DataError(f"{path}: not an Igor binary wave (version field "
                        f"{head[:2].hex()} is none of 1, 2, 3, 5)")
    fmt, header_size = _IBW_BIN_HEADER[version]
    if len(head) < header_size:
        raise DataError(f"{path}: truncated Igor binary wave: {size} bytes, but its header "
                        f"alone takes {header_size}")
    fields = struct.unpack(order + fmt, head[2:header_size])
    if version == 5:
        # checksum, wfmSize, formulaSize, noteSize, dataEUnitsSize, dimEUnitsSize[4],
        # dimLabelsSize[4], sIndicesSize, options1, options2
        sizes = [fields[1], *fields[2:14]]
        minimum = 320  # WaveHeader5
    else:  # wfmSize first, then the note (v2, v3) and formula (v3) sizes
        sizes = [fields[0], *fields[1:version]]
        minimum = 126  # WaveHeader2 plus 16 bytes of padding, which wfmSize counts
        if version == 1:  # ... though version 1 files do not hold the padding
            sizes[0] -= 16
            minimum -= 16
    if any(n < 0 for n in sizes) or sizes[0] < minimum:
        raise DataError(f"{path}: corrupt Igor binary wave (version {version}): negative "
                        f"or too small section sizes {sizes}")
    expected = header_size + sum(sizes)
    if size < expected:
        raise DataError(f"{path}: truncated or corrupt Igor binary wave: the header "
                        f"announces {expected} bytes, the file has {size}")


def _ibw_text(value) -> str:
    """Igor strings (bytes, arrays of single bytes, lists of them) to text, no NULs."""
    if value is None:
        return ""
    if isinstance(value, np.ndarray):
        value = b"".join(value.ravel().tolist()) if value.dtype.kind == "S" else b""
    if isinstance(value, (list, tuple)):
        value = b"".join(v for v in value if isinstance(v, bytes))
    if isinstance(value, bytes):
        value = value.split(b"\x00", 1)[0]
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            value = value.decode("latin-1")  # Igor files from Macs/Windows code pages
    return str(value).strip()


def _ibw_dim_units(header, bin_header, extended) -> list[str]:
    """Units of the four Igor dims: extended units where the file has them, else the
    3-character ``dimUnits`` (version 5) or ``xUnits`` for dim 0 (versions 1-3)."""
    if "dimUnits" in header:
        units = [_ibw_text(row) for row in np.asarray(header["dimUnits"]).reshape(4, -1)]
    else:
        units = [_ibw_text(header.get("xUnits")), "", "", ""]
    sizes = list(bin_header.get("dimEUnitsSize", [0, 0, 0, 0]))
    if isinstance(extended, bytes):  # igor2 gives one string when one dim has any
        extended = [extended] if extended else []
    extended = list(extended or [])
    for d, n in enumerate(sizes):  # igor2 lists only the dims that have extended units
        if n > 0 and extended:
            units[d] = _ibw_text(extended.pop(0)) or units[d]
    return units


def _ibw_layer_labels(labels, n_layers: int) -> list[str]:
    """Channel names from the layer dimension's labels (Asylum: ``HeightRetrace``, ...).

    Igor writes the dimension's own label first, then one per layer.
    """
    layer = [_ibw_text(v) for v in (labels[2] if labels and len(labels) > 2 else [])]
    if len(layer) == n_layers + 1:
        layer = layer[1:]
    elif len(layer) != n_layers:
        layer = []
    names = [n or f"ch{k}" for k, n in enumerate(layer)] or \
        [f"ch{k}" for k in range(n_layers)]
    seen = {}
    for k, n in enumerate(names):  # channel names must be unique to select them
        if n in seen:
            names[k] = f"{n}_{k}"
        seen[n] = k
    return names


def _ibw_note(raw) -> dict:
    """The simple ``Key: Value`` lines of a wave note (Asylum writes one per line,
    separated by CR), values kept as strings."""
    note = _ibw_text(raw)
    found = {}
    for line in re.split(r"[\r\n]+", note):
        key, sep, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if not sep or not _NOTE_KEY.match(key) or len(value) > 200 or \
                any(ord(ch) < 32 for ch in value):
            continue
        found[f"note_{key}" if key in _RESERVED_ATTRS else key] = value
    return found


# ------------------------------------------------------------------- NetCDF / Zarr


def _read_xarray(path: Path, variable=None, lazy: bool = False) -> list[_Channel]:
    zarr = path.suffix.lower() == ".zarr"
    if lazy:  # the file stays open while the dask arrays need it
        ds = xr.open_zarr(path) if zarr else xr.open_dataset(path, chunks={})
    else:
        ds = xr.open_zarr(path, chunks=None) if zarr else xr.open_dataset(path)
    with ds if not lazy else _nothing():
        names = [v for v in ds.data_vars if {"y", "x"} <= set(ds[v].dims)]
        if variable is not None:
            if variable not in ds.data_vars:
                raise DataError(
                    f"{path}: no variable {variable!r}; variables: {list(ds.data_vars)}")
            names = [variable]
        elif "image" in names:  # a saved phantom Dataset: its image is the data
            names = ["image"]
        if len(names) != 1:
            raise DataError(f"{path}: {len(names)} variables with dims (y, x): {names}; "
                            "choose one with variable=")
        da = ds[names[0]]
        if not lazy:
            ensure_fits(da.nbytes, path)
            da = da.load()
    extra = [d for d in da.dims if d not in ("y", "x")]
    if len(extra) > 1:
        raise DataError(f"{path}: variable {names[0]!r} has dims {da.dims}; "
                        "expected (y, x[, channel or spectral])")
    da = da.transpose("y", "x", *extra)
    coords = {d: (np.asarray(da[d].values, float) if d in da.coords else
                  np.arange(da.sizes[d], dtype=float),
                  dict(da[d].attrs) if d in da.coords else {"units": "px"})
              for d in da.dims if d != "channel"}
    for _, attrs in coords.values():
        attrs.setdefault("units", "px")
    # A file written from a loaded image keeps its history: original metadata summary,
    # preprocessing steps, which channels are phases.
    try:
        metadata = json.loads(da.attrs["metadata"])
    except (KeyError, TypeError, ValueError):
        metadata = {"variable": names[0], **da.attrs}
    carried = {k: _as_list(da.attrs[k]) for k in ("preprocessing",) if k in da.attrs}
    if "source" in da.attrs:
        carried["original_source"] = da.attrs["source"]
    known_phase = _as_list(da.attrs["phase_channels"]) if "phase_channels" in da.attrs else None
    units = str(da.attrs.get("units", ""))
    if extra == ["channel"]:
        ch_units = _as_list(da.attrs.get("channel_units", [units] * da.sizes["channel"]))
        return [_Channel(str(n), da.data[..., i], dict(coords), str(u), metadata,
                         is_phase=None if known_phase is None else str(n) in known_phase,
                         attrs=carried)
                for i, (n, u) in enumerate(zip(da["channel"].values, ch_units))]
    name = str(da.attrs.get("long_name") or da.name or path.stem)
    return [_Channel(name, da.data, coords, units, metadata, extra[0] if extra else None,
                     is_phase=None if known_phase is None else name in known_phase,
                     attrs=carried)]


@contextmanager
def _nothing():
    yield


def _as_list(value) -> list:
    """NetCDF stores a one-element list attribute as a scalar and [] as an empty array."""
    if isinstance(value, str):
        return [value]
    return [str(v) for v in np.atleast_1d(value)]


# --------------------------------------------------------------------- assembling


def _select(channels: list[_Channel], channel, path: Path) -> list[_Channel]:
    if channel is None:
        return channels
    wanted = channel if isinstance(channel, (list, tuple)) else [channel]
    names = [c.name for c in channels]
    picked = []
    for item in wanted:
        if isinstance(item, (int, np.integer)) and not isinstance(item, bool):
            if not -len(channels) <= item < len(channels):
                raise DataError(f"{path}: channel index {item} out of range; the file has "
                                f"{len(channels)} channels: {names}")
            picked.append(channels[item])
        elif item in names:
            picked.append(channels[names.index(item)])
        else:
            raise DataError(f"{path}: no channel {item!r}; channels in the file: {names}")
    return picked


def _assemble(channels: list[_Channel], path: Path, fmt: str) -> xr.DataArray:
    if not channels:
        raise DataError(f"{path}: holds no image data")
    for c in channels:
        if c.data.size == 0:
            raise DataError(f"{path}: channel {c.name!r} is empty (shape {c.data.shape})")
        if c.data.ndim not in (2, 3):
            raise DataError(f"{path}: channel {c.name!r} has shape {c.data.shape}; expected "
                            "2-D (y, x) or 3-D (y, x, spectrum)")
    first = channels[0]
    if len(channels) > 1:
        shapes = {c.name: c.data.shape for c in channels}
        if len(set(shapes.values())) > 1 or first.data.ndim != 2:
            raise DataError(f"{path}: channels of different shapes or spectral channels "
                            f"{shapes} cannot be stacked; choose one with channel=")
    coords = {}
    for dim, (values, attrs) in first.coords.items():
        values, attrs = np.asarray(values, float), dict(attrs)
        attrs["units"] = clean_units(attrs.get("units")) or ("px" if dim in ("y", "x") else "")
        if attrs["units"] == "m":
            values, attrs["units"] = readable_length(values)
        coords[dim] = (dim, values, attrs)
    if len(channels) > 1:
        stack = np.stack if all(isinstance(c.data, np.ndarray) for c in channels) else _dask_stack
        data = stack([c.data for c in channels], axis=-1)
    else:
        data = first.data
    if data.dtype.kind in "biu":  # integer counts: models and NaN fill need floats
        data = data.astype(np.float32)
    units = [clean_units(c.units) for c in channels]
    phase = []
    for i, c in enumerate(channels):
        if c.is_phase if c.is_phase is not None else _is_phase(c.name, units[i]):
            phase.append(c.name)
            if units[i] not in ("deg", "rad"):  # some writers store a phase in "m"
                span = float(np.nanmax(c.data) - np.nanmin(c.data))  # a dask reduction when lazy
                units[i] = "deg" if span > 2 * math.pi * 1.05 else "rad"
    attrs = {"source": str(path), "format": fmt, **first.attrs,
             "metadata": metadata_summary(first.metadata), "phase_channels": phase}
    if len(channels) > 1:
        dims = ("y", "x", "channel")
        coords["channel"] = ("channel", [c.name for c in channels])
        attrs["channel_units"] = units
        name = path.stem
    else:
        dims = ("y", "x") + ((first.spectral_dim,) if data.ndim == 3 else ())
        attrs["units"] = units[0]
        attrs["long_name"] = first.name
        name = first.name
    return xr.DataArray(data, dims=dims, coords=coords, name=name, attrs=attrs)


def _dask_stack(arrays, axis):
    import dask.array as da

    return da.stack(arrays, axis=axis)


def _fill_lazy(image: xr.DataArray, path: Path, fill_nan) -> xr.DataArray:
    """NaN/Inf filling without reading the image: a number, or each channel's mean."""
    if fill_nan is None:
        return image
    finite = np.isfinite(image)
    if fill_nan == "mean":
        value = image.where(finite).mean(("y", "x"))
    elif isinstance(fill_nan, (int, float)) and not isinstance(fill_nan, bool):
        value = fill_nan
    else:
        raise SettingsError(f"{path}: with lazy=True, fill_nan must be a number or 'mean' "
                            f"(got {fill_nan!r}); 'median' and 'interpolate' need the image in memory")
    out = image.where(finite, value)
    out.attrs = {**image.attrs, "preprocessing": [*image.attrs.get("preprocessing", []),
                                                  f"fill_nan={fill_nan!r}: replaced NaN and Inf values"]}
    return out


def _check_finite(image: xr.DataArray, path: Path, fill_nan) -> xr.DataArray:
    values = image.values
    bad = ~np.isfinite(values)
    n_bad = int(bad.sum())
    if n_bad == 0:
        return image
    n_nan, n_inf = int(np.isnan(values).sum()), int(np.isinf(values).sum())
    if fill_nan is None:
        raise DataError(
            f"{path}: {n_nan} NaN and {n_inf} Inf values out of {values.size}; pass "
            "fill_nan='mean', 'median', 'interpolate' or a number to replace them"
        )
    if n_bad == values.size:
        raise DataError(f"{path}: every value is NaN or Inf; nothing to fill from")
    filled = values.astype(np.result_type(values.dtype, np.float32), copy=True)
    filled[bad] = np.nan
    spatial = (0, 1)
    if isinstance(fill_nan, (int, float)) and not isinstance(fill_nan, bool):
        filled[bad] = fill_nan
    elif fill_nan in ("mean", "median"):
        empty = bad.all(axis=spatial)
        if np.any(empty):
            raise DataError(f"{path}: {int(np.sum(empty))} channel(s) or spectral point(s) "
                            f"are entirely NaN/Inf; fill_nan={fill_nan!r} has nothing to use")
        stat = np.nanmean if fill_nan == "mean" else np.nanmedian
        per_channel = stat(filled, axis=spatial, keepdims=True)  # one value per channel
        filled = np.where(bad, np.broadcast_to(per_channel, filled.shape), filled)
    elif fill_nan == "interpolate":
        from skimage.restoration import inpaint_biharmonic

        mask = bad if filled.ndim == 2 else bad.any(axis=-1)
        filled = inpaint_biharmonic(np.nan_to_num(filled), mask,
                                    channel_axis=-1 if filled.ndim == 3 else None)
    else:
        raise DataError(f"fill_nan must be one of {FILL_NAN_METHODS} or a number, not {fill_nan!r}")
    out = image.copy(data=filled.astype(values.dtype if values.dtype.kind == "f" else np.float32))
    note = f"fill_nan={fill_nan!r}: replaced {n_nan} NaN and {n_inf} Inf values"
    out.attrs["preprocessing"] = [*image.attrs.get("preprocessing", []), note]
    return out


# -------------------------------------------------------------------------- helpers


def _is_phase(name: str, units: str) -> bool:
    """A phase angle by its name or units; the cos/sin of a phase is not an angle."""
    lower = name.lower()
    if lower.endswith(("_cos", "_sin")):
        return False
    return "phase" in lower or units in ("deg", "rad")


def _safe_dim_name(name: str) -> str:
    """A dim name NetCDF accepts: ``"$\\sqrt E$"`` -> ``"sqrt_E"``."""
    cleaned = re.sub(r"[^0-9A-Za-z]+", "_", name).strip("_")
    if not cleaned or cleaned in ("y", "x", "channel") or cleaned[0].isdigit():
        cleaned = f"spectral_{cleaned}" if cleaned else "spectral"
    return cleaned
