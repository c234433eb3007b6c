"""Segmentation of latent maps, boundary maps and boundary length."""
import numpy as np
import pytest
import xarray as xr

from phyvae_dash.analysis.segment import (
    Length, boundary_length, boundary_map, domain_table, segment,
)
from phyvae_dash.errors import DataError, SettingsError


def _grid(n_y, n_x, step=1.0, units="px"):
    return {
        "y": ("y", np.arange(n_y) * step, {"units": units}),
        "x": ("x", np.arange(n_x) * step, {"units": units}),
    }


def _latent_result(truth, centres, noise=0.1, seed=0, step=1.0):
    """A fit-result-shaped Dataset whose latents are ``centres[truth]`` plus noise."""
    rng = np.random.default_rng(seed)
    z = np.asarray(centres, float)[truth].transpose(2, 0, 1)
    z = z + rng.normal(0, noise, z.shape)
    return xr.Dataset(
        {"z_mean": (("latent", "y", "x"), z), "z_std": (("latent", "y", "x"), np.ones_like(z))},
        coords=_grid(*truth.shape, step=step, units="nm"),
        attrs={"model": "vae", "patch_size": 16, "stride": 4, "boundary_weight": 1.0},
    )


def _three_domains(n=24):
    truth = np.zeros((n, n), dtype=int)
    truth[:, n // 3:] = 1
    truth[n // 2:, 2 * n // 3:] = 2
    return truth


def _ari(a, b):
    from sklearn.metrics import adjusted_rand_score
    return adjusted_rand_score(np.ravel(a), np.ravel(b))


@pytest.mark.parametrize("method", ["gmm", "tied", "kmeans"])
def test_two_and_three_clean_domains_are_found(method):
    two = np.zeros((20, 20), dtype=int)
    two[:, 10:] = 1
    result = segment(_latent_result(two, [[0, 0], [4, 1]]), n_domains=2, method=method)
    assert _ari(result, two) == 1.0
    three = _three_domains()
    centres = [[0, 0], [4, 0], [2, 4]]
    result = segment(_latent_result(three, centres), n_domains=3, method=method)
    assert _ari(result, three) == 1.0
    assert result.dims == ("y", "x")
    assert result.attrs["method"] == method and result.attrs["n_domains"] == 3
    assert result.attrs["n_domains_chosen_by"] == "user"


def test_auto_method_is_kmeans_for_a_given_count_and_gmm_for_bic():
    truth = _three_domains()
    fit = _latent_result(truth, [[0, 0], [4, 0], [2, 4]])
    assert segment(fit, n_domains=3).attrs["method"] == "kmeans"
    assert segment(fit, criterion="bic").attrs["method"] == "gmm"
    assert segment(fit).attrs["method"] == "kmeans"  # counted by merging, split by k-means


def test_labels_keep_the_grid_and_fit_settings():
    truth = _three_domains()
    fit = _latent_result(truth, [[0, 0], [4, 0], [2, 4]], step=2.5)
    labels = segment(fit, n_domains=3)
    np.testing.assert_array_equal(labels.x.values, fit.x.values)
    assert labels.x.attrs["units"] == "nm"
    assert labels.attrs["fit_model"] == "vae" and labels.attrs["fit_patch_size"] == 16
    assert isinstance(labels.attrs["settings"], str)  # JSON: NetCDF-safe
    for value in labels.attrs.values():  # NetCDF-safe types only
        assert isinstance(value, (str, int, float, bool, list))


@pytest.mark.parametrize("criterion", ["merge", "bic", "icl"])
@pytest.mark.parametrize("n_true", [2, 3, 4])
def test_feature_criteria_choose_the_number_of_well_separated_clusters(n_true, criterion):
    rng = np.random.default_rng(1)
    truth = rng.integers(0, n_true, size=(30, 30))
    centres = [[0, 0], [6, 0], [0, 6], [6, 6]][:n_true]
    labels = segment(_latent_result(truth, centres, noise=0.3), criterion=criterion)
    assert labels.attrs["n_domains_chosen_by"] == criterion
    assert labels.attrs["n_domains"] == n_true
    assert len(labels.attrs["bic"]) == len(labels.attrs["icl"]) == 8
    assert labels.attrs["bic_n_domains"] == list(range(1, 9))
    assert _ari(labels, truth) == 1.0


def test_icl_is_at_least_bic():
    # ICL = BIC + 2 x entropy of the assignments, and entropy is >= 0
    truth = _three_domains()
    labels = segment(_latent_result(truth, [[0, 0], [2, 0], [1, 2]], noise=0.6), criterion="icl")
    assert all(i >= b for i, b in zip(labels.attrs["icl"], labels.attrs["bic"]))
    assert labels.attrs["icl"][0] == pytest.approx(labels.attrs["bic"][0])


def test_otsu_thresholds_one_latent():
    truth = _three_domains()
    # latent 1 carries the domains; latent 0 is noise only
    fit = _latent_result(truth, [[0, 0], [0, 3], [0, 6]], noise=0.2)
    labels = segment(fit, n_domains=3, method="otsu", latents=1)
    assert _ari(labels, truth) == 1.0
    # classes follow the latent's value: low, middle, high
    np.testing.assert_array_equal(labels.values, truth)
    assert labels.attrs["latents"] == [1]
    with pytest.raises(SettingsError):
        segment(fit, n_domains=3, method="otsu", latents=[0, 1])


@pytest.mark.parametrize("criterion", ["merge", "bic"])
def test_otsu_chooses_count_by_criterion(criterion):
    truth = _three_domains()
    fit = _latent_result(truth, [[0], [3], [6]], noise=0.2)
    labels = segment(fit, method="otsu", criterion=criterion)
    assert labels.attrs["n_domains"] == 3 and labels.attrs["n_domains_chosen_by"] == criterion


def _spatial_domains(n_true, n=40):
    """Block domains: 2 halves, 3 columns, or 4 quadrants of an n x n grid."""
    yy, xx = np.indices((n, n))
    if n_true == 4:
        return 2 * (yy >= n // 2) + (xx >= n // 2)
    return (xx * n_true) // n


@pytest.mark.parametrize("n_true", [2, 3, 4])
def test_coherence_counts_spatial_domains_whose_latents_overlap(n_true):
    # Domain centres 4 noise standard deviations apart: the latent clusters overlap,
    # and merging mixture components by overlap takes them for fewer domains.
    truth = _spatial_domains(n_true)
    centres = [[0, 0], [4, 0], [0, 4], [4, 4]][:n_true]
    fit = _latent_result(truth, centres, noise=1.0)
    labels = segment(fit)
    assert labels.attrs["n_domains_chosen_by"] == "coherence"
    assert labels.attrs["n_domains"] == n_true
    assert labels.attrs["coherence_n_domains"] == list(range(2, 9))
    assert len(labels.attrs["coherence"]) == len(labels.attrs["wall_contrast"]) == 7
    assert _ari(labels, truth) > 0.8  # k-means' own accuracy on clusters this close
    assert segment(fit, criterion="merge").attrs["n_domains"] < n_true


@pytest.mark.parametrize("smoothing", [0.0, 2.0])
def test_coherence_finds_one_domain_in_noise(smoothing):
    # white noise (salt-and-pepper splits) and smooth noise (splits along a drift,
    # without a jump at the wall) are both one domain
    from scipy import ndimage

    z = ndimage.gaussian_filter(np.random.default_rng(3).normal(size=(2, 40, 40)),
                                (0, smoothing, smoothing))
    labels = segment(xr.DataArray(z, dims=("latent", "y", "x")))
    assert labels.attrs["n_domains"] == 1
    assert (labels.values == 0).all()


def test_spatial_coherence_and_wall_contrast():
    from phyvae_dash.analysis.segment import spatial_coherence, wall_contrast

    halves = _spatial_domains(2, n=10)
    assert spatial_coherence(halves, 2) > 0.7
    shuffled = np.random.default_rng(0).permutation(halves.ravel()).reshape(halves.shape)
    assert abs(spatial_coherence(shuffled, 2)) < 0.2
    ramp = np.indices(halves.shape).sum(axis=0).reshape(-1, 1) * 1.0  # a drift, cut
    assert wall_contrast(halves, ramp, 2) == pytest.approx(1.0)
    step = ramp + 10 * halves.reshape(-1, 1)                # the same drift with a jump
    assert wall_contrast(halves, step, 2) == pytest.approx(11.0)
    masked = halves.copy(); masked[:, 4:6] = -1             # invalid cells never meet
    assert np.isnan(wall_contrast(masked, ramp, 2))


def test_coherence_count_on_a_dask_backed_result():
    truth = _spatial_domains(3)
    fit = _latent_result(truth, [[0, 0], [4, 0], [0, 4]], noise=1.0)
    lazy = segment(fit.chunk({"y": 20, "x": 20}))
    assert lazy.chunks is not None and lazy.attrs["n_domains"] == 3
    assert _ari(lazy.values, truth) > 0.8


def test_merge_counts_one_non_gaussian_domain_as_one():
    # One skewed cluster and one round one: BIC needs several Gaussians, merging gives 2.
    rng = np.random.default_rng(0)
    truth = (np.arange(40)[None, :] >= 20).repeat(40, 0).astype(int)
    z = np.where(truth == 0, rng.gamma(1.5, 1.0, truth.shape),
                 8 + 0.3 * rng.normal(size=truth.shape))
    maps = xr.DataArray(np.stack([z, 0.3 * rng.normal(size=z.shape)]), dims=("latent", "y", "x"))
    labels = segment(maps, method="gmm", criterion="merge")
    assert labels.attrs["n_domains_chosen_by"] == "merge"
    assert labels.attrs["bic_components"] > 2
    assert labels.attrs["n_domains"] == 2
    assert _ari(labels, truth) > 0.99


def test_label_order_is_deterministic_by_first_latent():
    truth = _three_domains()
    # domain 2 has the lowest first latent, domain 0 the highest
    fit = _latent_result(truth, [[5, 0], [2, 3], [0, 0]])
    for method in ("gmm", "kmeans"):
        first = segment(fit, n_domains=3, method=method)
        np.testing.assert_array_equal(first.values, 2 - truth)
        again = segment(fit, n_domains=3, method=method)
        np.testing.assert_array_equal(first.values, again.values)
        reseeded = segment(fit, n_domains=3, method=method, seed=7)
        np.testing.assert_array_equal(first.values, reseeded.values)


def test_bare_dataarray_nan_cells_and_smoothing():
    truth = np.zeros((16, 16), dtype=int)
    truth[:, 8:] = 1
    z = _latent_result(truth, [[0, 0], [3, 3]], noise=0.8).z_mean.copy()
    z[:, 0, 0] = np.nan
    noisy = segment(z, n_domains=2)
    assert noisy.values[0, 0] == -1 and noisy.values.max() == 1
    smoothed = segment(z, n_domains=2, smooth=1.0)
    assert smoothed.values[0, 0] == -1 and (smoothed.values[1:] >= 0).all()
    assert _ari(smoothed.values[1:], truth[1:]) >= _ari(noisy.values[1:], truth[1:])
    single = segment(z.isel(latent=0), n_domains=2)  # a ("y", "x") map
    assert single.shape == truth.shape


def test_constant_maps_give_one_domain():
    z = xr.DataArray(np.ones((2, 5, 5)), dims=("latent", "y", "x"))
    assert (segment(z, n_domains=2).values == 0).all()


def test_bad_inputs_raise_clear_errors():
    z = xr.DataArray(np.zeros((2, 5, 5)), dims=("latent", "y", "x"))
    with pytest.raises(SettingsError, match="method"):
        segment(z, method="dbscan")
    with pytest.raises(SettingsError, match="n_domains"):
        segment(z, n_domains=0)
    with pytest.raises(DataError, match="z_mean"):
        segment(xr.Dataset({"a": z}))
    with pytest.raises(SettingsError, match="latents"):
        segment(z, latents=[5])
    with pytest.raises(SettingsError, match="criterion"):
        segment(z, criterion="aic")


def test_boundary_map_marks_both_sides_of_a_wall():
    step = np.zeros((4, 6), dtype=int)
    step[:, 3:] = 1
    wall = boundary_map(xr.DataArray(step, dims=("y", "x")))
    assert wall.dtype == bool
    expected = np.zeros((4, 6), dtype=bool)
    expected[:, 2:4] = True
    np.testing.assert_array_equal(wall.values, expected)


@pytest.mark.parametrize("step", [1.0, 0.25, 3.0])
def test_boundary_length_of_a_straight_step(step):
    n = 12
    labels = np.zeros((n, n), dtype=int)
    labels[:, 5:] = 1  # a vertical wall as long as the side
    vertical = xr.DataArray(labels, dims=("y", "x"), coords=_grid(n, n, step, "nm"))
    length = boundary_length(vertical)
    assert isinstance(length, Length) and isinstance(length, float)
    assert length == pytest.approx(n * step)
    assert length.units == "nm" and length.attrs["units"] == "nm"
    horizontal = vertical.copy(data=labels.T)
    assert boundary_length(horizontal) == pytest.approx(n * step)


def test_boundary_length_uses_the_other_axis_step():
    labels = np.zeros((10, 8), dtype=int)
    labels[:, 4:] = 1  # a wall along y: 10 cells of y step 2
    coords = {"y": ("y", np.arange(10) * 2.0), "x": ("x", np.arange(8) * 0.5)}
    assert boundary_length(xr.DataArray(labels, dims=("y", "x"), coords=coords)) == 20.0


def test_boundary_length_of_a_square_is_its_perimeter():
    labels = np.zeros((20, 20), dtype=int)
    labels[5:11, 4:10] = 1  # a 6 x 6 square inside
    grid = xr.DataArray(labels, dims=("y", "x"), coords=_grid(20, 20, 0.5, "um"))
    assert boundary_length(grid) == pytest.approx(4 * 6 * 0.5)
    # no coordinates: pixel units
    bare = boundary_length(xr.DataArray(labels, dims=("y", "x")))
    assert bare == 24.0 and bare.units == "px"
    # invalid cells never form walls
    labels[5:11, 4:10] = -1
    assert boundary_length(xr.DataArray(labels, dims=("y", "x"))) == 0.0


def test_domain_table_areas_and_regions():
    labels = np.zeros((10, 10), dtype=int)
    labels[2:4, 2:4] = 1
    labels[6:8, 6:9] = 1
    table = domain_table(xr.DataArray(labels, dims=("y", "x"), coords=_grid(10, 10, 2.0, "nm")))
    assert table.n_cells.values.tolist() == [90, 10]
    assert table.area.values.tolist() == [360.0, 40.0]
    assert table.area.attrs["units"] == "nm^2"
    assert table.n_regions.values.tolist() == [1, 2]
    assert table.fraction.sum() == pytest.approx(1.0)


def test_a_collapsed_latent_does_not_spoil_the_clustering():
    truth = _three_domains()
    fit = _latent_result(truth, [[0, 0], [3, 0], [6, 0]], noise=0.3)
    # latent 1 carries no information, only a little noise (a collapsed VAE latent)
    fit["z_mean"][1] = np.random.default_rng(3).normal(0, 0.01, truth.shape)
    labels = segment(fit, n_domains=3)
    assert labels.attrs["standardize"] == "global"
    assert _ari(labels, truth) == 1.0
    with pytest.raises(SettingsError, match="standardize"):
        segment(fit, n_domains=3, standardize="minmax")


# the contract between fit and segment, not the fit's quality (2 epochs on a tiny image)
@pytest.mark.filterwarnings("ignore:the latent maps are nearly flat")
def test_segment_a_real_fit_result():
    pvd = pytest.importorskip("phyvae_dash")
    image = np.zeros((40, 40))
    image[:, 20:] = 1.0
    image += np.random.default_rng(0).normal(0, 0.05, image.shape)
    result = pvd.fit(xr.DataArray(image, dims=("y", "x")), patch_size=8, stride=4,
                     epochs=2, device="cpu")
    labels = pvd.segment(result, n_domains=2)
    assert labels.dims == ("y", "x") and labels.shape == result.z_mean.shape[1:]
    assert labels.attrs["fit_patch_size"] == 8 and labels.attrs["fit_model"] == "vae"
    assert float(pvd.boundary_length(labels)) >= 0
