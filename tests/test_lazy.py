"""Data larger than memory: lazy loading, sampled training, block-by-block encoding."""
import dask
import dask.array as da
import numpy as np
import pytest
import xarray as xr

import phyvae_dash as pvd
from phyvae_dash.analysis.metrics import adjusted_rand_index, labels_on_grid
from phyvae_dash.data import lazy as lazy_module
from phyvae_dash.errors import DataError, SettingsError
from phyvae_dash.models import blockwise


def _image(shape=(64, 56), seed=0):
    rng = np.random.default_rng(seed)
    values = np.zeros(shape, dtype=np.float32)
    values[:, shape[1] // 2:] = 1.0
    values += 0.2 * rng.normal(size=shape).astype(np.float32)
    coords = {d: (d, np.arange(n) * 0.5, {"units": "nm"}) for d, n in zip(("y", "x"), shape)}
    return xr.DataArray(values, dims=("y", "x"), coords=coords, name="haadf",
                        attrs={"units": "counts"})


@pytest.fixture
def small_blocks(monkeypatch):
    """Blocks of 5 x 5 positions, so that tiny images are cut into many blocks."""
    monkeypatch.setattr(blockwise, "POSITIONS_PER_BLOCK", 25)


@pytest.mark.parametrize("suffix", [".zarr", ".nc"])
def test_lazy_load_matches_eager_and_reads_nothing(tmp_path, suffix):
    path = tmp_path / f"scan{suffix}"
    image = _image()
    (image.to_dataset().to_zarr(path) if suffix == ".zarr" else image.to_netcdf(path))
    eager = pvd.load(path)
    lazy = pvd.load(path, lazy=True, chunks={"y": 16, "x": 16})
    assert isinstance(lazy.data, da.Array) and lazy.chunks[0][0] == 16
    assert lazy.dims == eager.dims and lazy.attrs == eager.attrs
    assert lazy.x.attrs == eager.x.attrs and np.array_equal(lazy.x, eager.x)
    np.testing.assert_array_equal(lazy.values, eager.values)


def test_lazy_load_nsid_and_rosettasciio(tmp_path):
    import h5py
    import sidpy
    from pyNSID.io.hdf_io import write_nsid_dataset
    from rsciio.hspy import file_writer

    data = np.random.default_rng(0).random((24, 20)).astype(np.float32)
    ds = sidpy.Dataset.from_array(data, title="Height")
    ds.quantity, ds.units, ds.data_type = "Height", "nm", "IMAGE"
    for axis, dim in enumerate("yx"):
        ds.set_dimension(axis, sidpy.Dimension(np.arange(data.shape[axis]) * 2.0, name=dim,
                                               units="nm", quantity="Length", dimension_type="spatial"))
    with h5py.File(tmp_path / "scan.h5", "w") as h5:
        write_nsid_dataset(ds, h5.create_group("Measurement_000/Channel_000"), main_data_name="Height")
    signal = {"data": data, "original_metadata": {}, "tmp_parameters": {},
              "metadata": {"General": {"title": "HAADF"}, "Signal": {"signal_type": ""}},
              "attributes": {"_lazy": False}, "learning_results": {}, "models": {},
              "package_info": {"name": "", "version": ""},
              "axes": [{"name": d, "size": n, "scale": 0.5, "offset": 0.0, "units": "nm",
                        "navigate": False} for d, n in zip("yx", data.shape)]}
    file_writer(str(tmp_path / "scan.hspy"), signal)
    for name in ("scan.h5", "scan.hspy"):
        lazy = pvd.load(tmp_path / name, lazy=True)
        assert isinstance(lazy.data, da.Array), name
        eager = pvd.load(tmp_path / name)
        assert lazy.attrs == eager.attrs and lazy.dims == ("y", "x")
        np.testing.assert_array_equal(lazy.values, data)
    # the NSID array travels to other processes (dask workers) by path, not as an open file
    import pickle
    lazy = pvd.load(tmp_path / "scan.h5", lazy=True)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(lazy)).values, data)


def test_eager_load_of_a_file_too_big_suggests_lazy(tmp_path, monkeypatch):
    path = tmp_path / "scan.zarr"
    _image().to_dataset().to_zarr(path)
    monkeypatch.setattr(lazy_module, "available_memory", lambda: 1000)
    with pytest.raises(DataError, match=r"lazy=True"):
        pvd.load(path)
    assert pvd.load(path, lazy=True).shape == (64, 56)  # lazily it still opens


def test_lazy_fill_nan_and_nan_refused_by_fit(tmp_path):
    image = _image()
    image[3, 4] = np.nan
    path = tmp_path / "scan.zarr"
    image.to_dataset().to_zarr(path)
    lazy = pvd.load(path, lazy=True)
    with pytest.raises(SettingsError, match="NaN"):
        pvd.fit(lazy, patch_size=8, stride=4, epochs=1)
    filled = pvd.load(path, lazy=True, fill_nan=0.0)
    assert float(filled[3, 4]) == 0.0 and isinstance(filled.data, da.Array)
    with pytest.raises(SettingsError, match="median"):
        pvd.load(path, lazy=True, fill_nan="median")


@pytest.mark.parametrize("transform, model", [("patch", "vae"), ("fft+mean", "shift")])
def test_chunked_encode_equals_in_memory_encode(small_blocks, transform, model, tmp_path):
    image = _image((61, 53))
    result = pvd.fit(image, patch_size=8, stride=3, epochs=1, transform=transform, model=model)
    in_memory = result.pvd.encode(image)
    chunked = result.pvd.encode(image.chunk(7))  # chunks smaller than the patch: re-cut
    assert chunked.z_mean.chunks is not None and len(chunked.z_mean.chunks[1]) > 2
    for name in in_memory.data_vars:
        assert float(abs(chunked[name] - in_memory[name]).max()) < 1e-5, name
    np.testing.assert_array_equal(chunked.x, in_memory.x)
    # written chunk by chunk, read back lazily
    store = tmp_path / "maps.zarr"
    chunked.to_zarr(store)
    back = pvd.open_result(store, lazy=True)
    assert back.z_mean.chunks is not None
    assert float(abs(back.z_mean - in_memory.z_mean).max()) < 1e-5


def test_chunked_encode_multichannel_with_phase_and_spectra(small_blocks):
    pfm = pvd.synthetic.pfm_labyrinth(shape=(48, 48), seed=0).image
    spectra = xr.DataArray(np.random.default_rng(0).random((30, 26, 9)), dims=("y", "x", "energy"))
    cases = ((pfm, 8, "patch"), (pfm, 12, "fft+mean"), (spectra, 3, "spectrum"))
    for image, patch, transform in cases:
        result = pvd.fit(image, patch_size=patch, stride=2, epochs=1, transform=transform)
        diff = result.pvd.encode(image.chunk(9)).z_mean - result.pvd.encode(image).z_mean
        assert float(abs(diff).max()) < 1e-5, transform


def test_model_weights_are_one_key_of_the_graph():
    image = _image()
    result = pvd.fit(image, patch_size=8, stride=4, epochs=1, transform="patch")
    graphs = [dict(result.pvd.encode(image.chunk(16)).z_mean.data.__dask_graph__()) for _ in range(2)]
    weights = [[k for k in g if str(k).startswith("model-weights-")] for g in graphs]
    assert len(weights[0]) == 1 and weights[0] == weights[1]  # shared across files too


def test_lazy_and_in_memory_fits_agree():
    image = _image((96, 96))
    settings = dict(patch_size=8, stride=2, epochs=2, transform="auto", seed=1)
    whole = pvd.fit(image, **settings)
    whole_lazy = pvd.fit(image.chunk(20), **settings)
    assert whole.attrs["sampled_positions"] == 0
    np.testing.assert_array_equal(whole.z_mean.values, whole_lazy.z_mean.values)
    # sampled: the whole 45 x 45 grid is one region here; the path is the sampled one
    sampled = pvd.fit(image, sample_positions=1500, **settings)
    sampled_lazy = pvd.fit(image.chunk(20), sample_positions=1500, **settings)
    assert sampled.attrs["sampled_positions"] > 0
    assert sampled_lazy.z_mean.chunks is not None
    assert float(abs(sampled.z_mean - sampled_lazy.z_mean).max()) < 1e-6
    np.testing.assert_array_equal(sampled.loss_total, sampled_lazy.loss_total)


def test_sampled_fit_separates_domains_and_segments_per_block():
    phantom = pvd.synthetic.pfm_labyrinth(shape=(192, 192), seed=0)
    result = pvd.fit(phantom.image.chunk(64), patch_size=12, stride=2, latent_dim=1,
                     transform="patch", boundary_weight=10.0, sample_positions=6000)
    assert result.attrs["sample_regions"] == 2 and result.z_mean.chunks is not None
    labels = pvd.segment(result, n_domains=2)
    assert labels.chunks is not None  # labelled per block
    in_memory = pvd.segment(result.compute(), n_domains=2)
    assert float((labels.values == in_memory.values).mean()) > 0.999
    truth = labels_on_grid(phantom.labels, in_memory)
    assert adjusted_rand_index(labels.compute(), truth) > 0.8  # all positions: 0.94
    assert float(pvd.boundary_length(labels)) == pytest.approx(float(pvd.boundary_length(in_memory)), rel=0.01)


def test_open_result_lazily(tmp_path):
    image = _image()
    result = pvd.fit(image, patch_size=8, stride=4, epochs=1, transform="patch")
    from phyvae_dash.models.persist import save

    path = save(result, tmp_path / "fit.nc")
    back = pvd.open_result(path, lazy=True)
    assert back.z_mean.chunks is not None
    np.testing.assert_allclose(back.z_mean.values, result.z_mean.values)
    assert float(abs(back.pvd.encode(image).z_mean - result.z_mean).max()) < 1e-6


def test_scheduler_names_and_bad_scheduler():
    image = _image()
    result = pvd.fit(image, patch_size=8, stride=4, epochs=1, transform="patch")
    lazy = result.pvd.encode(image.chunk(16), scheduler="sync")
    with dask.config.set(scheduler="sync"):
        assert lazy.z_mean.compute().shape == result.z_mean.shape
    with pytest.raises(SettingsError, match="scheduler"):
        result.pvd.encode(image.chunk(16), scheduler="nonsense")


@pytest.mark.realdata
@pytest.mark.parametrize("name", ["pfm/SingFreqPFM_0003.h5", "pfm/PZT_final0001.h5",
                                  "spectral/bfo_iv_final.hf5", "formats/test_dm_image_um_unit.dm3"])
def test_real_files_load_lazily_like_eagerly(shared_data, name):
    eager = pvd.load(shared_data / name)
    lazy = pvd.load(shared_data / name, lazy=True)
    assert isinstance(lazy.data, da.Array)
    assert lazy.dims == eager.dims and lazy.attrs == eager.attrs
    for dim in eager.dims:
        if dim in eager.coords:
            np.testing.assert_array_equal(lazy[dim].values, eager[dim].values)
    np.testing.assert_array_equal(lazy.values, eager.values)
