"""phyvae_dash.data.patches: patches equal direct slicing; centres, normalisation, errors."""
import numpy as np
import pytest
import xarray as xr

from phyvae_dash.data.patches import extract_patches, normalize
from phyvae_dash.errors import DataError, SettingsError


def _image(ny=37, nx=45, channels=None, seed=0, step=0.25):
    rng = np.random.default_rng(seed)
    shape = (ny, nx) if channels is None else (ny, nx, len(channels))
    coords = {"y": ("y", 10 + np.arange(ny) * step, {"units": "nm"}),
              "x": ("x", -3 + np.arange(nx) * step, {"units": "nm"})}
    dims = ("y", "x")
    if channels is not None:
        coords["channel"] = list(channels)
        dims += ("channel",)
    return xr.DataArray(rng.random(shape), dims=dims, coords=coords, attrs={"source": "t"})


@pytest.mark.parametrize("patch_size, stride", [(8, 1), (7, 3), (16, 5), (2, 2)])
def test_patch_values_equal_direct_slicing(patch_size, stride):
    image = _image()
    patches = extract_patches(image, patch_size, stride)
    ny = (image.sizes["y"] - patch_size) // stride + 1
    nx = (image.sizes["x"] - patch_size) // stride + 1
    assert patches.dims == ("y", "x", "wy", "wx")
    assert patches.shape == (ny, nx, patch_size, patch_size)
    rng = np.random.default_rng(1)
    for i, j in zip(rng.integers(0, ny, 20), rng.integers(0, nx, 20)):
        top, left = i * stride, j * stride
        expected = image.values[top:top + patch_size, left:left + patch_size]
        np.testing.assert_array_equal(patches.values[i, j], expected)


def test_multichannel_patches_keep_channel_last():
    image = _image(channels=["amplitude", "phase"])
    patches = extract_patches(image, 6, 4)
    assert patches.dims == ("y", "x", "wy", "wx", "channel")
    assert patches.channel.values.tolist() == ["amplitude", "phase"]
    np.testing.assert_array_equal(patches.values[2, 3, :, :, 1], image.values[8:14, 12:18, 1])


def test_spectral_patches_keep_spectral_dim():
    cube = xr.DataArray(np.random.default_rng(2).random((20, 22, 30)), dims=("y", "x", "bias"),
                        coords={"bias": ("bias", np.linspace(-1, 1, 30), {"units": "V"})})
    patches = extract_patches(cube, 4, 2)
    assert patches.dims[-1] == "bias" and patches.bias.attrs["units"] == "V"
    np.testing.assert_array_equal(patches.values[1, 2, :, :, 5], cube.values[2:6, 4:8, 5])


def test_patch_centres_in_image_coordinates():
    image = _image(step=0.25)
    for size in (7, 8):  # odd and even patches
        patches = extract_patches(image, size, 3)
        # Patch (i, j) spans pixels [3i, 3i + size): its centre is their mean position.
        for i in (0, 4):
            span = image.y.values[3 * i:3 * i + size]
            assert float(patches.y[i]) == pytest.approx(span.mean())
        assert float(patches.x[0]) == pytest.approx(-3 + 0.25 * (size - 1) / 2)
        assert patches.y.attrs["units"] == "nm"
        np.testing.assert_allclose(patches.wy.values, np.arange(size) - (size - 1) / 2)


def test_uncalibrated_image_gets_pixel_centres():
    patches = extract_patches(xr.DataArray(np.zeros((10, 10)), dims=("y", "x")), 4, 2)
    assert patches.x.values.tolist() == [1.5, 3.5, 5.5, 7.5]
    assert patches.x.attrs["units"] == "px"


def test_patches_are_a_view_without_normalisation():
    image = _image()
    patches = extract_patches(image, 8, 2)
    assert np.shares_memory(patches.values, image.values)
    assert patches.attrs == {"source": "t", "patch_size": 8, "stride": 2, "normalization": "None"}


@pytest.mark.parametrize("method", ["minmax", "zscore"])
def test_normalisation_per_channel_is_recorded(method):
    image = _image(channels=["a", "b"])
    image = image * xr.DataArray([1.0, 100.0], dims="channel", coords={"channel": ["a", "b"]})
    patches = extract_patches(image, 5, 5, normalization=method)
    assert patches.attrs["normalization"] == method
    normalised = normalize(image, method)
    if method == "minmax":
        np.testing.assert_allclose(normalised.min(("y", "x")), 0)
        np.testing.assert_allclose(normalised.max(("y", "x")), 1)
    else:
        np.testing.assert_allclose(normalised.mean(("y", "x")), 0, atol=1e-12)
        np.testing.assert_allclose(normalised.std(("y", "x")), 1)
    np.testing.assert_allclose(patches.values[1, 1, ..., 1], normalised.values[5:10, 5:10, 1])


def test_normalize_constant_channel_and_none():
    flat = xr.DataArray(np.full((6, 6), 3.0), dims=("y", "x"))
    assert float(normalize(flat, "minmax").max()) == 0.0  # no division by zero
    assert float(normalize(flat, "zscore").max()) == 0.0
    assert normalize(flat, None) is flat
    with pytest.raises(SettingsError, match="normalization"):
        normalize(flat, "l2")


@pytest.mark.parametrize("kwargs, match", [
    ({"patch_size": 64}, "larger than the image"),
    ({"patch_size": 1}, "patch_size must be an integer >= 2"),
    ({"patch_size": 0}, "patch_size"),
    ({"patch_size": 8.0}, "patch_size"),
    ({"patch_size": 8, "stride": 0}, "stride must be an integer >= 1"),
    ({"patch_size": 8, "stride": -2}, "stride"),
    ({"patch_size": 8, "stride": 1.5}, "stride"),
    ({"patch_size": 8, "normalization": "l2"}, "normalization"),
])
def test_bad_settings(kwargs, match):
    with pytest.raises(SettingsError, match=match):
        extract_patches(_image(ny=40, nx=50), **kwargs)


def test_wrong_dims():
    with pytest.raises(DataError, match="dims"):
        extract_patches(xr.DataArray(np.zeros((5, 10, 10)), dims=("t", "y", "x")), 4)
    with pytest.raises(DataError, match="dims"):
        extract_patches(xr.DataArray(np.zeros(10), dims=("x",)), 4)


@pytest.mark.realdata
def test_real_pfm_patches(shared_data):
    from phyvae_dash.data.io import load

    image = load(shared_data / "pfm" / "SingFreqPFM_0003.h5",
                 channel=["AmplitudeRetrace", "PhaseRetrace"])
    patches = extract_patches(image, 16, 8, normalization="zscore")
    assert patches.shape == (15, 15, 16, 16, 2)
    assert patches.x.attrs["units"] == "µm"
    assert float(patches.x[0]) == pytest.approx(float(image.x[:16].mean()))
