"""Fits on the shared pool (phyvae_dash.app.pool): a LocalCluster of one worker process."""
import os
import signal
import threading
import time

import numpy as np
import psutil
import pytest

import phyvae_dash as pvd
from phyvae_dash.app.pool import FitPool
from phyvae_dash.app.store import Store
from phyvae_dash.errors import FitCancelled, PhyvaeDashError, SettingsError

SMALL = dict(patch_size=8, stride=4, epochs=2)


@pytest.fixture(scope="module")
def image():
    return pvd.synthetic.make("pfm_labyrinth", shape=(48, 48), seed=2)["image"]


@pytest.fixture(scope="module")
def pool():
    with FitPool(n_workers=1) as started:
        yield started


def _until(condition, timeout=30.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.05)
    return False


def _long_fit(pool, image):
    """A fit that holds the pool's one worker until it is cancelled."""
    job = pool.submit(image, patch_size=8, stride=4, epochs=2000)
    cancel = threading.Event()

    def follow():
        with pytest.raises(FitCancelled):
            job.result(cancel=cancel)

    thread = threading.Thread(target=follow)
    thread.start()
    assert _until(lambda: job.started), "the long fit did not start"
    return cancel, thread


def test_fit_on_the_pool_matches_fit_here(pool, image):
    settings = dict(patch_size=8, stride=4, epochs=3, seed=5, transform="patch", device="cpu",
                    boundary_weight=0.1)
    epochs, threads = [], set()

    def record(progress):
        epochs.append(progress.epoch)
        threads.add(threading.get_ident())

    remote = pool.fit(image, callback=record, **settings)
    local = pvd.fit(image, **settings)
    assert epochs == [1, 2, 3]
    assert threads == {threading.get_ident()}  # the callback runs in the caller's thread
    # Same seed and data; the worker may use another number of threads (float sums reorder).
    np.testing.assert_allclose(remote.z_mean.values, local.z_mean.values, atol=1e-3)
    # The model came back with the result: decoding works here.
    np.testing.assert_allclose(remote.pvd.reconstruct().values, local.pvd.reconstruct().values, atol=1e-3)


def test_cancel_stops_the_fit_on_the_worker(pool, image):
    cancel = threading.Event()
    seen = []

    def cancel_after_first(progress):
        seen.append(progress.epoch)
        cancel.set()

    started = time.monotonic()
    with pytest.raises(FitCancelled):
        pool.fit(image, patch_size=8, stride=4, epochs=2000, callback=cancel_after_first, cancel=cancel)
    assert len(seen) < 20 and time.monotonic() - started < 30
    assert pool.fit(image, **SMALL).attrs["epochs"] == 2  # the worker is free again


def test_errors_and_warnings_reach_the_caller(pool, image):
    with pytest.raises(SettingsError, match="larger than the image"):
        pool.fit(image, patch_size=800, stride=4, epochs=2)
    with pytest.warns(RuntimeWarning, match="collapsed"):
        pool.fit(image, patch_size=8, stride=4, epochs=2, boundary_weight=1e4)


def test_queued_fits_know_their_place(pool, image):
    stop_long, long_thread = _long_fit(pool, image)
    second = pool.submit(image, **SMALL)
    third = pool.submit(image, **SMALL)
    assert second.position() == 1 and third.position() == 2
    # The queued third one is cancelled before it starts: it never runs.
    with pytest.raises(FitCancelled, match="before it started"):
        third.result(cancel=_set_event())
    assert _until(lambda: second.position() == 1)
    places = []
    waiter = threading.Thread(target=lambda: places.append(second.result(waiting=places.append)))
    waiter.start()
    assert _until(lambda: places[:1] == [1]), places
    stop_long.set()
    long_thread.join(60)
    waiter.join(60)
    assert places[-2] == 0 and places[-1].attrs["epochs"] == 2  # told when it started, then done


def _set_event():
    event = threading.Event()
    event.set()
    return event


def test_a_killed_worker_fails_its_fit_and_the_pool_goes_on(pool, image):
    pids = list(pool.client.run(os.getpid).values())

    def kill_the_worker(progress):
        for pid in pids:
            os.kill(pid, signal.SIGKILL)

    with pytest.raises(PhyvaeDashError, match="stopped unexpectedly"):
        pool.fit(image, patch_size=8, stride=4, epochs=2000, callback=kill_the_worker)
    # The nanny has started a new worker; the next fit runs on it.
    assert pool.fit(image, **SMALL).attrs["epochs"] == 2
    assert list(pool.client.run(os.getpid).values()) != pids


def test_store_on_the_pool(pool, image):
    children = len(psutil.Process().children(recursive=True))
    stores = [Store(image, auto_train=False, pool=pool) for _ in range(3)]
    assert all(store.runner == "pool" for store in stores)
    store = stores[0]
    store.param.update(**SMALL)
    stop_long, long_thread = _long_fit(pool, image)
    store.train()
    # While the worker is busy, the store says where its fit is in the queue.
    assert _until(lambda: (store.apply_updates(), store.status)[1].startswith("waiting")), store.status
    assert store.status == "waiting for the pool: 1 fit ahead of yours"
    stop_long.set()
    long_thread.join(60)
    assert store.wait(120)
    assert store.status == "done", store.messages
    assert store.labels.dims == ("y", "x")
    assert store.outcome.reconstruction is not None
    # Sessions on a pool start no process of their own, idle or training.
    assert len(psutil.Process().children(recursive=True)) == children
    for each in stores:
        each.close()


def test_pool_runner_needs_a_pool(image):
    with pytest.raises(PhyvaeDashError, match="needs a pool"):
        Store(image, auto_train=False, runner="pool")


def test_a_pool_on_an_existing_scheduler(pool, image):
    """`serve --scheduler tcp://...`: a second server's pool on the same cluster."""
    address = pool.cluster.scheduler_address
    assert address.startswith("tcp://")
    with FitPool(address) as remote:
        assert remote.cluster is None and remote.n_workers == 1
        stop_long, long_thread = _long_fit(pool, image)
        queued = remote.submit(image, **SMALL)
        assert queued.position() == 1  # it counts the other server's fit too
        stop_long.set()
        long_thread.join(60)
        assert queued.result().attrs["epochs"] == 2
    assert pool.fit(image, **SMALL).attrs["epochs"] == 2  # closing it left the cluster running


def test_an_unreachable_scheduler_is_a_clear_error():
    import dask

    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        with pytest.raises(PhyvaeDashError, match="cannot reach the dask scheduler.*--scheduler"):
            FitPool("tcp://127.0.0.1:9")
