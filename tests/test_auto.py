"""Automatic settings: `fit(image)` alone, `choose_settings`, the new phantom families."""
import numpy as np
import pytest
import xarray as xr

import phyvae_dash as pvd
from phyvae_dash.analysis import metrics
from phyvae_dash.errors import SettingsError
from phyvae_dash.models import auto


def _ari(result, ds, n_domains):
    labels = pvd.segment(result, n_domains=n_domains)
    return metrics.adjusted_rand_index(labels, metrics.labels_on_grid(ds.labels, labels))


@pytest.fixture(scope="module")
def stripes():
    """Two stripe-orientation domains (period 8.3 px), 96 px, and fit(image) on it."""
    ds = pvd.synthetic.make("patch_stripes", shape=(96, 96), seed=0, period_px=8.3)
    return ds, pvd.fit(ds.image, device="cpu")


@pytest.fixture(scope="module")
def layers():
    """Three intensity-defined layers on one lattice, 96 px, and fit(image) on it."""
    ds = pvd.synthetic.make("layered_interface", shape=(96, 96), seed=0)
    return ds, pvd.fit(ds.image, device="cpu")


@pytest.mark.slow
def test_fit_alone_finds_stripe_orientation_domains(stripes):
    ds, result = stripes
    assert result.attrs["transform"] == "fft+mean"
    assert result.attrs["patch_size"] >= 1.8 * ds.attrs["period_px"]
    assert _ari(result, ds, 2) >= 0.85


@pytest.mark.slow
def test_fit_alone_finds_small_domains():
    ds = pvd.synthetic.make("nanodomains", shape=(96, 96), seed=0, domain_px=16.0, snr=4.0)
    result = pvd.fit(ds.image, device="cpu")
    assert result.attrs["patch_size"] <= 8 and result.attrs["transform"] == "patch"
    assert _ari(result, ds, 2) >= 0.85


def test_every_choice_and_its_reason_is_recorded(stripes):
    _, result = stripes
    reasons = result.attrs["auto_reasons"]
    assert [r.split()[0] for r in reasons] == ["patch_size", "stride", "transform",
                                               "latent_dim", "boundary_weight"]
    assert reasons[0].startswith(f"patch_size {result.attrs['patch_size']}: lattice period")
    assert "periods" in reasons[0]
    assert result.attrs["auto_lattice_period_px"] == pytest.approx(8.3, rel=0.1)
    assert reasons[2] == f"transform {result.attrs['transform']}: {result.attrs['transform_reason']}"
    assert result.attrs["auto_elapsed_s"] > 0


def test_user_settings_are_kept():
    ds = pvd.synthetic.make("nanodomains", shape=(48, 48), seed=0)
    result = pvd.fit(ds.image, patch_size=10, stride=3, latent_dim=1, boundary_weight=0.5,
                     transform="patch", epochs=2, device="cpu")
    assert (result.attrs["patch_size"], result.attrs["stride"], result.attrs["latent_dim"],
            result.attrs["boundary_weight"], result.attrs["transform"]) == (10, 3, 1, 0.5, "patch")
    assert "auto_reasons" not in result.attrs  # nothing was chosen
    partial = auto.choose_settings(ds.image, patch_size=10)
    assert partial.patch_size == 10 and partial.reasons["patch_size"] == "set by the user"
    assert partial.stride == 2  # chosen: a quarter of the user's patch
    assert partial.scores == {}  # no trials when the patch is given


def test_too_small_image_says_the_smallest_size():
    tiny = xr.DataArray(np.random.default_rng(0).normal(size=(12, 12)), dims=("y", "x"))
    smallest = auto.smallest_image_side()
    with pytest.raises(SettingsError, match=f"at least {smallest} x {smallest} px"):
        pvd.fit(tiny, epochs=1, device="cpu")
    # A given patch size skips the automatic scale; the image is then big enough.
    pvd.fit(tiny, patch_size=4, epochs=1, device="cpu")


@pytest.mark.slow
@pytest.mark.parametrize("fixture, n_true", [("stripes", 2), ("layers", 3)])
def test_n_domains_none_counts_the_domains(request, fixture, n_true):
    ds, result = request.getfixturevalue(fixture)
    labels = pvd.segment(result)
    assert labels.attrs["n_domains_chosen_by"] == "coherence"
    assert labels.attrs["n_domains"] == n_true
    assert metrics.adjusted_rand_index(labels, metrics.labels_on_grid(ds.labels, labels)) >= 0.8


def test_noise_estimate_and_noise_aware_weight():
    for snr in (4.0, 1.0):
        ds = pvd.synthetic.make("multi_domains", shape=(96, 96), seed=0, snr=snr, texture=0.0)
        _, estimated = auto.estimate_noise(ds.image)
        assert estimated == pytest.approx(snr, rel=0.3)
    weights = [auto.noise_aware_weight(s) for s in (10, 3, 2, 1.5, 1, 0.5)]
    assert weights[0] == weights[1] == auto.DEFAULT_BOUNDARY_WEIGHT
    assert weights[-1] == weights[-2] == auto.NOISY_BOUNDARY_WEIGHT
    assert all(a <= b for a, b in zip(weights, weights[1:]))


def test_record_is_netcdf_safe_and_shows_values_with_reasons(tmp_path):
    ds = pvd.synthetic.make("texture_domains", shape=(64, 64), seed=0)
    choice = pvd.choose_settings(ds.image)
    assert set(choice.fit_kwargs()) == set(auto.AutoSettings.SETTINGS)
    assert all(line.split(":")[0].split()[-1] == str(value) for line, value in
               zip(choice.reason_list(), choice.fit_kwargs().values()))
    xr.Dataset(attrs=choice.as_attrs()).to_netcdf(tmp_path / "attrs.nc")


@pytest.mark.parametrize("kind", pvd.synthetic.FAMILIES)
def test_new_phantom_families(kind):
    a = pvd.synthetic.make(kind, shape=(64, 80), seed=3)
    b = pvd.synthetic.make(kind, shape=(64, 80), seed=3)
    xr.testing.assert_identical(a, b)
    assert a.image.shape == (64, 80) and a.attrs["kind"] == kind
    counts = np.bincount(a.labels.values.ravel())
    assert len(counts) == a.attrs["n_labels"] >= 2 and counts.min() > 0.05 * a.labels.size
    np.testing.assert_array_equal(a.boundaries.values,
                                  pvd.synthetic.label_boundaries(a.labels.values))
    other = pvd.synthetic.make(kind, shape=(64, 80), seed=4)
    assert not np.array_equal(a.image.values, other.image.values)


def test_single_channel_phase_image_is_chosen_for():
    """A 2-D image that is a phase (PFM phase alone) takes the phase-domain rule."""
    phase = pvd.synthetic.pfm_labyrinth(shape=(64, 64), seed=0).image.isel(channel=1, drop=True)
    phase.attrs.update({"phase_channels": [str(phase.name or "intensity")], "units": "deg"})
    choice = pvd.choose_settings(phase)
    assert choice.patch_size >= 2 and choice.reasons["patch_size"]


def test_spectra_take_a_patch_of_one_position():
    cube = xr.DataArray(np.random.default_rng(0).random((24, 24, 16)), dims=("y", "x", "energy"))
    choice = pvd.choose_settings(cube, patch_size=1)
    assert choice.patch_size == 1 and choice.reasons["patch_size"] == "set by the user"


def test_lattice_candidates_hold_enough_periods():
    """A 2-D lattice gets no patch under LATTICE_MIN_PERIODS periods, stripes none under
    STRIPE_MIN_PERIODS; a small image falls back to its largest patch and says why."""
    yy, xx = np.mgrid[:128, :128]
    rng = np.random.default_rng(0)
    period = 6.3
    square = np.cos(2 * np.pi * xx / period) + np.cos(2 * np.pi * yy / period)
    stripes = np.cos(2 * np.pi * xx / period)
    for image, least in ((square, auto.LATTICE_MIN_PERIODS), (stripes, auto.STRIPE_MIN_PERIODS)):
        da = xr.DataArray(image + 0.3 * rng.normal(size=image.shape), dims=("y", "x"))
        candidates = auto._candidates(da, period, "auto")
        assert candidates and all(p >= least * period for p, _, _ in candidates)
        assert {t for _, t, _ in candidates} == {"fft+mean"}
    small = xr.DataArray(square[:64, :64], dims=("y", "x"))
    [(patch, transform, why)] = auto._candidates(small, 8.0, "auto", min_periods=3.0)
    assert patch == 16 and transform == "fft+mean"
    assert "too small for 3 periods" in why and "image side of 96 px" in why


def test_two_dimensional_lattice_or_stripes():
    # Two stripe orientations make the whole image's spectrum look 2-D; the tiles do not.
    graphene = pvd.synthetic.make("graphene_grains", shape=(96, 96), seed=0).image
    bfo = pvd.synthetic.make("bfo_stripes", shape=(96, 96), seed=0).image
    assert auto.is_two_dimensional(graphene, 4.2)
    assert not auto.is_two_dimensional(bfo, 11.3)
