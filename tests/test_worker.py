"""The worker process that runs the dashboard's fits (phyvae_dash.app.worker)."""
import threading
import warnings

import numpy as np
import pytest

import phyvae_dash as pvd
from phyvae_dash.app.store import Store
from phyvae_dash.app.worker import FitWorker
from phyvae_dash.errors import FitCancelled, PhyvaeDashError, SettingsError


@pytest.fixture(scope="module")
def image():
    return pvd.synthetic.make("pfm_labyrinth", shape=(64, 64), seed=2)["image"]


@pytest.fixture(scope="module")
def fit_worker():
    with FitWorker() as started:
        yield started


def test_fit_in_worker_matches_fit_here(fit_worker, image):
    settings = dict(patch_size=8, stride=4, epochs=4, seed=5, transform="patch", device="cpu",
                    boundary_weight=0.1)
    epochs = []
    remote = fit_worker.fit(image, callback=lambda progress: epochs.append(progress.epoch), **settings)
    local = pvd.fit(image, **settings)
    assert epochs == [1, 2, 3, 4]
    assert remote.z_mean.dims == ("latent", "y", "x")
    # Same seed and data; the worker may use another number of threads (float sums reorder).
    np.testing.assert_allclose(remote.z_mean.values, local.z_mean.values, atol=1e-3)
    assert remote.attrs["seed"] == 5
    # The model came back with the result: decoding and reconstruction work here.
    reconstruction = remote.pvd.reconstruct()
    assert reconstruction.shape[:2] == remote.z_mean.shape[1:]
    np.testing.assert_allclose(reconstruction.values, local.pvd.reconstruct().values, atol=1e-3)


def test_cancel_stops_the_worker_fit_and_it_takes_the_next(fit_worker, image):
    cancel = threading.Event()
    seen = []

    def cancel_after_first(progress):
        seen.append(progress.epoch)
        cancel.set()

    with pytest.raises(FitCancelled):
        fit_worker.fit(image, patch_size=8, stride=4, epochs=500, callback=cancel_after_first,
                       cancel=cancel)
    assert len(seen) < 5  # it stops within an epoch (plus messages already in flight)
    result = fit_worker.fit(image, patch_size=8, stride=4, epochs=2)
    assert result.attrs["epochs"] == 2


def test_errors_and_warnings_reach_the_caller(fit_worker, image):
    with pytest.raises(SettingsError, match="larger than the image"):
        fit_worker.fit(image, patch_size=800, stride=4, epochs=2)
    # A boundary weight this large flattens the maps; `fit` warns, the caller sees it.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit_worker.fit(image, patch_size=8, stride=4, epochs=2, boundary_weight=1e4)
    assert any("collapsed" in str(w.message) for w in caught)


def test_a_crashed_worker_is_an_error_not_a_hang(image):
    worker = FitWorker()
    worker._process.kill()
    worker._process.wait()
    with pytest.raises(PhyvaeDashError, match="stopped unexpectedly"):
        worker.fit(image, patch_size=8, stride=4, epochs=2)
    worker.close()


def test_store_with_a_worker_process(image):
    store = Store(image, auto_train=False, runner="process")
    try:
        assert store._worker is None  # an idle session holds no process
        store.param.update(patch_size=8, stride=4, epochs=3)
        store.train()
        assert store.wait(120)
        assert store.status == "done", store.messages
        assert store.labels.dims == ("y", "x")
        assert store.outcome.reconstruction is not None
        # A crashed process is replaced at the next training.
        store._worker._process.kill()
        store._worker._process.wait()
        store.param.update(patch_size=12)
        store.train()
        assert store.wait(120)
        assert store.status == "done", store.messages
    finally:
        store.close()
    assert not store._worker.alive


def test_spares_only_after_prestart(monkeypatch):
    from phyvae_dash.app import worker

    monkeypatch.setattr(worker, "_spare", None)
    first = worker.acquire()
    assert worker._spare is None  # nobody asked for spares: none idles
    worker.prestart()
    spare = worker._spare
    second = worker.acquire()
    assert second is spare and worker._spare is not None and worker._spare is not spare
    for started in (first, second, worker._spare):
        started.close()
        assert not started.alive
