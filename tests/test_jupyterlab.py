"""The dashboard inline in a real JupyterLab, rendered in headless Chromium, offline.

The notebook tests execute cells; this one renders them: it starts the notebooks
extra's ``jupyter lab`` on a free port with a notebook that shows ``pvd.Dashboard()``,
runs the cell in the browser, waits for the plots' canvases, moves a slider and checks
that the latent maps change. Every request to a host other than the JupyterLab server
fails (as on an offline instrument PC) and fails the test.

Run: ``pytest -m browser tests/test_jupyterlab.py``.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from test_browser import (ARTIFACTS, browser, drag, errors, free_port, open_page,  # noqa: F401
                          sync_api, wait_until)

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
#: A small demo that trains in seconds; the store is set up before the first fit.
CELL = """\
import phyvae_dash as pvd
from phyvae_dash.app.store import Store

image = pvd.synthetic.make("pfm_labyrinth", shape=(64, 64), seed=1)["image"]
store = Store(image, auto_train=False)
store.param.update(patch_size=8, stride=4, epochs=6)
store.auto_train = True
dashboard = pvd.Dashboard(store=store)
store.train()
dashboard
"""


def _notebook(path: Path):
    cell = {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
            "source": CELL.splitlines(keepends=True)}
    path.write_text(json.dumps({
        "cells": [cell], "nbformat": 4, "nbformat_minor": 5,
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
    }))


@pytest.fixture
def jupyterlab(tmp_path):
    """A JupyterLab server on a free localhost port, no token, serving `tmp_path`."""
    pytest.importorskip("jupyterlab", reason="the notebooks extra is not installed")  # fails on CI
    _notebook(tmp_path / "dashboard.ipynb")
    port = free_port()
    log = open(tmp_path / "jupyterlab.log", "w")
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
         f"--ServerApp.root_dir={tmp_path}", "--IdentityProvider.token=", "--ServerApp.password=",
         "--ServerApp.disable_check_xsrf=True", "--LabApp.news_url=",
         "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
         "--LabServerApp.extension_manager=readonly", "--allow-root"],
        cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p),
             "JUPYTER_CONFIG_DIR": str(tmp_path / "config"), "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime")})
    url = f"http://127.0.0.1:{port}"
    try:
        def up():
            if server.poll() is not None:
                raise RuntimeError(f"jupyter lab exited: see {tmp_path / 'jupyterlab.log'}")
            return urllib.request.urlopen(f"{url}/api/status", timeout=2).status == 200

        wait_until(up, timeout=60, interval=0.5, what="jupyter lab")
        yield url
    finally:
        server.terminate()
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()
        ARTIFACTS.mkdir(exist_ok=True)
        shutil.copy(tmp_path / "jupyterlab.log", ARTIFACTS / "jupyterlab.log")


def test_dashboard_renders_inline_in_jupyterlab_offline(jupyterlab, browser):
    page, messages = open_page(browser, jupyterlab)
    try:
        page.goto(f"{jupyterlab}/lab/tree/dashboard.ipynb", timeout=90_000)
        editor = page.locator(".jp-Cell .jp-InputArea-editor").first
        editor.wait_for(state="visible", timeout=90_000)
        # JupyterLab may ask which kernel to start (a fresh user has no preference).
        select = page.locator(".jp-Dialog").get_by_role("button", name="Select")
        try:
            select.wait_for(state="visible", timeout=15_000)
            select.click()
        except sync_api.TimeoutError:
            pass
        # The kernel must be up before the cell runs, or the run waits in a queue.
        page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").first.wait_for(
            state="attached", timeout=90_000)
        editor.click()
        page.keyboard.press("Shift+Enter")

        maps = page.locator(".jp-OutputArea .pvd-latent-maps canvas")
        wait_until(lambda: maps.count() >= 2, page, timeout=120, interval=0.5,
                   what="the latent maps' canvases in the cell's output")
        page.get_by_text("Done in").first.wait_for(state="visible", timeout=120_000)
        page.wait_for_timeout(1000)  # Bokeh draws the canvases after the data arrive
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "jupyterlab_dashboard.png"), full_page=True)
        assert page.locator(".jp-OutputArea canvas").count() >= 4  # image, maps, scatter, losses
        before = page.locator(".jp-OutputArea .pvd-latent-maps").first.screenshot()

        page.locator(".pvd-patch-size .noUi-handle").first.scroll_into_view_if_needed()
        drag(page, ".pvd-patch-size .noUi-handle", (0.5, 0.5), (3.0, 0.5))  # release: value_throttled
        output = page.locator(".jp-OutputArea .pvd-latent-maps").first
        # The kernel retrains with the new patch size and pushes the new maps.
        wait_until(lambda: output.screenshot() != before, page, timeout=120, interval=1.0,
                   what="the latent maps to change after the patch-size slider moved")
        page.get_by_text("Done in").first.wait_for(state="visible", timeout=120_000)
        page.wait_for_timeout(1000)
        after = output.screenshot()
        page.screenshot(path=str(ARTIFACTS / "jupyterlab_after_slider.png"), full_page=True)
        assert after != before, "the latent maps did not change after the patch-size slider moved"
        outside = [m for m in errors(messages) if "request left the server" in str(m)]
        assert outside == [], outside
        assert [m for m in errors(messages) if "left the server" not in str(m)] == []
    finally:
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "jupyterlab_last.png"), full_page=True)
        (ARTIFACTS / "jupyterlab_console.txt").write_text(
            "\n".join(getattr(m, "text", str(m)) for m in messages))
        page.close()
