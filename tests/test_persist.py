"""Registry, the `pvd` accessor, and the NetCDF + safetensors round trip."""
import numpy as np
import pytest
import xarray as xr

import phyvae_dash as pvd
from phyvae_dash.errors import PhyvaeDashError
from phyvae_dash.models import persist

pytestmark = pytest.mark.filterwarnings("ignore:the latent maps are nearly flat")  # short test fits


def image(seed=0, n=40, channels=0):
    rng = np.random.default_rng(seed)
    base = np.where(np.arange(n)[None, :] < n // 2, 0.2, 0.8) + 0.1 * rng.normal(size=(n, n))
    if channels:
        data = np.stack([base * (i + 1) for i in range(channels)], axis=-1)
        return xr.DataArray(data, dims=("y", "x", "channel"),
                            coords={"channel": [f"c{i}" for i in range(channels)]})
    return xr.DataArray(base, dims=("y", "x"), attrs={"preprocessing": ["flatten(order=1)"]})


@pytest.fixture(scope="module")
def result():
    return pvd.fit(image(), patch_size=8, stride=4, epochs=2, device="cpu", transform="patch",
                   model="shift")


def test_accessor_on_a_copy(result):
    copy = result.copy(deep=True).isel(x=slice(0, 3))
    assert copy.pvd.model is result.pvd.model
    assert copy.pvd.model.latent_dim == 2


def test_decode_reconstruct_manifold(result):
    one = result.pvd.decode(result.z_mean.isel(y=0, x=0))
    assert one.dims == ("wy", "wx") and one.shape == (8, 8)
    many = result.pvd.decode(np.zeros((5, 2)))
    assert many.dims == ("sample", "wy", "wx")
    rec = result.pvd.reconstruct()
    assert rec.dims == ("y", "x", "wy", "wx") and rec.sizes["y"] == result.sizes["y"]
    man = result.pvd.manifold(n=4)
    assert man.dims == ("u", "v", "wy", "wx") and man.shape == (4, 4, 8, 8)
    assert np.all(np.diff(man.u) > 0)


def test_encode_another_image(result):
    other = result.pvd.encode(image(seed=5))
    assert other.z_mean.dims == ("latent", "y", "x") and "shift" in other
    assert other.attrs["encoded_with"] == result.attrs["model_id"]
    same = result.pvd.encode(image())
    assert np.allclose(same.z_mean, result.z_mean, atol=1e-5)
    with pytest.raises(PhyvaeDashError):
        result.pvd.encode(image(channels=2))


def test_save_open_round_trip(result, tmp_path):
    path = result.pvd.save(tmp_path / "fit")
    assert path.suffix == ".nc" and path.with_suffix(".safetensors").exists()
    back = pvd.open_result(path)
    assert np.array_equal(back.z_mean.values, result.z_mean.values)
    assert np.array_equal(back["shift"].values, result["shift"].values)  # .shift is a method
    assert back.attrs["model_id"] == result.attrs["model_id"]
    assert back.attrs["preprocessing"] == ["flatten(order=1)"]
    z = result.z_mean.isel(y=1, x=1)
    decoded = result.pvd.decode(z)
    # A fresh registry: the model comes from the weights file only.
    persist._REGISTRY.clear()
    back = pvd.open_result(path)
    assert np.allclose(back.pvd.decode(z), decoded, atol=1e-6)
    again = back.pvd.encode(image())
    assert np.allclose(again.z_mean, result.z_mean, atol=1e-5)
    with pytest.raises(PhyvaeDashError, match="not in memory"):
        back.pvd.reconstruct()
    assert back.pvd.reconstruct(image()).dims == ("y", "x", "wy", "wx")


def test_weights_are_not_pickles(result, tmp_path):
    from safetensors import safe_open

    path = persist.save(result, tmp_path / "w.nc").with_suffix(".safetensors")
    with safe_open(str(path), framework="pt") as f:
        assert '"family": "shift"' in f.metadata()["config"]


def test_multichannel_and_lru(tmp_path, monkeypatch):
    r = pvd.fit(image(channels=2), patch_size=8, stride=4, epochs=1, device="cpu", transform="patch")
    assert r.pvd.decode(np.zeros(2)).dims == ("wy", "wx", "channel")
    assert r.pvd.manifold(n=2).dims == ("u", "v", "wy", "wx", "channel")
    names = list(r.attrs["input_channels"])
    assert len(names) == 2 and list(r.pvd.reconstruct().channel.values) == names
    r.pvd.save(tmp_path / "two.nc")
    assert list(pvd.open_result(tmp_path / "two.nc").pvd.decode(np.zeros(2)).channel.values) == names
    monkeypatch.setattr(persist, "MAX_MODELS", 1)
    pvd.fit(image(), patch_size=8, stride=4, epochs=1, device="cpu", transform="patch")
    with pytest.raises(PhyvaeDashError, match="not in memory"):
        r.pvd.model
    assert not hasattr(xr.Dataset(), "model_id")
    with pytest.raises(PhyvaeDashError, match="not a fit result"):
        xr.Dataset().pvd.model


def test_reconstruct_rejects_other_channels():
    """`reconstruct(image)` checks the image's inputs against the model, as `encode` does."""
    result = pvd.fit(image(), patch_size=8, stride=4, epochs=1, device="cpu", transform="patch")
    two_channels = image(channels=2)
    with pytest.raises(pvd.errors.DataError, match="model takes"):
        result.pvd.reconstruct(two_channels)
    with pytest.raises(pvd.errors.DataError, match="model takes"):
        result.pvd.encode(two_channels)


def test_every_list_attr_survives_netcdf(tmp_path):
    """One-item and empty lists come back as lists, whatever their key (the codec names
    the list attrs; NetCDF alone would return a one-item list as a scalar)."""
    r = pvd.fit(image(), patch_size=8, stride=4, epochs=1, device="cpu", transform="patch")
    r.attrs.update({"notes": ["one"], "empty": [], "ints": [3], "flag": True})
    back = pvd.open_result(r.pvd.save(tmp_path / "r.nc"))
    assert back.attrs["notes"] == ["one"] and back.attrs["empty"] == [] and back.attrs["ints"] == [3]
    assert back.attrs["input_channels"] == list(r.attrs["input_channels"])
    assert back.attrs["preprocessing"] == ["flatten(order=1)"] and back.attrs["flag"] == 1
