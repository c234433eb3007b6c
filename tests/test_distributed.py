"""Everything on a dask.distributed cluster: in-process, 2 worker processes, a dead worker."""
import os
import signal
import socket
import threading
import time

import numpy as np
import pytest
import xarray as xr

import phyvae_dash as pvd
from phyvae_dash.errors import SettingsError
from phyvae_dash.models import blockwise
from phyvae_dash.models.cluster import compute_kwargs

distributed = pytest.importorskip("distributed")


def _image(shape=(64, 64), seed=0):
    rng = np.random.default_rng(seed)
    values = np.zeros(shape, dtype=np.float32)
    values[:, shape[1] // 2:] = 1.0
    values += 0.2 * rng.normal(size=shape).astype(np.float32)
    return xr.DataArray(values, dims=("y", "x"), name="scan")


@pytest.fixture(scope="module")
def result():
    return pvd.fit(_image(), patch_size=8, stride=2, epochs=2, transform="patch", seed=0)


def test_encode_on_an_in_process_cluster_by_client_and_address(result):
    image = _image(seed=1)
    expected = result.pvd.encode(image).z_mean
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        lazy = result.pvd.encode(image.chunk(24), scheduler=client)
        assert float(abs(lazy.z_mean.compute() - expected).max()) < 1e-5  # the active client
        by_address = result.pvd.encode(image.chunk(24), scheduler=cluster.scheduler_address)
        assert float(abs(by_address.z_mean.compute() - expected).max()) < 1e-5


def test_unreachable_scheduler_fails_clearly_within_10_s():
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    start = time.perf_counter()
    with pytest.raises(SettingsError, match=f"tcp://127.0.0.1:{port}"):
        with compute_kwargs(f"tcp://127.0.0.1:{port}"):
            pass
    assert time.perf_counter() - start < 10


@pytest.mark.slow
def test_encode_many_finishes_when_a_worker_process_dies(result, tmp_path, monkeypatch):
    monkeypatch.setattr(blockwise, "POSITIONS_PER_BLOCK", 64)  # many small tasks per file
    paths = []
    for k in range(6):
        path = tmp_path / f"scan{k}.zarr"
        _image((96, 96), seed=k).to_dataset().to_zarr(path)
        paths.append(path)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        pids = list(client.run(os.getpid).values())
        outcome = {}

        def run():
            try:
                outcome["written"] = pvd.encode_many(paths, result, tmp_path / "out",
                                                     scheduler=client, progress=False)
            except Exception as error:  # noqa: BLE001 (reported below)
                outcome["error"] = error

        worker = threading.Thread(target=run)
        worker.start()
        deadline = time.time() + 60
        # kill one worker process as soon as the encoding tasks run on it
        while time.time() < deadline and not any(
                "_encode_block" in str(k) or "run-" in str(k)
                for keys in client.processing().values() for k in keys):
            time.sleep(0.05)
        os.kill(pids[0], signal.SIGKILL)
        worker.join(timeout=120)
        assert not worker.is_alive() and "error" not in outcome, outcome.get("error")
        assert pids[0] not in client.run(os.getpid).values()  # it died during the run
    for path, written in zip(paths, outcome["written"]):
        expected = result.pvd.encode(pvd.load(path)).z_mean
        got = pvd.open_result(written).z_mean
        assert float(abs(got - expected).max()) < 1e-5, written


def test_cli_encode_fits_once_then_reuses_the_model(tmp_path, capsys):
    from phyvae_dash.cli import main

    files = []
    for k in range(2):
        files.append(str(tmp_path / f"scan{k}.npy"))
        np.save(files[-1], _image((48, 48), seed=k).values)
    out = tmp_path / "out"
    assert main(["encode", *files, "--out", str(out), "--patch-size", "8", "--quiet"]) == 0
    assert (out / "model.nc").exists() and (out / "scan1.zarr").exists()
    model = out / "model.nc"
    assert main(["encode", files[0], "--model", str(model), "--out", str(tmp_path / "again"),
                 "--scheduler", "sync", "--quiet"]) == 0
    first = pvd.open_result(out / "scan0.zarr").z_mean
    again = pvd.open_result(tmp_path / "again" / "scan0.zarr").z_mean
    assert float(abs(first - again).max()) < 1e-6
    assert main(["encode", files[0], "--model", str(model), "--scheduler", "tcp://127.0.0.1:1",
                 "--out", str(tmp_path / "x")]) == 2
    assert "cannot reach the dask scheduler" in capsys.readouterr().err
