"""The PCA baseline: shaped like a fit result, so `segment` and the metrics work on it."""
import sys

import numpy as np
import pytest
import xarray as xr

from phyvae_dash.analysis.baselines import pca_baseline
from phyvae_dash.analysis.metrics import adjusted_rand_index, boundary_f1, labels_on_grid
from phyvae_dash.analysis.segment import segment
from phyvae_dash.errors import SettingsError


def _two_intensity_image(n=64, pixel=0.1):
    """Left third dark, the rest bright, with noise; coordinates in nm."""
    rng = np.random.default_rng(0)
    truth = np.zeros((n, n), dtype=int)
    truth[:, n // 3:] = 1
    image = np.where(truth == 1, 0.7, 0.3) + rng.normal(0, 0.1, truth.shape)
    coords = {d: (d, np.arange(n) * pixel, {"units": "nm"}) for d in ("y", "x")}
    return (xr.DataArray(image, dims=("y", "x"), coords=coords, attrs={"source": "test"}),
            xr.DataArray(truth, dims=("y", "x"), coords=coords))


def test_pca_baseline_is_shaped_like_a_fit_result():
    image, _ = _two_intensity_image()
    result = pca_baseline(image, patch_size=8, stride=4, n_components=3)
    assert isinstance(result, xr.Dataset)
    assert result.z_mean.dims == ("latent", "y", "x")
    assert result.z_mean.shape == (3, 15, 15)  # (64 - 8) // 4 + 1 patch centres per axis
    assert result.attrs["method"] == "pca" and result.attrs["n_components"] == 3
    assert result.attrs["patch_size"] == 8 and result.attrs["stride"] == 4
    assert result.attrs["transform"] == "patch" and result.attrs["source"] == "test"
    # patch centres in the image's units: first patch covers pixels 0..7 -> centre 3.5 px
    assert result.x.values[0] == pytest.approx(0.35)
    assert result.x.attrs["units"] == "nm"
    ratios = result.explained_variance_ratio.values
    assert np.all(np.diff(ratios) <= 0) and ratios.sum() <= 1 + 1e-9


def test_pca_then_gmm_segments_a_two_intensity_image():
    image, truth = _two_intensity_image(n=96)
    result = pca_baseline(image, patch_size=8, stride=2)
    labels = segment(result, n_domains=2)
    assert labels.attrs["fit_method"] == "pca"
    assert adjusted_rand_index(labels, truth) >= 0.9
    # patches across the wall are mixed: the wall may land one grid step off, no more
    assert boundary_f1(labels, truth, tolerance=1) == 1.0
    assert labels_on_grid(truth, labels).shape == labels.shape


def test_pca_baseline_without_the_models_package(monkeypatch):
    # a None entry in sys.modules makes `import` raise ImportError
    monkeypatch.setitem(sys.modules, "phyvae_dash.models.features", None)
    image, truth = _two_intensity_image(n=96)
    result = pca_baseline(image, patch_size=8, stride=2)
    assert result.attrs["transform"] == "patch"
    assert adjusted_rand_index(segment(result, n_domains=2), truth) >= 0.9
    with pytest.raises(SettingsError, match="transform"):
        pca_baseline(image, patch_size=8, stride=2, transform="fft")


def test_pca_baseline_multichannel_and_bad_settings():
    image, _ = _two_intensity_image(n=32)
    stacked = xr.concat([image, 1 - image], dim="channel").transpose("y", "x", "channel")
    stacked = stacked.assign_coords(channel=["a", "b"])
    result = pca_baseline(stacked, patch_size=8, stride=4)
    assert result.z_mean.shape == (2, 7, 7)
    with pytest.raises(SettingsError, match="n_components"):
        pca_baseline(image, patch_size=8, stride=4, n_components=0)
