"""The dashboard's store and views, without a browser.

Tiny images (32 x 32) and a few epochs keep every test to seconds. Training runs in
the store's background thread, so each test waits for it (`Store.wait`).
"""
import holoviews as hv
import numpy as np
import panel as pn
import param
import pytest
import xarray as xr

import phyvae_dash as pvd
from phyvae_dash.app.app import Dashboard
from phyvae_dash.app.store import Store, automatic_settings
from phyvae_dash.app.views import Controls, PatchView

SMALL = dict(patch_size=8, stride=4, epochs=2, latent_dim=2, transform="patch")


def two_domains(size=32, seed=0):
    """Left half dark, right half bright, with noise; physical axes in nm."""
    rng = np.random.default_rng(seed)
    values = np.where(np.arange(size)[None, :] < size // 2, 0.2, 0.8)
    values = values + 0.05 * rng.standard_normal((size, size))
    coords = {"y": ("y", np.arange(size) * 0.5, {"units": "nm"}),
              "x": ("x", np.arange(size) * 0.5, {"units": "nm"})}
    return xr.DataArray(values.astype(np.float32), dims=("y", "x"), coords=coords,
                        name="intensity", attrs={"source": "two_domains"})


class Notifications:
    """Records what would be shown as toasts in the browser."""

    def __init__(self):
        self.shown = []

    def __getattr__(self, level):
        return lambda text, duration=None: self.shown.append((level, text))


@pytest.fixture
def notifications(monkeypatch):
    fake = Notifications()
    # Outside a server session Panel returns this module-level notification area.
    monkeypatch.setattr(pn.state, "_notification", fake)
    return fake


@pytest.fixture
def store():
    store = Store(two_domains(), auto_train=False)
    store.param.update(**SMALL)
    yield store
    store.cancel()
    assert store.wait(60)


def release(slider, value):
    """What a browser does when the user lets go of a slider: value, then value_throttled."""
    slider.value = value
    with param.edit_constant(slider):
        slider.value_throttled = value


def test_default_store_opens_on_the_demo():
    store = Store(auto_train=False)
    assert store.data is not None and store.source
    assert store.device
    assert store.model in ("vae", "shift", "rotation") and "auto" in store.param.transform.objects


def test_an_automatic_transform_is_reported_with_its_reason_not_as_user_chosen():
    store = Store(pvd.synthetic.make("pfm_labyrinth", shape=(48, 48))["image"], auto_train=False)
    store.param.update(epochs=2)
    automatic = store.auto_settings["transform"]
    reason = next(r for r in store.auto_reasons if r.startswith("transform "))
    store.train()
    assert store.wait(60)
    assert f"transform {store.transform_info}" == reason and store.transform == automatic
    store.transform = "fft"  # now the user's own choice
    store.train()
    assert store.wait(60)
    assert store.transform_info == "fft: chosen by the user"


def test_train_then_result_and_segmentation(store):
    store.train()
    assert store.running
    assert store.wait(60)
    assert store.status == "done" and not store.running
    assert store.result["z_mean"].dims == ("latent", "y", "x")
    assert store.z_maps.shape == (2, 7, 7)
    assert store.labels.shape == (7, 7)
    assert float(store.boundary_len) >= 0 and store.boundary_len.units == "nm"
    assert set(store.losses) >= {"reconstruction", "kl", "boundary"}


def test_throttled_slider_release_starts_a_job(store):
    store.auto_train = True
    controls = Controls(store=store)
    controls.patch_size.value = 6  # dragging: no job yet
    assert store.jobs_started == 0
    release(controls.patch_size, 6)
    assert store.patch_size == 6 and store.jobs_started == 1 and store.running
    assert store.wait(60)
    assert store.result.attrs["patch_size"] == 6


def test_second_change_cancels_the_first(store):
    store.auto_train = True
    store.epochs = 300  # long enough to be still running at the next change
    first = store._job
    assert first is not None and first.thread.is_alive()
    store.patch_size = 6
    assert first.cancel.is_set()
    second = store._job
    assert second is not first
    assert store.wait(120)
    assert store.result.attrs["patch_size"] == 6
    assert store.result.attrs.get("epochs", 300) == 300


def test_cached_settings_do_not_retrain(store):
    store.auto_train = True
    store.patch_size = 6
    assert store.wait(60)
    store.patch_size = 8
    assert store.wait(60)
    started, result_at_8 = store.jobs_started, store.result
    store.patch_size = 6
    assert store.wait(60)
    store.patch_size = 8
    assert store.wait(60)
    assert store.jobs_started == started
    assert store.cache_hits >= 2
    assert store.result is result_at_8


def test_number_of_domains_resegments_without_training(store):
    store.n_domains = 2
    store.train()
    assert store.wait(60)
    started = store.jobs_started
    store.n_domains = 3
    assert store.wait(60)
    assert int(store.labels.max()) + 1 == 3
    assert store.jobs_started == started


def test_corrupt_upload_notifies_and_app_keeps_working(store, notifications, tmp_path):
    before = store.data
    store.upload(b"\x93NUMPY garbage that is not an array", "corrupt.npy")
    assert store.wait(30)
    assert store.message["level"] == "error" and "corrupt.npy" in store.message["text"]
    assert any(level == "error" and "corrupt.npy" in text for level, text in notifications.shown)
    assert store.data is before
    # Still working: a good upload loads and trains.
    store.auto_train = True
    good = tmp_path / "good.npy"
    np.save(good, two_domains(40, seed=1).values)
    store.upload(good.read_bytes(), "good.npy")
    assert store.wait(60)
    assert store.data.shape == (40, 40) and store.source == "good.npy"
    assert store.result is not None


def test_oversized_upload_is_refused(store, notifications, monkeypatch):
    monkeypatch.setattr("phyvae_dash.app.store.MAX_UPLOAD_BYTES", 10)
    store.upload(b"x" * 11, "huge.npy")
    assert store.message["level"] == "error" and "limit" in store.message["text"]


def test_selections(store):
    store.train()
    assert store.wait(60)
    store.select_bounds((0.0, 0.0, 5.0, 5.0))
    assert store.selection.shape == (7, 7) and 0 < store.selection.sum() < 49
    store.select_indices([0, 1, 2])
    assert store.selection.sum() == 3
    store.select_position(x=3.8, y=2.0)  # patch centres are at 1.75, 3.75, ... nm
    assert store.point == (0, 1)
    store.clear_selection()
    assert store.selection is None and store.point is None


def test_views_render_before_and_after_training(store):
    dashboard = Dashboard(store=store)
    pn.panel(dashboard).get_root()  # before any result
    store.compare = True
    store.train()
    assert store.wait(120)
    assert store.outcome.baseline is not None and store.baseline_labels is not None
    store.point = (3, 3)
    store.select_indices([0, 8, 16])
    root = pn.panel(dashboard).get_root()
    # What the page shows: two latent maps drawn from the result, the domains' summary,
    # the patch and its reconstruction, and the weight-0 comparison.
    shown = [m for m in root.references() if type(m).__name__ == "Image" and hasattr(m, "image")]
    assert len(shown) >= 1
    z = store.result["z_mean"].values
    maps = [live.source.data["image"][0] for live in dashboard.latent_maps._maps]
    assert len(maps) == 2 and all(m.shape == z.shape[1:] for m in maps)
    assert sorted(np.round([m.mean() for m in maps], 5)) == sorted(np.round(z.mean(axis=(1, 2)), 5))
    n = int(store.labels.max()) + 1
    assert f"**{n} domains**" in dashboard.image_view.summary.object
    patch = dashboard.patch._plot(store.point, store.outcome, store.selection)
    assert isinstance(patch, hv.Layout) and len(patch) == 2  # input above reconstruction
    comparison = dashboard.comparison._plot(store.outcome, store.baseline_labels)
    assert isinstance(comparison, hv.Layout) and len(comparison) == 4


def test_comparison_switched_on_after_a_fit_shows_the_weight0_domains(store):
    store.train()
    assert store.wait(120) and store.baseline_labels is None
    store.compare = True  # same settings: the result is cached, only the weight-0 fit runs
    store.train()
    assert store.wait(120)
    assert store.outcome.baseline is not None
    assert store.baseline_labels is not None and store.baseline_labels.shape == store.labels.shape
    assert float(store.baseline_len) > 0


def test_patch_view_reconstruction_matches_its_input_for_multichannel_scans():
    image = pvd.synthetic.make("pfm_labyrinth", shape=(96, 96))["image"]  # amplitude + phase
    store = Store(image, auto_train=False)
    store.param.update(patch_size=8, stride=4, epochs=15, transform="patch")
    store.train()
    assert store.wait(120)
    inputs, reconstruction = store.outcome.inputs, store.outcome.reconstruction
    assert inputs.shape == reconstruction.shape and inputs.shape[2] == 3  # amplitude, cos, sin
    # Channel-first inputs against the decoder's channel-last patches, reordered: a
    # scrambled order correlated 0.24 here, the right one 0.77.
    assert np.corrcoef(inputs.ravel(), reconstruction.ravel())[0, 1] > 0.6
    # The patch view names each channel as the model sees it, not "ch0".
    assert store.result.attrs["input_channels"] == ["amplitude", "phase:cos", "phase:sin"]
    titles = [tile.opts.get().kwargs["title"] for tile in PatchView(store=store)._plot(
        outcome=store.outcome).values()]
    assert titles[:3] == ["input amplitude", "input phase:cos", "input phase:sin"]
    assert titles[3:] == ["recon. amplitude", "recon. phase:cos", "recon. phase:sin"]


def test_spectral_data_render():
    rng = np.random.default_rng(0)
    energy = np.linspace(0, 1, 12)
    spectra = np.where(np.arange(16)[None, :, None] < 8, energy, 1 - energy) * np.ones((16, 16, 1))
    data = xr.DataArray((spectra + 0.05 * rng.standard_normal(spectra.shape)).astype(np.float32),
                        dims=("y", "x", "energy"), coords={"energy": ("energy", energy, {"units": "eV"})})
    store = Store(data, auto_train=False)
    assert store.kind == "spectral" and store.patch_size == 3 and store.transform == "spectrum"
    store.param.update(stride=2, epochs=2)
    dashboard = Dashboard(store=store)
    store.train()
    assert store.wait(60), store.status
    assert store.status == "done", store.messages
    store.select_indices([0, 1])
    pn.panel(dashboard).get_root()
    plot = dashboard.patch._plot(store.point, store.outcome, store.selection)
    # The spectrum, its reconstruction and the brushed mean, on the energy axis.
    assert isinstance(plot, hv.Overlay)
    curves = list(plot)
    assert [curve.label for curve in curves] == ["spectrum", "reconstruction", "mean of 2 brushed"]
    assert curves[0].kdims[0].name == "energy" and len(curves[0]) == 12


def test_exports(store, tmp_path, monkeypatch):
    import json
    import tempfile

    import tifffile

    from phyvae_dash.app.views import ExportView

    export = ExportView(store=store)
    assert export.netcdf.disabled  # nothing to export before training
    store.train()
    assert store.wait(60)
    assert not export.netcdf.disabled and not export.tiff.disabled
    netcdf = tmp_path / "result.nc"
    netcdf.write_bytes(export._netcdf().getvalue())
    with xr.open_dataset(netcdf) as result:
        assert result["z_mean"].shape == store.result["z_mean"].shape
    assert len(export._weights().getvalue()) > 0
    labels = tifffile.imread(export._labels("tiff"))
    assert labels.shape == store.labels.shape
    assert export._labels("png").getvalue()[:4] == b"\x89PNG"
    settings = json.loads(export._settings().getvalue())
    assert settings["settings"]["patch_size"] == 8 and settings["boundary_length_units"] == "nm"
    # Downloads leave no temporary folder behind.
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    export._netcdf(), export._weights()
    assert list(scratch.iterdir()) == []


def test_scatter_rasterizes_many_points(store, monkeypatch):
    from phyvae_dash.app import views

    monkeypatch.setattr(views, "RASTERIZE_POINTS", 10)  # 49 positions count as many
    store.train()
    assert store.wait(60)
    scatter = views.LatentScatter(store=store)
    assert scatter._rasterized
    pn.panel(scatter).get_root()
    scatter_bounds = (float(store.z_maps[0].min()), float(store.z_maps[1].min()),
                      float(store.z_maps[0].max()), float(store.z_maps[1].max()))
    store.select_latent_box(scatter_bounds, (0, 1))
    assert store.selection.all()


def test_views_render_while_training_runs(store):
    """Rendering on this thread while the training thread reports must never race."""
    dashboard = Dashboard(store=store)
    store.epochs = 40
    store.train()
    renders = 0
    while store.running and renders < 200:
        # The training thread only queues its updates; this thread applies them, as a
        # server's event loop would, in between two renders.
        pn.panel(dashboard.training).get_root()
        pn.panel(dashboard.latent_maps).get_root()
        store.apply_updates()
        renders += 1
    assert renders > 1
    assert store.wait(120)
    assert store.status == "done", store.messages
    assert store.result is not None and not any(m["level"] == "error" for m in store.messages)
    pn.panel(dashboard).get_root()


def test_a_failing_view_does_not_stop_training(store, notifications):
    def broken_view(event):
        raise RuntimeError("this view cannot draw")

    store.param.watch(broken_view, ["z_maps"])
    store.train()
    assert store.wait(60)
    assert store.status == "done" and store.result is not None and not store.running
    assert any(level == "warning" and "cannot draw" in text for level, text in notifications.shown)


def test_fit_warnings_reach_the_user(store, notifications, monkeypatch):
    import warnings

    import phyvae_dash as pvd

    real_fit = pvd.fit

    def fit_that_warns(*args, **kwargs):
        warnings.warn("the latents collapsed; try a smaller boundary_weight", UserWarning)
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(pvd, "fit", fit_that_warns)
    store.train()
    assert store.wait(60)
    assert store.status == "done"
    assert any(level == "warning" and "Training: the latents collapsed" in text for level, text in notifications.shown)


def test_one_latent_shows_a_histogram_by_domain(store):
    from phyvae_dash.app.views import LatentScatter

    store.latent_dim = 1
    scatter = LatentScatter(store=store)
    store.train()
    assert store.wait(60)
    assert scatter._mode == "histogram" and not scatter.x_latent.visible and "z0" in scatter.hint.object
    pn.panel(scatter).get_root()
    bars = scatter._histograms(store.result, store.labels, None)
    assert {str(key) for key in bars.keys()} == {f"domain {k}" for k in np.unique(store.labels.values)}
    assert sum(int(h.dimension_values("positions").sum()) for h in bars) == store.labels.size
    # A range of z0 brushes the positions inside it.
    z0 = store.result["z_mean"].values[0]
    scatter_range = (float(z0.min()) - 1, float(z0.max()) + 1)
    store.select_latent_box((scatter_range[0], -np.inf, scatter_range[1], np.inf), (0, 0))
    assert store.selection.all()



def test_one_latent_manifold_is_one_row_along_z0(store):
    """With one latent the z0-z1 plane would repeat z0 on both axes: show one row."""
    from phyvae_dash.app.views import ManifoldView

    store.latent_dim = 1
    view = ManifoldView(store=store)
    store.train()
    assert store.wait(60)
    plot = view._plot(store.outcome)
    assert plot.opts.get().kwargs["title"] == "Decoded patches along z0"
    n_steps = store.outcome.manifold.sizes["u"]
    assert plot.bounds.lbrt() == (0, 0, n_steps, 1)
    pn.panel(view).get_root()

@pytest.mark.realdata
def test_registry_spectral_map_trains_and_shows_spectra(shared_data, monkeypatch):
    import holoviews as hv

    monkeypatch.setenv("PHYVAE_DASH_DATA", str(shared_data))
    store = Store(auto_train=False)
    dashboard = Dashboard(store=store)
    store.load_dataset("bfo_iv")
    assert store.wait(120)
    assert store.source == "bfo_iv" and store.kind == "spectral", store.messages
    # The model layer's spectral preset, which `fit` accepts.
    assert (store.patch_size, store.stride, store.transform) == (3, 1, "spectrum")
    store.epochs = 3
    store.train()
    assert store.wait(300)
    assert store.status == "done", store.messages
    assert store.result.attrs["transform"] == "spectrum"
    store.point = (10, 10)
    pn.panel(dashboard).get_root()
    spectra = dashboard.patch._plot(store.point, store.outcome, store.selection)
    assert isinstance(spectra, hv.Overlay)
    assert {curve.label for curve in spectra} >= {"spectrum", "reconstruction"}


# ---------------------------------------------------------------- the last setting wins
def test_the_last_setting_wins_over_a_dataset_that_arrives_later(store):
    """A dataset's recommended settings never undo a setting written after it was asked for."""
    store.load_dataset("pfm_labyrinth")  # read in a thread; its settings arrive with it
    store.patch_size = 6                 # the user moves a slider meanwhile
    assert store.wait()
    assert store.source == "pfm_labyrinth"
    assert store.patch_size == 6
    # The settings the user did not touch are the dataset's (chosen from it).
    chosen = automatic_settings(pvd.datasets.load_dataset("pfm_labyrinth")["image"])
    assert (store.latent_dim, store.boundary_weight) == (chosen["latent_dim"], chosen["boundary_weight"])
    # A setting written before the request is the dataset's to change.
    store.load_dataset("pfm_labyrinth")
    assert store.wait()
    assert store.patch_size == chosen["patch_size"]


def test_a_burst_of_widget_changes_ends_on_the_last_values(store):
    """Every widget shows the value set last; the store and the shown result agree with it."""
    controls = Controls(store=store)
    store.auto_train = True
    shown = []
    controls.patch_size.param.watch(lambda event: shown.append(event.new), "value")
    for value in (9, 10, 11, 12, 10, 11):
        release(controls.patch_size, value)
        release(controls.stride, 3 if value % 2 else 4)
        controls.weight_off.value = value % 2 == 1
        release(controls.epochs, 2 + value % 2)
    assert store.wait(120)
    # No echo from the store moved the slider back to an older value along the way.
    assert shown == [9, 10, 11, 12, 10, 11]
    assert (controls.patch_size.value, controls.stride.value, controls.weight_off.value,
            controls.epochs.value) == (11, 3, True, 3)
    assert (store.patch_size, store.stride, store.boundary_weight, store.epochs) == (11, 3, 0.0, 3)
    attrs = store.result.attrs
    assert (attrs["patch_size"], attrs["stride"], attrs["boundary_weight"]) == (11, 3, 0.0)


def test_the_store_sets_the_widgets_it_changes_itself(store):
    """A setting the store (or a script) writes still shows in the widgets."""
    controls = Controls(store=store)
    store.patch_size = 14
    assert controls.patch_size.value == 14


def test_the_dashboard_starts_from_the_automatic_settings_and_returns_to_them():
    """New data arrives with the settings `choose_settings` picks for it, shown with their
    reasons; a slider overrides one, and "Auto" brings every one back."""
    store = Store(two_domains(), auto_train=False)
    chosen = pvd.choose_settings(store.image)
    assert store.auto_settings and store.patch_size == chosen.patch_size
    assert store.stride == chosen.stride and store.transform == chosen.transform
    assert store.auto_reasons == chosen.reason_list()
    controls = Controls(store=store)
    text = controls.auto_reasons.object
    assert f"patch_size {chosen.patch_size}:" in text and "Chosen from the data" in text
    release(controls.patch_size, chosen.patch_size + 2)
    assert store.patch_size == chosen.patch_size + 2  # the user's setting is kept
    controls.use_auto.clicks += 1
    assert store.patch_size == chosen.patch_size and store.stride == chosen.stride


def test_4d_stem_shows_a_virtual_image_and_the_pattern_at_a_position():
    """4D-STEM data: the image is a virtual ADF/BF image (selectable), and the patch view
    shows the diffraction pattern at the clicked position and the brushed mean."""
    from phyvae_dash.app.views import display_image
    from phyvae_dash.data import fourd

    data = pvd.synthetic.make("diffraction_grains", scan_shape=(16, 16), detector=24, seed=0).image
    store = Store(data, auto_train=False)
    assert store.kind == "diffraction" and store.patch_size == 1
    adf = display_image(store)
    assert adf.dims == ("y", "x") and adf.attrs["detector"] == "adf"
    store.virtual_detector = "bf"
    bf = display_image(store)
    assert bf.attrs["detector"] == "bf" and not np.allclose(adf.values, bf.values)
    store.epochs = 2
    store.train()
    assert store.wait(120) and store.result is not None
    view = PatchView(store=store)
    store.point = (3, 4)
    store.select_indices([0, 1, 2])
    layout = view._plot(store.point, store.outcome, store.selection)
    assert isinstance(layout, hv.Layout) and len(layout) == 2
    at = fourd.value_at(data, float(store.z_maps["y"][3]), float(store.z_maps["x"][4]))
    shown = layout[0].dimension_values(2, flat=False)
    np.testing.assert_allclose(np.sort(shown.ravel()), np.sort(np.log1p(at.values.ravel())), rtol=1e-6)
    pn.panel(Dashboard(store=store)).get_root()  # the whole dashboard renders 4D data
