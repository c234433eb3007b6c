"""The `phyvae-dash` console script: `fit` writes a result and weights; `serve` answers."""
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest
import xarray as xr

from phyvae_dash.cli import main


@pytest.fixture
def small_npy(tmp_path):
    """A 48 x 48 two-domain image (left dark, right bright, with noise) as .npy."""
    rng = np.random.default_rng(0)
    image = np.where(np.arange(48)[None, :] < 24, 0.2, 0.8) + 0.05 * rng.standard_normal((48, 48))
    path = tmp_path / "two_domains.npy"
    np.save(path, image.astype(np.float32))
    return path


def test_fit_writes_result_and_weights(small_npy, tmp_path, capsys):
    out = tmp_path / "out" / "result.nc"
    status = main(["fit", str(small_npy), "--patch-size", "8", "--stride", "4", "--latent-dim", "2",
                   "--boundary-weight", "1", "--epochs", "2", "--model", "vae", "--out", str(out),
                   "--n-domains", "2"])
    assert status == 0
    assert out.exists()
    assert out.with_suffix(".safetensors").exists()
    with xr.open_dataset(out) as result:
        assert result["z_mean"].dims == ("latent", "y", "x")
        assert result.sizes["epoch"] == 2
    printed = capsys.readouterr().out
    assert "weights:" in printed and "domains" in printed


def test_fit_needs_no_settings(small_npy, tmp_path, capsys):
    out = tmp_path / "auto.nc"
    assert main(["fit", str(small_npy), "--epochs", "2", "--out", str(out), "--n-domains", "auto"]) == 0
    printed = capsys.readouterr().out
    assert "patch_size" in printed and "boundary_weight" in printed and "domains" in printed
    with xr.open_dataset(out) as result:
        assert len(result.attrs["auto_reasons"]) == 5


def test_fit_bad_file_is_one_line_error(tmp_path, capsys):
    bad = tmp_path / "broken.npy"
    bad.write_bytes(b"not a numpy file")
    assert main(["fit", str(bad), "--epochs", "1", "--out", str(tmp_path / "r.nc")]) == 2
    error = capsys.readouterr().err
    assert "broken.npy" in error and "Traceback" not in error


def test_serve_help():
    # Through the interpreter, as a user runs it (and without importing Panel in this process).
    done = subprocess.run([sys.executable, "-m", "phyvae_dash.cli", "serve", "--help"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    for option in ("--port", "--address", "--no-show", "--allow-websocket-origin"):
        assert option in done.stdout


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_answers_and_stops(tmp_path):
    """`phyvae-dash serve` starts a server that sends the dashboard page, and Ctrl+C
    (SIGINT) stops it cleanly."""
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "phyvae_dash.cli", "serve", "--port", str(port),
                               "--address", "127.0.0.1", "--no-show"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 90
        page = None
        while time.monotonic() < deadline and server.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=30) as answer:
                    page = answer.read().decode()
                break
            except OSError:
                time.sleep(0.5)
        assert page is not None, f"no answer from the server; it printed:\n{server.stdout.read() if server.poll() is not None else ''}"
        assert "<title>phyVAE-dash" in page and "<script" in page
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            pytest.fail("the server did not stop on SIGINT")
