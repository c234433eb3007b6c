"""phyvae_dash.data.io.load: every real file, round trips through each format, every error."""
import json

import numpy as np
import pytest
import xarray as xr

from phyvae_dash.data.io import list_channels, load
from phyvae_dash.errors import DataError

# ------------------------------------------------------------------ real files


@pytest.mark.realdata
def test_pzt_nsid_eight_channels_two_micron(shared_data):
    image = load(shared_data / "pfm" / "PZT_final0001.h5")
    assert image.dims == ("y", "x", "channel")
    assert image.shape == (256, 256, 8)
    assert image.attrs["format"] == "NSID"
    names = list(image.channel.values)
    assert names[:2] == ["HeightRetrace", "AmplitudeRetrace"]
    assert "PhaseRetrace" in names and "PhaseRetrace" in image.attrs["phase_channels"]
    units = dict(zip(names, image.attrs["channel_units"]))
    assert units["PhaseRetrace"] == "deg" and units["AmplitudeRetrace"] == "m"
    # The file copies "deg" onto the phase channel's x/y scales; the scan is still 2 µm.
    for dim in ("y", "x"):
        assert image[dim].attrs["units"] == "µm"
        assert float(image[dim][-1] - image[dim][0]) == pytest.approx(2.0)
    json.loads(image.attrs["metadata"])  # a NetCDF-safe string holding JSON


@pytest.mark.realdata
def test_pto_nsid_four_channels(shared_data):
    path = shared_data / "pfm" / "PTO_Funakubo0002.h5"
    image = load(path)
    assert image.shape == (256, 256, 4)
    assert list_channels(path) == list(image.channel.values)
    assert image.attrs["phase_channels"] == ["PhaseRetrace"]
    assert image.x.attrs["units"] == "µm"


@pytest.mark.realdata
def test_single_frequency_pfm_usid_reshaped_to_scan_grid(shared_data):
    path = shared_data / "pfm" / "SingFreqPFM_0003.h5"
    image = load(path)
    assert image.attrs["format"] == "USID"
    assert image.shape == (128, 128, 4)
    assert list(image.channel.values) == [
        "HeightRetrace", "AmplitudeRetrace", "DeflectionRetrace", "PhaseRetrace"]
    assert image.x.attrs["units"] == "µm"
    assert float(image.x[-1]) == pytest.approx(5.0, abs=0.1)
    # Raw_Data is stored flat with X varying fastest: row y holds positions y*128 ... y*128+127.
    import h5py

    with h5py.File(path, "r") as h5:
        flat = h5["Measurement_000/Channel_003/Raw_Data"][:, 0]
    np.testing.assert_array_equal(image.sel(channel="PhaseRetrace").values, flat.reshape(128, 128))
    # The phase is two-level (up/down domains, 180 degrees apart).
    phase = image.sel(channel="PhaseRetrace").values
    assert np.ptp(np.percentile(phase, [5, 95])) > 150


@pytest.mark.realdata
def test_select_one_channel_by_name_or_index(shared_data):
    path = shared_data / "pfm" / "SingFreqPFM_0003.h5"
    by_name = load(path, channel="PhaseRetrace")
    by_index = load(path, channel=3)
    assert by_name.dims == ("y", "x")
    assert by_name.attrs["units"] == "deg"
    assert by_name.attrs["phase_channels"] == ["PhaseRetrace"]
    xr.testing.assert_identical(by_name, by_index)
    pair = load(path, channel=["AmplitudeRetrace", "PhaseRetrace"])
    assert list(pair.channel.values) == ["AmplitudeRetrace", "PhaseRetrace"]


@pytest.mark.realdata
def test_bfo_spectral_map(shared_data):
    image = load(shared_data / "spectral" / "bfo_iv_final.hf5")
    assert image.shape == (50, 50, 53)
    assert image.dims[:2] == ("y", "x") and image.dims[2] != "channel"
    spectral = image[image.dims[2]]
    assert spectral.attrs["units"]
    assert np.all(np.diff(spectral.values) > 0)  # sqrt(E) grows along the sweep
    assert image.attrs["phase_channels"] == []


@pytest.mark.realdata
def test_mos2_npy_calibrated_by_json_sidecar(shared_data):
    image = load(shared_data / "stem" / "MoS2_stem_Exp-001-5.npy")
    assert image.dims == ("y", "x") and image.shape == (512, 512)
    for dim in ("y", "x"):
        assert image[dim].attrs["units"] == "nm"
        step = float(image[dim][1] - image[dim][0])
        assert step * 512 == pytest.approx(7.0)
    assert "60 kV" in image.attrs["metadata"]


@pytest.mark.realdata
def test_dm3_micrometre_units(shared_data):
    image = load(shared_data / "formats" / "test_dm_image_um_unit.dm3")
    assert image.dims == ("y", "x")
    assert image.x.attrs["units"] == "µm" and image.y.attrs["units"] == "µm"
    assert image.dtype.kind == "f"


# ------------------------------------------------------------------ round trips


def _calibrated(ny=20, nx=30, step=0.5):
    rng = np.random.default_rng(0)
    return xr.DataArray(
        rng.random((ny, nx)).astype(np.float32), dims=("y", "x"),
        coords={"y": ("y", np.arange(ny) * step, {"units": "nm"}),
                "x": ("x", np.arange(nx) * step, {"units": "nm"})},
    )


def test_npy_round_trip_in_pixels(tmp_path):
    data = np.random.default_rng(1).random((16, 24))
    np.save(tmp_path / "a.npy", data)
    image = load(tmp_path / "a.npy")
    np.testing.assert_array_equal(image.values, data)
    assert image.x.attrs["units"] == "px" and image.attrs["format"] == "numpy"


def test_npy_channels_last_and_first(tmp_path):
    data = np.random.default_rng(1).random((16, 24, 2))
    np.save(tmp_path / "last.npy", data)
    np.save(tmp_path / "first.npy", np.moveaxis(data, -1, 0))
    for name in ("last", "first"):
        image = load(tmp_path / f"{name}.npy")
        assert image.dims == ("y", "x", "channel") and image.shape == (16, 24, 2)
        np.testing.assert_array_equal(image.values, data)


def test_npy_long_third_axis_is_spectral_and_dims_override(tmp_path):
    np.save(tmp_path / "cube.npy", np.ones((20, 24, 40)))
    assert load(tmp_path / "cube.npy").dims == ("y", "x", "spectral")
    assert load(tmp_path / "cube.npy", dims=("y", "x", "energy")).dims == ("y", "x", "energy")


def test_npz_round_trip_channels_and_key(tmp_path):
    amp, phase = np.ones((8, 10)), np.full((8, 10), 90.0)
    np.savez(tmp_path / "pfm.npz", amplitude=amp, phase=phase)
    image = load(tmp_path / "pfm.npz")
    assert list(image.channel.values) == ["amplitude", "phase"]
    assert image.attrs["phase_channels"] == ["phase"]
    assert load(tmp_path / "pfm.npz", key="amplitude").dims == ("y", "x")
    with pytest.raises(DataError, match="no array 'height'.*amplitude"):
        load(tmp_path / "pfm.npz", key="height")


def test_npz_with_json_pixel_size(tmp_path):
    np.savez(tmp_path / "s.npz", image=np.zeros((10, 10)))
    (tmp_path / "s.json").write_text(json.dumps({"pixel_size": 0.2, "units": "nm"}))
    image = load(tmp_path / "s.npz")
    assert image.x.attrs["units"] == "nm"
    assert float(image.x[1]) == pytest.approx(0.2)


def test_tiff_round_trip_with_imagej_calibration(tmp_path):
    import tifffile

    ref = _calibrated()
    tifffile.imwrite(tmp_path / "a.tif", ref.values, imagej=True,
                     resolution=(1 / 0.5, 1 / 0.5), metadata={"unit": "nm"})
    image = load(tmp_path / "a.tif")
    np.testing.assert_array_equal(image.values, ref.values)
    assert image.x.attrs["units"] == "nm"
    np.testing.assert_allclose(image.x.values, ref.x.values)
    tifffile.imwrite(tmp_path / "plain.tif", ref.values)
    assert load(tmp_path / "plain.tif").x.attrs["units"] == "px"


def test_png_rgb_to_gray_or_channels(tmp_path):
    import imageio.v3 as iio

    gray = (np.arange(64 * 48) % 251).reshape(64, 48).astype(np.uint8)
    iio.imwrite(tmp_path / "g.png", np.stack([gray] * 3, axis=-1))
    image = load(tmp_path / "g.png")
    assert image.dims == ("y", "x")
    np.testing.assert_allclose(image.values, gray, atol=0.01)  # r = g = b: luminance is the value
    rgb = load(tmp_path / "g.png", rgb="channels")
    assert list(rgb.channel.values) == ["R", "G", "B"]


@pytest.mark.filterwarnings("ignore::UserWarning")  # zarr v3 string dtype notes
def test_netcdf_and_zarr_round_trip(tmp_path):
    ref = _calibrated()
    ref.name, ref.attrs = "height", {"units": "m"}
    ref.to_netcdf(tmp_path / "a.nc")
    image = load(tmp_path / "a.nc")
    xr.testing.assert_allclose(image, ref)
    assert image.x.attrs["units"] == "nm" and image.attrs["format"] == "NetCDF"
    # What load returns must itself be storable: the attrs are NetCDF-safe.
    multi = xr.concat([ref, ref * 2], dim="channel").transpose("y", "x", "channel")
    multi = multi.assign_coords(channel=["a", "b"])
    multi.to_dataset(name="scan").to_zarr(tmp_path / "m.zarr")
    loaded = load(tmp_path / "m.zarr")
    assert list(loaded.channel.values) == ["a", "b"]
    loaded.to_netcdf(tmp_path / "again.nc")
    xr.testing.assert_allclose(load(tmp_path / "again.nc"), loaded)


def test_netcdf_dataset_picks_image_variable(tmp_path):
    ref = _calibrated()
    xr.Dataset({"image": ref, "labels": ref.astype(int)}).to_netcdf(tmp_path / "ph.nc")
    assert load(tmp_path / "ph.nc").name == "image"
    with pytest.raises(DataError, match="no variable 'nope'"):
        load(tmp_path / "ph.nc", variable="nope")


@pytest.mark.realdata
def test_real_file_survives_netcdf(shared_data, tmp_path):
    image = load(shared_data / "pfm" / "PTO_Funakubo0002.h5")
    image.to_netcdf(tmp_path / "pto.nc")
    back = load(tmp_path / "pto.nc")
    assert list(back.channel.values) == list(image.channel.values)
    assert back.attrs["channel_units"] == image.attrs["channel_units"]


# ------------------------------------------------------------------ errors


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load(tmp_path / "absent.npy")


def test_unknown_format(tmp_path):
    (tmp_path / "notes.xyz").write_text("hello")
    with pytest.raises(DataError, match=r"notes\.xyz.*unknown format \.xyz"):
        load(tmp_path / "notes.xyz")


@pytest.mark.parametrize("name", ["bad.h5", "bad.npy", "bad.tif", "bad.png", "bad.dm3", "bad.nc",
                                  "bad.ibw"])
def test_corrupt_files_give_data_error_naming_the_file(tmp_path, name):
    (tmp_path / name).write_bytes(b"\x00\x01 definitely not a real file " * 10)
    with pytest.raises(DataError, match=name.replace(".", r"\.")):
        load(tmp_path / name)


def test_hdf5_of_unknown_layout(tmp_path):
    import h5py

    with h5py.File(tmp_path / "plain.h5", "w") as h5:
        h5["data"] = np.ones((4, 4))
    with pytest.raises(DataError, match="neither pycroscopy NSID/USID"):
        load(tmp_path / "plain.h5")


def test_pickled_npy_refused(tmp_path):
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match="pickled"):
        load(tmp_path / "obj.npy")


@pytest.mark.parametrize("shape", [(10,), (2, 3, 4, 5, 6)])  # 4-D is 4D-STEM (test_fourd)
def test_wrong_dimensionality(tmp_path, shape):
    np.save(tmp_path / "w.npy", np.ones(shape))
    with pytest.raises(DataError, match="wrong dimensionality"):
        load(tmp_path / "w.npy")


def test_empty_array(tmp_path):
    np.save(tmp_path / "e.npy", np.ones((0, 5)))
    with pytest.raises(DataError, match="empty"):
        load(tmp_path / "e.npy")


def test_nan_inf_counted_and_filled(tmp_path):
    data = np.arange(100.0).reshape(10, 10)
    data[2, 3] = np.nan
    data[5, 5] = np.nan
    data[7, 1] = np.inf
    np.save(tmp_path / "n.npy", data)
    with pytest.raises(DataError, match="2 NaN and 1 Inf"):
        load(tmp_path / "n.npy")
    finite = data[np.isfinite(data)]
    assert float(load(tmp_path / "n.npy", fill_nan="mean")[2, 3]) == pytest.approx(finite.mean())
    assert float(load(tmp_path / "n.npy", fill_nan="median")[2, 3]) == pytest.approx(np.median(finite))
    assert float(load(tmp_path / "n.npy", fill_nan=0)[7, 1]) == 0.0
    smooth = load(tmp_path / "n.npy", fill_nan="interpolate")
    # A linear ramp is inpainted back to itself.
    assert float(smooth[5, 5]) == pytest.approx(55.0, abs=0.5)
    assert "replaced 2 NaN and 1 Inf" in smooth.attrs["preprocessing"][0]
    with pytest.raises(DataError, match="fill_nan must be"):
        load(tmp_path / "n.npy", fill_nan="zero")


def test_unknown_channel_lists_existing(tmp_path):
    np.savez(tmp_path / "c.npz", amplitude=np.ones((4, 4)), phase=np.ones((4, 4)))
    with pytest.raises(DataError, match=r"no channel 'height'.*\['amplitude', 'phase'\]"):
        load(tmp_path / "c.npz", channel="height")
    with pytest.raises(DataError, match="index 5 out of range"):
        load(tmp_path / "c.npz", channel=5)


@pytest.mark.realdata
def test_unknown_channel_in_real_file(shared_data):
    with pytest.raises(DataError, match="no channel 'Topography'.*HeightRetrace"):
        load(shared_data / "pfm" / "PTO_Funakubo0002.h5", channel="Topography")


def test_unsupported_nanonis_file_says_so(tmp_path):
    (tmp_path / "scan.sxm").write_bytes(b"\x00" * 64)
    with pytest.raises(DataError, match="unsupported format .sxm"):
        load(tmp_path / "scan.sxm")


def test_reader_option_typo_is_a_data_error(tmp_path):
    np.save(tmp_path / "a.npy", np.ones((4, 4)))
    with pytest.raises(DataError, match="option not understood"):
        load(tmp_path / "a.npy", colour="red")


def test_netcdf_written_from_load_keeps_history(tmp_path):
    np.savez(tmp_path / "pfm.npz", amplitude=np.ones((8, 10)), phase=np.full((8, 10), 90.0))
    image = load(tmp_path / "pfm.npz")
    image.attrs["preprocessing"] = ["flatten(order=1)"]
    image.to_netcdf(tmp_path / "pfm.nc")
    back = load(tmp_path / "pfm.nc")
    assert back.attrs["metadata"] == image.attrs["metadata"]
    assert back.attrs["original_source"] == str(tmp_path / "pfm.npz")
    assert list(back.attrs["preprocessing"]) == ["flatten(order=1)"]
    assert back.attrs["phase_channels"] == ["phase"]


@pytest.mark.filterwarnings("ignore::UserWarning")  # pyNSID's own deprecation notes
def test_nsid_written_by_pynsid_in_either_axis_order(tmp_path):
    import h5py
    import sidpy
    from pyNSID.io.hdf_io import write_nsid_dataset

    data = np.random.default_rng(0).random((12, 16)).astype(np.float32)  # (y, x)
    for order, array in (("yx", data), ("xy", data.T)):
        ds = sidpy.Dataset.from_array(array, title="Height")
        ds.quantity, ds.units, ds.data_type = "Height", "nm", "IMAGE"
        for axis, dim in enumerate(order):
            n = array.shape[axis]
            ds.set_dimension(axis, sidpy.Dimension(np.arange(n) * 2.0, name=dim, units="nm",
                                                   quantity="Length", dimension_type="spatial"))
        with h5py.File(tmp_path / f"{order}.h5", "w") as h5:
            write_nsid_dataset(ds, h5.create_group("Measurement_000/Channel_000"),
                               main_data_name="Height")
        image = load(tmp_path / f"{order}.h5")
        assert image.dims == ("y", "x") and image.name == "Height"
        np.testing.assert_array_equal(image.values, data)
        assert image.x.attrs["units"] == "nm" and image.attrs["units"] == "nm"
        assert float(image.x[-1]) == 30.0


def _hspy_signal(data, axes, title):
    """The minimal signal dict rosettasciio's HyperSpy writer needs."""
    return {"data": data, "axes": axes, "original_metadata": {}, "tmp_parameters": {},
            "metadata": {"General": {"title": title}, "Signal": {"signal_type": ""}},
            "attributes": {"_lazy": False}, "learning_results": {}, "models": {},
            "package_info": {"name": "", "version": ""}}


def test_rosettasciio_hspy_image_and_spectrum_image(tmp_path):
    from rsciio.hspy import file_writer

    image = np.random.default_rng(0).random((10, 12))
    file_writer(str(tmp_path / "haadf.hspy"), _hspy_signal(image, [
        {"name": "y", "size": 10, "scale": 0.5, "offset": 0.0, "units": "nm", "navigate": False},
        {"name": "x", "size": 12, "scale": 0.5, "offset": 1.0, "units": "nm", "navigate": False},
    ], "HAADF"))
    loaded = load(tmp_path / "haadf.hspy")
    assert loaded.dims == ("y", "x") and loaded.name == "HAADF"
    np.testing.assert_array_equal(loaded.values, image)
    assert loaded.x.values[:2].tolist() == [1.0, 1.5] and loaded.x.attrs["units"] == "nm"

    cube = np.random.default_rng(1).random((6, 7, 30))
    file_writer(str(tmp_path / "eels.hspy"), _hspy_signal(cube, [
        {"name": "y", "size": 6, "scale": 1, "offset": 0.0, "units": "um", "navigate": True},
        {"name": "x", "size": 7, "scale": 1, "offset": 0.0, "units": "um", "navigate": True},
        {"name": "Energy loss", "size": 30, "scale": 0.1, "offset": 400, "units": "eV",
         "navigate": False},
    ], "EELS"))
    spectrum_image = load(tmp_path / "eels.hspy")
    assert spectrum_image.dims == ("y", "x", "energy")  # energy axes are "energy", in eV
    assert spectrum_image.x.attrs["units"] == "µm"
    assert spectrum_image.energy.attrs["units"] == "eV"
    np.testing.assert_allclose(spectrum_image.energy.values[:2], [400.0, 400.1])


def test_fill_nan_refuses_an_all_nan_channel(tmp_path):
    amplitude = np.ones((6, 6))
    np.savez(tmp_path / "c.npz", amplitude=amplitude, phase=np.full((6, 6), np.nan))
    with pytest.raises(DataError, match="36 NaN and 0 Inf"):
        load(tmp_path / "c.npz")
    with pytest.raises(DataError, match="entirely NaN"):
        load(tmp_path / "c.npz", fill_nan="mean")
    assert load(tmp_path / "c.npz", channel="amplitude").shape == (6, 6)


def test_tiff_centimetre_resolution_and_inch_dpi(tmp_path):
    import tifffile

    data = np.zeros((8, 10), np.uint16)
    # 1e4 pixels per cm = 1 µm per pixel.
    tifffile.imwrite(tmp_path / "cm.tif", data, resolution=(1e4, 1e4), resolutionunit="CENTIMETER")
    image = load(tmp_path / "cm.tif")
    assert image.x.attrs["units"] == "µm" and float(image.x[1]) == pytest.approx(1.0)
    assert image.dtype == np.float32  # integer counts become floats
    # 72 dpi is a print setting, not a calibration.
    tifffile.imwrite(tmp_path / "dpi.tif", data, resolution=(72, 72), resolutionunit="INCH")
    assert load(tmp_path / "dpi.tif").x.attrs["units"] == "px"


def test_top_level_load_is_this_load(tmp_path):
    import phyvae_dash

    assert phyvae_dash.load is load


# ------------------------------------------------------------- Igor binary waves


def _write_ibw(path, data, *, scale=(1.0, 1.0, 1.0, 1.0), offset=(0.0, 0.0, 0.0, 0.0),
               dim_units=("", "", "", ""), data_units="", layer_labels=None, note="",
               name="wave0", order="<"):
    """Write an Igor binary wave, version 5 (TN003; the layouts of igor2.binarywave).

    ``data`` is indexed as Igor indexes a wave: (row, column[, layer]); Igor stores it
    column-major. The checksum is left 0 (igor2 does not verify it).
    """
    import struct

    data = np.asarray(data, dtype=np.dtype("float32").newbyteorder(order))
    n_dim = [*data.shape, *([0] * (4 - data.ndim))]
    payload = data.tobytes(order="F")
    labels = [b""] * 4
    if layer_labels is not None:  # the dimension's own label first, then one per layer
        labels[2] = b"".join(s.encode().ljust(32, b"\0")[:32] for s in ["", *layer_labels])
    note_bytes = note.encode()
    wave_header = struct.pack(
        order + "IIIlhh6sh32slI4l4d4d4s16shhddI4I4II16lhhhccIlhhII",
        0, 0, 0, data.size, 2, 0, b"", 1, name.encode(), 0, 0,  # type 2: float32
        *n_dim, *map(float, scale), *map(float, offset), data_units.encode(),
        b"".join(u.encode().ljust(4, b"\0")[:4] for u in dim_units),
        0, 0, 0.0, 0.0, 0, *[0] * 4, *[0] * 4, 0, *[0] * 16,
        0, 0, 0, b"\0", b"\0", 0, 0, 0, 0, 0, 0)
    assert len(wave_header) == 320
    bin_header = struct.pack(order + "2h4l4l4l3l", 5, 0, 320 + len(payload), 0,
                             len(note_bytes), 0, 0, 0, 0, 0, *map(len, labels), 0, 0, 0)
    assert len(bin_header) == 64
    path.write_bytes(bin_header + wave_header + payload + note_bytes + b"".join(labels))
    return path


def _asylum_scan(n_rows=12, n_cols=8):
    """Igor (row, column, layer) data whose value encodes its position: layer*10000 +
    row*100 + column. Asylum: rows = fast scan axis x, columns = slow scan axis y."""
    row, col, layer = np.meshgrid(np.arange(n_rows), np.arange(n_cols), np.arange(3),
                                  indexing="ij")
    return layer * 10000.0 + row * 100.0 + col


@pytest.mark.parametrize("order", ["<", ">"])
def test_ibw_asylum_pfm_scan(tmp_path, order):
    path = _write_ibw(
        tmp_path / "PZT0001.ibw", _asylum_scan(), scale=(2.5e-7, 2e-7, 1, 1),
        offset=(1e-7, 5e-7, 0, 0), dim_units=("m", "m", "", ""), data_units="m",
        layer_labels=["HeightRetrace", "AmplitudeRetrace", "PhaseRetrace"],
        note="ScanSize: 2e-06\rScanAngle: 90\rImagingMode: PFM Mode\rsource: tip\r"
             "Odd key: 1\rNoColon\r", order=order)
    image = load(path)
    assert image.attrs["format"] == "IBW"
    assert image.attrs["source"] == str(path)
    assert image.dims == ("y", "x", "channel")
    assert image.shape == (8, 12, 3)  # 8 scan lines (Igor columns) of 12 points (rows)
    assert list(image.channel.values) == ["HeightRetrace", "AmplitudeRetrace", "PhaseRetrace"]
    assert list_channels(path) == list(image.channel.values)
    assert image.attrs["phase_channels"] == ["PhaseRetrace"]
    assert image.attrs["channel_units"] == ["m", "m", "deg"]
    # x from sfA[0]/sfB[0], y from sfA[1]/sfB[1]; metres shown in µm.
    assert image.x.attrs["units"] == image.y.attrs["units"] == "µm"
    np.testing.assert_allclose(image.x.values, 0.1 + 0.25 * np.arange(12))
    np.testing.assert_allclose(image.y.values, 0.5 + 0.2 * np.arange(8))
    # Orientation: image[y=j, x=i] is Igor's wave[row=i, column=j].
    for k, name in enumerate(image.channel.values):
        layer = image.sel(channel=name)
        assert float(layer[0, 0]) == 10000 * k
        assert float(layer[5, 3]) == 10000 * k + 305  # y index 5, x index 3
        assert float(layer[7, 11]) == 10000 * k + 1107
        assert float(layer.isel(y=2).sel(x=0.6)) == 10000 * k + 202
    assert image.dtype == np.float32 and image.values.dtype.isnative
    # The note's simple Key: Value lines are string attrs; load's own names are kept safe.
    assert image.attrs["ScanSize"] == "2e-06"
    assert image.attrs["ScanAngle"] == "90"
    assert image.attrs["ImagingMode"] == "PFM Mode"
    # The whole note is kept as JSON; a note key named like one of load()'s attrs is renamed.
    assert json.loads(image.attrs["ibw_note"])["note_source"] == "tip"
    assert image.attrs["source"] == str(path)
    assert not any(k.startswith(("Odd", "NoColon")) for k in image.attrs)
    assert json.loads(image.attrs["metadata"])["ScanSize"] == "2e-06"
    # A loaded Igor scan survives NetCDF (attrs are all NetCDF-safe).
    image.to_netcdf(tmp_path / "scan.nc")
    back = load(tmp_path / "scan.nc")
    assert back.attrs["phase_channels"] == ["PhaseRetrace"]
    np.testing.assert_array_equal(back.values, image.values)


def test_ibw_select_phase_channel(tmp_path):
    path = _write_ibw(tmp_path / "s.ibw", _asylum_scan(), dim_units=("m", "m", "", ""),
                      scale=(1e-8, 1e-8, 1, 1),
                      layer_labels=["HeightRetrace", "AmplitudeRetrace", "PhaseRetrace"])
    phase = load(path, channel="PhaseRetrace")
    assert phase.dims == ("y", "x")
    assert phase.attrs["units"] == "deg" and phase.attrs["phase_channels"] == ["PhaseRetrace"]
    assert float(phase[1, 2]) == 20201
    assert phase.x.attrs["units"] == "nm"


def test_ibw_two_dimensional_wave(tmp_path):
    data = np.arange(12 * 8, dtype=float).reshape(12, 8)  # Igor rows (x) by columns (y)
    path = _write_ibw(tmp_path / "height.ibw", data, scale=(0.5, 0.25, 1, 1),
                      dim_units=("nm", "nm", "", ""), data_units="nm", name="Height",
                      note="ScanSize: 6e-09\r")
    image = load(path)
    assert image.dims == ("y", "x") and image.shape == (8, 12)
    np.testing.assert_array_equal(image.values, data.T)
    assert image.attrs["long_name"] == "Height" and image.attrs["units"] == "nm"
    assert image.attrs["phase_channels"] == []
    assert image.x.attrs["units"] == "nm"
    np.testing.assert_allclose(image.x.values, 0.5 * np.arange(12))
    np.testing.assert_allclose(image.y.values, 0.25 * np.arange(8))
    assert image.attrs["ScanSize"] == "6e-09"


def test_ibw_uncalibrated_and_unlabelled_layers(tmp_path):
    path = _write_ibw(tmp_path / "raw.ibw", _asylum_scan(6, 4))
    image = load(path)
    assert list(image.channel.values) == ["ch0", "ch1", "ch2"]
    assert image.x.attrs["units"] == image.y.attrs["units"] == "px"
    assert image.attrs["phase_channels"] == []
    assert image.shape == (4, 6, 3) and float(image[3, 5, 2]) == 20503


def test_ibw_truncated_or_wrong_gives_data_error(tmp_path):
    full = _write_ibw(tmp_path / "full.ibw", _asylum_scan(),
                      layer_labels=["HeightRetrace", "AmplitudeRetrace", "PhaseRetrace"],
                      note="ScanSize: 2e-06\r").read_bytes()
    for n in (len(full) - 10, 64 + 320 + 100, 100, 30, 3):  # labels, data, header cut off
        (tmp_path / "cut.ibw").write_bytes(full[:n])
        with pytest.raises(DataError, match=r"cut\.ibw.*(truncated|too short)"):
            load(tmp_path / "cut.ibw")
    (tmp_path / "zeros.ibw").write_bytes(b"\x00" * 64)
    with pytest.raises(DataError, match=r"zeros\.ibw: not an Igor binary wave"):
        load(tmp_path / "zeros.ibw")
    one_d = _write_ibw(tmp_path / "line.ibw", np.arange(10.0))
    with pytest.raises(DataError, match=r"line\.ibw.*wrong dimensionality"):
        load(one_d)
