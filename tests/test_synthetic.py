"""Phantoms: deterministic, well-formed, and their labels agree with what the image shows."""
import numpy as np
import pytest
import xarray as xr
from scipy import ndimage

from phyvae_dash.data import synthetic
from phyvae_dash.errors import SettingsError

SHAPES = [(96, 96), (256, 256)]
STRIDES = (2, 4, 8)
# Per kind: the function that builds it, the label levels, the image dims, the units.
EXPECTED = {
    "graphene_grains": ("honeycomb_grains", ["labels"], ("y", "x"), "nm"),
    "bfo_stripes": ("stripe_domains", ["labels", "variant_labels"], ("y", "x"), "nm"),
    "nio_lsmo": ("two_phase_lattice", ["labels"], ("y", "x"), "nm"),
    "pfm_labyrinth": ("pfm_labyrinth", ["labels"], ("y", "x", "channel"), "µm"),
}


@pytest.fixture(scope="module")
def phantoms():
    """Every kind at every test size, built once (seed 0)."""
    return {(kind, shape): synthetic.make(kind, shape=shape, seed=0)
            for kind in synthetic.KINDS for shape in SHAPES}


# ---------------------------------------------------------------- local FFT analysis


def _window_peaks(image, labels, size=32, step=12, min_period=3.0, max_period=20.0):
    """Strongest Fourier peak of windows lying inside one label.

    Returns ``{label: (periods_px, angles_deg)}``, angles from +x towards +y in
    [0, 180). A Hann window and zero-padding give sub-bin accuracy.
    """
    image = np.asarray(image, dtype=float)
    labels = np.asarray(labels)
    pad = 256
    ky = np.fft.fftfreq(pad)[:, None]
    kx = np.fft.fftfreq(pad)[None, :]
    k = np.hypot(ky, kx)
    band = (k > 1 / max_period) & (k < 1 / min_period)
    hann = np.outer(np.hanning(size), np.hanning(size))
    out = {}
    for y0 in range(0, image.shape[0] - size + 1, step):
        for x0 in range(0, image.shape[1] - size + 1, step):
            lab = labels[y0:y0 + size, x0:x0 + size]
            if lab.min() != lab.max():
                continue
            w = image[y0:y0 + size, x0:x0 + size]
            spectrum = np.abs(np.fft.fft2((w - w.mean()) * hann, s=(pad, pad)))
            spectrum[~band] = 0
            iy, ix = np.unravel_index(np.argmax(spectrum), spectrum.shape)
            period = 1 / k[iy, ix]
            angle = np.degrees(np.arctan2(ky[iy, 0], kx[0, ix])) % 180
            periods, angles = out.setdefault(int(lab[0, 0]), ([], []))
            periods.append(period)
            angles.append(angle)
    return {lab: (np.array(p), np.array(a)) for lab, (p, a) in out.items()}


def _circular_mean(angles_deg, symmetry):
    """Mean of angles defined modulo ``symmetry`` degrees."""
    z = np.exp(2j * np.pi * np.asarray(angles_deg) / symmetry).mean()
    return (np.angle(z) * symmetry / (2 * np.pi)) % symmetry


def _angle_gap(a, b, symmetry):
    d = (a - b) % symmetry
    return min(d, symmetry - d)


# ---------------------------------------------------------------- generic properties


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("kind", synthetic.KINDS)
def test_structure_dims_coords_attrs(phantoms, kind, shape):
    ds = phantoms[kind, shape]
    func_name, levels, image_dims, units = EXPECTED[kind]
    assert isinstance(ds, xr.Dataset)
    assert ds.image.dims == image_dims
    assert ds.image.shape[:2] == shape
    assert np.isfinite(ds.image.values).all()
    for level in levels:
        assert ds[level].dims == ("y", "x")
        assert np.issubdtype(ds[level].dtype, np.integer)
    assert ds.boundaries.dtype == bool
    for dim in ("y", "x"):
        coord = ds[dim].values
        assert ds[dim].attrs["units"] == units
        assert coord[0] == 0 and np.allclose(np.diff(coord), ds.attrs["pixel_size"])
    assert ds.attrs["kind"] == kind
    assert ds.attrs["seed"] == 0
    assert isinstance(ds.attrs["patch_size"], int) and ds.attrs["patch_size"] <= min(shape) // 3
    assert ds.attrs["stride"] == 4
    assert ds.attrs["jitter_px"] > 0
    for value in ds.attrs.values():  # NetCDF-safe attributes only
        assert isinstance(value, (str, int, float, list)), value
    assert synthetic.make(func_name, shape=(48, 48), seed=1).attrs["kind"] == kind


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("kind", synthetic.KINDS)
def test_boundaries_are_the_label_changes(phantoms, kind, shape):
    ds = phantoms[kind, shape]
    labels = ds.labels.values
    changes = np.zeros(shape, dtype=bool)
    changes[:-1] |= labels[:-1] != labels[1:]
    changes[1:] |= labels[:-1] != labels[1:]
    changes[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    changes[:, 1:] |= labels[:, :-1] != labels[:, 1:]
    np.testing.assert_array_equal(ds.boundaries.values, changes)
    assert 0 < changes.mean() < 0.3


@pytest.mark.parametrize("kind", synthetic.KINDS)
def test_same_seed_same_arrays_other_seed_differs(kind):
    a = synthetic.make(kind, shape=(64, 80), seed=7)
    b = synthetic.make(kind, shape=(64, 80), seed=7)
    c = synthetic.make(kind, shape=(64, 80), seed=8)
    xr.testing.assert_identical(a, b)
    assert not np.array_equal(a.image.values, c.image.values)
    assert not np.array_equal(a.labels.values, c.labels.values)
    assert a.image.shape[:2] == (64, 80)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("kind", synthetic.KINDS)
def test_small_images_hold_every_label_with_room_for_patches(kind, seed):
    ds = synthetic.make(kind, shape=(96, 96), seed=seed)
    n_labels = ds.attrs["n_labels"]
    counts = np.bincount(ds.labels.values.ravel(), minlength=n_labels)
    assert len(counts) == n_labels and n_labels >= 2
    # Each label covers at least a few patch areas, so a patch grid can resolve it.
    assert counts.min() >= 0.07 * ds.labels.size
    if "variant_labels" in ds:
        assert set(np.unique(ds.variant_labels.values)) == {0, 1, 2, 3}


@pytest.mark.parametrize("kind", synthetic.KINDS)
def test_periods_are_incommensurate_with_strides(phantoms, kind):
    ds = phantoms[kind, (96, 96)]
    periods = [v for key, value in ds.attrs.items() if key.endswith("period_px")
               for v in np.atleast_1d(value)]
    if kind == "pfm_labyrinth":
        assert periods == []  # a labyrinth has no period, only a typical width
        periods = [2 * ds.attrs["domain_width_px"]]
    assert periods
    for period in periods:
        for stride in STRIDES:
            ratio = period / stride
            assert abs(ratio - round(ratio)) > 0.05, (period, stride)


@pytest.mark.parametrize("kind", synthetic.KINDS)
def test_netcdf_round_trip(kind, tmp_path):
    ds = synthetic.make(kind, shape=(48, 48), seed=2)
    path = tmp_path / f"{kind}.nc"
    ds.to_netcdf(path, engine="h5netcdf")
    back = xr.load_dataset(path, engine="h5netcdf")
    xr.testing.assert_allclose(ds, back)
    assert back.boundaries.dtype == bool
    assert back.x.attrs["units"] == ds.x.attrs["units"]


# ---------------------------------------------------------------- labels match the image


def test_graphene_grain_orientations_match_labels():
    ds = synthetic.honeycomb_grains(shape=(256, 256), seed=2)
    peaks = _window_peaks(ds.image, ds.labels)
    angles = ds.attrs["angles_deg"]
    assert sorted(peaks) == list(range(3))
    for grain, (periods, measured) in peaks.items():
        assert np.median(periods) == pytest.approx(ds.attrs["period_px"], rel=0.04)
        assert _angle_gap(_circular_mean(measured, 60), angles[grain], 60) < 2.0
    for a in range(3):
        for b in range(a):
            assert _angle_gap(angles[a], angles[b], 60) >= 10.0 - 1e-9


def test_graphene_given_angles_are_used():
    ds = synthetic.honeycomb_grains(shape=(96, 96), seed=0, n_grains=2, angles=[5.0, 37.0])
    assert ds.attrs["angles_deg"] == [5.0, 37.0]
    with pytest.raises(SettingsError, match="one angle per grain"):
        synthetic.honeycomb_grains(shape=(96, 96), n_grains=3, angles=[5.0, 37.0])


def test_stripe_orientation_and_variants_match_labels():
    ds = synthetic.stripe_domains(shape=(256, 256), seed=1)
    peaks = _window_peaks(ds.image, ds.labels, max_period=30.0)
    for orientation, (periods, measured) in peaks.items():
        expected = ds.attrs["stripe_angles_deg"][orientation]
        assert np.median(periods) == pytest.approx(ds.attrs["stripe_period_px"], rel=0.06)
        assert _angle_gap(_circular_mean(measured, 180), expected, 180) < 4.0
    # Variants 0/1 live in orientation domain 0, variants 2/3 in domain 1.
    variants, labels = ds.variant_labels.values, ds.labels.values
    np.testing.assert_array_equal(variants // 2, labels)
    # Away from walls, each variant shows its own intensity level.
    inner = ~synthetic.label_boundaries(variants)
    levels = ds.attrs["variant_levels"]
    means = [ds.image.values[inner & (variants == v)].mean() for v in range(4)]
    assert np.argsort(means).tolist() == np.argsort(levels).tolist()
    np.testing.assert_allclose(means, levels, atol=0.08)


def test_nio_lsmo_phases_differ_in_lattice_not_in_mean_intensity():
    ds = synthetic.two_phase_lattice(shape=(256, 256), seed=0, background=0.0)
    image, labels = ds.image.values, ds.labels.values
    means = [image[labels == phase].mean() for phase in (0, 1)]
    assert abs(means[0] - means[1]) < 0.05 * image.std()
    peaks = _window_peaks(image, labels, max_period=12.0)
    matrix_periods, _ = peaks[0]
    pillar_periods, _ = peaks[1]
    pillar = ds.attrs["pillar_period_px"]
    matrix = ds.attrs["matrix_period_px"]
    assert np.median(pillar_periods) == pytest.approx(pillar, rel=0.05)
    # The matrix shows its (100) or its stronger (110) reflection, never the pillar one.
    nearest = np.minimum(abs(matrix_periods - matrix), abs(matrix_periods - matrix / np.sqrt(2)))
    assert np.median(nearest) < 0.05 * matrix
    assert np.all(abs(matrix_periods - pillar) > 0.1 * pillar)


def test_nio_lsmo_has_several_pillars():
    ds = synthetic.two_phase_lattice(shape=(96, 96), seed=0)
    _, n_pillars = ndimage.label(ds.labels.values == 1)
    assert n_pillars == ds.attrs["n_pillars"] == 3


def test_pfm_phase_sign_and_wall_dip_match_labels():
    ds = synthetic.pfm_labyrinth(shape=(128, 128), seed=3)
    phase = ds.image.sel(channel="phase").values
    amplitude = ds.image.sel(channel="amplitude").values
    labels = ds.labels.values
    walls = ds.boundaries.values
    assert ds.image.attrs["phase_channels"] == ["phase"]
    assert ds.image.attrs["channel_units"] == ["a.u.", "deg"]
    agree = (phase > 0) == (labels == 1)
    assert agree[~walls].mean() > 0.99
    assert abs(phase[labels == 1].mean() - ds.attrs["phase_deg"]) < 15
    assert abs(phase[labels == 0].mean() + ds.attrs["phase_deg"]) < 15
    # Walls are dark in amplitude; up and down domains are equally bright.
    assert np.median(amplitude[walls]) < 0.8 * np.median(amplitude[~walls])
    far = ndimage.distance_transform_edt(~walls) > 3
    up, down = amplitude[far & (labels == 1)].mean(), amplitude[far & (labels == 0)].mean()
    assert abs(up - down) < 0.05


# ---------------------------------------------------------------- settings and errors


def test_make_rejects_unknown_kind():
    with pytest.raises(SettingsError, match="graphene_grains"):
        synthetic.make("quasicrystal")


@pytest.mark.parametrize("shape", [(16, 96), (96,), "big"])
def test_bad_shape_is_a_clear_error(shape):
    with pytest.raises(SettingsError, match="shape"):
        synthetic.honeycomb_grains(shape=shape)


def test_too_many_grains_for_the_angle_separation():
    with pytest.raises(SettingsError, match="min_angle_deg"):
        synthetic.honeycomb_grains(shape=(96, 96), n_grains=7, min_angle_deg=10)


def test_noise_free_phantom_is_clean():
    quiet = dict(dose=None, noise=0.0, jitter_px=0.0, line_offset=0.0, background=0.0)
    ds = synthetic.two_phase_lattice(shape=(64, 64), seed=0, **quiet)
    again = synthetic.two_phase_lattice(shape=(64, 64), seed=0, dose=50.0)
    assert ds.attrs["dose"] == 0.0 and again.attrs["dose"] == 50.0
    assert (ds.image.values >= 0).all()
    # Shot noise only adds variance around the same clean signal.
    assert again.image.values.std() > 0.9 * ds.image.values.std()


def test_label_boundaries_marks_both_sides():
    labels = np.zeros((5, 6), dtype=int)
    labels[:, 3:] = 1
    edges = synthetic.label_boundaries(labels)
    assert edges[:, 2].all() and edges[:, 3].all()
    assert edges.sum() == 10
