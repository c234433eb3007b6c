"""4D-STEM and EELS: readers (files written here), phantoms, features, fit, viewer numerics."""
from __future__ import annotations

import warnings

import h5py
import numpy as np
import pytest
import xarray as xr

from phyvae_dash.data import fourd, synthetic_spectral
from phyvae_dash.data.io import load
from phyvae_dash.errors import DataError, SettingsError
from phyvae_dash.models import features_4d, features_eels
from phyvae_dash.models.features import prepare_inputs

RNG = np.random.default_rng(0)
DATA = RNG.poisson(3, (4, 5, 8, 8)).astype(np.uint16)


def _write_mrc(path, stack, mode=6, cut=0):
    """An MRC2014 file: 1024-byte header (nx, ny, nz, mode ...), then the values."""
    nz, ny, nx = stack.shape
    header = np.zeros(256, "<i4")
    header[:4] = [nx, ny, nz, mode]
    header[7:10] = [nx, ny, nz]
    header.view("<f4")[10:13] = [nx, ny, nz]
    header[16:19] = [1, 2, 3]
    header[52] = np.frombuffer(b"MAP ", "<i4")[0]
    header[53] = 0x00004444
    raw = header.tobytes() + stack.astype("<u2").tobytes()
    path.write_bytes(raw[:len(raw) - cut])


def _write_emd1(path, data, q_units="A^-1"):
    """py4DSTEM's DataCube in the EMD 1.0 layout (linear dims stored by two values)."""
    with h5py.File(path, "w") as f:
        f.attrs["emd_group_type"] = "root"
        f.attrs["version_major"] = 1
        f.attrs["version_minor"] = 0
        group = f.create_group("experiment/datacube")
        group.attrs["emd_group_type"] = 1
        group.attrs["python_class"] = "DataCube"
        group.create_dataset("data", data=data)
        dims = [([0.0, 2.0], "nm"), ([0.0, 2.0], "nm"), ([-0.04, -0.03], q_units),
                ([-0.04, -0.03], q_units)]
        for k, (values, units) in enumerate(dims, start=1):
            node = group.create_dataset(f"dim{k}", data=np.array(values))
            node.attrs["units"] = units


def _signal(data, axes, signal_type):
    return {"data": data, "axes": axes, "original_metadata": {}, "tmp_parameters": {},
            "attributes": {"_lazy": False}, "learning_results": {}, "models": {}, "package_info": {"name": "test", "version": "0"},
            "metadata": {"General": {"title": "t"}, "Signal": {"signal_type": signal_type}}}


def _axis(name, size, scale, units, navigate):
    return {"name": name, "size": size, "scale": scale, "offset": 0.0, "units": units,
            "navigate": navigate}


def test_mrc_stack_with_scan_shape_reads_as_4d(tmp_path):
    path = tmp_path / "scan.mrc"
    _write_mrc(path, DATA.reshape(20, 8, 8))
    data = load(path, scan_shape=(4, 5))
    assert data.dims == fourd.FOURD_DIMS and data.shape == (4, 5, 8, 8)
    np.testing.assert_array_equal(data.values, DATA)
    assert data.attrs["detector_units"] == "px"


def test_mrc_stack_without_scan_shape_says_how(tmp_path):
    path = tmp_path / "stack.mrc"
    _write_mrc(path, DATA.reshape(20, 8, 8))
    with pytest.raises(DataError, match=r"stack.mrc.*tilt or time series.*scan_shape"):
        load(path)


@pytest.mark.parametrize("cut", [100, -64])
def test_truncated_or_oversized_mrc_names_the_file(tmp_path, cut):
    path = tmp_path / "bad.mrc"
    _write_mrc(path, DATA.reshape(20, 8, 8), cut=max(cut, 0))
    if cut < 0:
        path.write_bytes(path.read_bytes() + b"\0" * -cut)
    with pytest.raises(DataError, match=r"bad.mrc: MRC file (truncated|longer)"):
        load(path, scan_shape=(4, 5))


def test_truncated_mib_names_the_file(tmp_path):
    header = "MQ1,000001,00384,01,0008,0008,U16,   1x1,01,2020-01-01 00:00:00,0.001,0,0,0"
    frame = header.ljust(384).encode() + np.zeros(64, ">u2").tobytes()
    path = tmp_path / "cut.mib"
    path.write_bytes(frame * 4 + frame[:100])
    with pytest.raises(DataError, match=r"cut.mib: truncated"):
        load(path)


def test_emd1_py4dstem_layout_reads_calibrations(tmp_path):
    path = tmp_path / "cube.h5"
    _write_emd1(path, DATA)
    data = load(path)
    assert data.dims == fourd.FOURD_DIMS
    assert data.y.attrs["units"] == "nm" and data.kx.attrs["units"] == "1/Å"
    np.testing.assert_allclose(data.kx.values[:2], [-0.04, -0.03])
    assert data.attrs["detector_calibration"] == "file"


def test_hspy_4d_and_lazy(tmp_path):
    import rsciio.hspy

    axes = [_axis("y", 4, 2.0, "nm", True), _axis("x", 5, 2.0, "nm", True),
            _axis("ky", 8, 0.5, "mrad", False), _axis("kx", 8, 0.5, "mrad", False)]
    path = tmp_path / "scan.hspy"
    rsciio.hspy.file_writer(str(path), _signal(DATA, axes, "electron_diffraction"))
    data = load(path)
    np.testing.assert_array_equal(data.values, DATA)
    assert data.kx.attrs["units"] == "mrad" and data.x.attrs["units"] == "nm"
    lazy = load(path, lazy=True)
    assert hasattr(lazy.data, "dask")
    ring = fourd.virtual_image(lazy, "annular", inner=0.5, outer=1.5)
    assert hasattr(ring.data, "dask")  # stays lazy until asked
    np.testing.assert_allclose(ring.values,
                               fourd.virtual_image(data, "annular", inner=0.5, outer=1.5).values)


def test_blockfile_non_reciprocal_units_load_in_pixels(tmp_path):
    import rsciio.blockfile

    axes = [_axis("y", 4, 2.0, "nm", True), _axis("x", 5, 2.0, "nm", True),
            _axis("ky", 8, 0.5, "1/nm", False), _axis("kx", 8, 0.5, "1/nm", False)]
    path = tmp_path / "scan.blo"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the writer warns about units it cannot convert
        rsciio.blockfile.file_writer(str(path), _signal(DATA.astype(np.uint8), axes, ""))
    data = load(path)
    assert data.shape == (4, 5, 8, 8)
    assert data.attrs["detector_units"] == "px"
    assert "not a reciprocal unit" in data.attrs["detector_calibration"]


def test_numpy_and_zarr_with_explicit_dims(tmp_path):
    np.save(tmp_path / "t.npy", DATA.transpose(1, 0, 3, 2))
    data = load(tmp_path / "t.npy", dims=("x", "y", "kx", "ky"))
    np.testing.assert_array_equal(data.values, DATA)
    assert isinstance(load(tmp_path / "t.npy", lazy=True).data, np.memmap)
    xr.DataArray(DATA, dims=fourd.FOURD_DIMS).to_dataset(name="dp").to_zarr(tmp_path / "t.zarr")
    lazy = load(tmp_path / "t.zarr", lazy=True)
    assert hasattr(lazy.data, "dask")
    np.testing.assert_array_equal(lazy.values, DATA)


def test_non_square_uncalibrated_detector_says_so(tmp_path):
    np.save(tmp_path / "rect.npy", np.ones((3, 3, 8, 6), np.float32))
    data = load(tmp_path / "rect.npy")
    text = data.attrs["detector_calibration"]
    assert "pixels" in text and "not square (8 x 6)" in text


def test_three_d_numpy_stack_warns_what_it_assumed(tmp_path):
    np.save(tmp_path / "stack.npy", np.zeros((30, 20, 20)))
    with pytest.warns(UserWarning, match=r"as \('y', 'x', 'spectral'\).*tilt or time series.*dims="):
        load(tmp_path / "stack.npy")


def test_eels_hspy_comes_in_as_energy_in_ev(tmp_path):
    import rsciio.hspy

    si = synthetic_spectral.eels_phases(scan_shape=(10, 10), n_energy=32, seed=0).image
    axes = [_axis("y", 10, 1.0, "nm", True), _axis("x", 10, 1.0, "nm", True),
            {"name": "Energy loss", "size": 32, "offset": float(si.energy[0]),
             "scale": float(si.energy[1] - si.energy[0]), "units": "eV", "navigate": False}]
    path = tmp_path / "si.hspy"
    rsciio.hspy.file_writer(str(path), _signal(si.values, axes, "EELS"))
    loaded = load(path)
    assert loaded.dims == ("y", "x", "energy") and loaded.energy.attrs["units"] == "eV"
    assert features_eels.is_eels(loaded)
    assert prepare_inputs(loaded, 1, 1).transform == "eels"


def test_diffraction_phantom_ground_truth():
    ds = synthetic_spectral.diffraction_grains(scan_shape=(12, 12), detector=32, dose=500, seed=1)
    assert ds.image.dtype == np.uint16 and ds.image.dims == fourd.FOURD_DIMS
    assert set(np.unique(ds.phase_labels)) == {0, 1}
    assert ds.labels.max() + 1 == ds.attrs["n_grains"]
    assert abs(float(ds.image.sum(("ky", "kx")).mean()) - 500) < 30  # dose per pattern
    assert ds.boundaries.any()


def test_profiles_are_invariant_to_a_beam_shift():
    ds = synthetic_spectral.diffraction_grains(scan_shape=(8, 8), detector=32, dose=1e6,
                                               descan_px=0.0, seed=2)
    shifted = ds.image.copy(data=np.roll(ds.image.values, 1, axis=3))
    geometry = features_4d.pattern_geometry(ds.image)
    a, _ = features_4d.features_4d(ds.image, "profiles", geometry=geometry)
    b, _ = features_4d.features_4d(shifted, "profiles", geometry=geometry)
    v, _ = features_4d.features_4d(ds.image, "virtual", geometry=geometry)
    w, _ = features_4d.features_4d(shifted, "virtual", geometry=geometry)
    assert np.abs(a - b).mean() < 0.3 * np.abs(v - w).mean()


def test_rotation_invariant_profiles_ignore_orientation():
    ds = synthetic_spectral.diffraction_grains(scan_shape=(16, 16), detector=32, dose=1e5, seed=0)
    for transform, within_phase_close in (("profiles_invariant", True), ("profiles", False)):
        feats = prepare_inputs(ds.image, 1, 1, transform=transform).data.reshape(256, -1)
        labels, phases = ds.labels.values.ravel(), ds.phase_labels.values.ravel()
        means = np.array([feats[labels == g].mean(axis=0) for g in range(4)])
        same_phase = [np.linalg.norm(means[g] - means[h]) for g in range(4) for h in range(4)
                      if g < h and phases[labels == g][0] == phases[labels == h][0]]
        other_phase = [np.linalg.norm(means[g] - means[h]) for g in range(4) for h in range(4)
                       if phases[labels == g][0] != phases[labels == h][0]]
        assert (max(same_phase) < 0.5 * min(other_phase)) == within_phase_close, transform


def test_auto_transform_and_patch_averaging():
    ds = synthetic_spectral.diffraction_grains(scan_shape=(12, 12), detector=32, seed=0)
    inputs = prepare_inputs(ds.image, 1, 1)
    assert inputs.transform == "profiles" and "Bragg disks" in inputs.reason
    averaged = prepare_inputs(ds.image, 3, 2, transform="virtual")
    assert averaged.data.shape[:2] == (5, 5)
    np.testing.assert_allclose(averaged.y.values, ds.y.values[1:11:2])
    pattern = prepare_inputs(ds.image, 1, 1, transform="pattern")
    assert pattern.feature_shape == (1, 32, 32)
    with pytest.raises(SettingsError, match="needs 4D-STEM"):
        prepare_inputs(ds.image.isel(ky=0), 2, 1, transform="profiles")


def test_eels_background_subtraction_removes_thickness():
    ds = synthetic_spectral.eels_phases(scan_shape=(12, 12), n_energy=96, dose=1e5, seed=0)
    feats, options = features_eels.eels_features(ds.image)
    assert 440 < options["edge_onset_eV"] < 460
    assert 2.5 < options["mean_powerlaw_r"] < 3.5
    flat, labels = feats.reshape(144, -1), ds.labels.values.ravel()
    within = np.mean([flat[labels == k].std(axis=0).mean() for k in range(3)])
    assert within < 0.3 * flat.std(axis=0).mean()


def test_fit_on_4d_phantom_segments_grains():
    import phyvae_dash as pvd
    from phyvae_dash.analysis.metrics import adjusted_rand_index

    ds = synthetic_spectral.diffraction_grains(scan_shape=(16, 16), detector=32, seed=0)
    result = pvd.fit(ds.image, patch_size=1, stride=1, latent_dim=3, epochs=30, seed=0)
    assert result.attrs["transform"] == "profiles" and result.z_mean.shape == (3, 16, 16)
    labels = pvd.segment(result, n_domains=4)
    assert adjusted_rand_index(labels, ds.labels) > 0.8


def test_viewer_numerics():
    ds = synthetic_spectral.diffraction_grains(scan_shape=(8, 8), detector=32, seed=0)
    bf = fourd.virtual_image(ds.image, "bf")
    adf = fourd.virtual_image(ds.image, "adf")
    assert bf.attrs["outer"] <= adf.attrs["inner"]
    assert float(bf.mean()) > float(adf.mean())  # the bright-field disk is bright
    pattern = fourd.value_at(ds.image, float(ds.y[3]) + 0.4, float(ds.x[5]))
    np.testing.assert_array_equal(pattern.values, ds.image.values[3, 5])
    mask = np.zeros((8, 8), bool)
    mask[:2, :3] = True
    mean = fourd.selection_mean(ds.image, mask)
    np.testing.assert_allclose(mean.values, ds.image.values[:2, :3].mean(axis=(0, 1)), rtol=1e-5)
    assert mean.attrs["n_positions"] == 6
    with pytest.raises(SettingsError, match="annular"):
        fourd.virtual_image(ds.image, "annular")
    with pytest.raises(DataError, match="no scan positions"):
        fourd.selection_mean(ds.image, np.zeros((8, 8), bool))


@pytest.mark.realdata
def test_real_dm3_image_and_spectral_map_are_not_taken_for_4d_or_eels(shared_data):
    """A 2-D DM image stays an image; a real I-V map (sqrt E axis) is spectral, not EELS."""
    image = load(shared_data / "formats" / "test_dm_image_um_unit.dm3")
    assert image.dims == ("y", "x") and image.x.attrs["units"] == "µm"
    assert fourd.read_4d(shared_data / "formats" / "test_dm_image_um_unit.dm3") is None
    spectral = load(shared_data / "spectral" / "bfo_iv_final.hf5")
    assert spectral.ndim == 3 and not features_eels.is_eels(spectral)
    assert prepare_inputs(spectral, 1, 1).transform == "spectrum"
