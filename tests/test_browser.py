"""The served dashboard in headless Chromium (Debian's), driven by Playwright.

The app is served in a thread of this process (as Panel's own `serve_component` test
helper does), so each test can also look at the session's store. Screenshots go to
`test-artifacts/` (gitignored): look at them.

Run: ``pytest -m browser tests/test_browser.py``.
"""
from __future__ import annotations

import shutil
import socket
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"

# Imported, not importorskip'd: Playwright is in the test extra, and a skip at collection
# would hide the whole module from CI's check that browser tests run.
from playwright import sync_api  # noqa: E402


def wait_until(condition, page=None, timeout=30.0, interval=0.1, what="condition"):
    """Poll `condition` until true (like panel.tests.util.wait_until), or fail."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            if condition():
                return
        except (AssertionError, OSError):  # not yet (e.g. the server is still starting)
            pass
        if page is not None:
            page.wait_for_timeout(interval * 1000)
        else:
            time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    """Serve a small demo (fast to train); collect each session's store."""
    import panel as pn

    import phyvae_dash as pvd
    from phyvae_dash.app.app import WEBSOCKET_MAX_MESSAGE_SIZE, Dashboard
    from phyvae_dash.app.store import Store

    image = pvd.synthetic.make("pfm_labyrinth", shape=(96, 96), seed=1)["image"]
    stores = []

    def page():
        store = Store(image, auto_train=False)
        store.param.update(patch_size=8, stride=4, epochs=8)
        store.auto_train = True
        stores.append(store)
        dashboard = Dashboard(store=store)
        store.train()
        return dashboard.template

    port = free_port()
    thread = pn.serve(page, port=port, address="localhost", show=False, threaded=True, liveness=True,
                      websocket_max_message_size=WEBSOCKET_MAX_MESSAGE_SIZE)
    # /liveness answers without opening a session (a GET of the page would build one).
    wait_until(lambda: urllib.request.urlopen(f"http://localhost:{port}/liveness", timeout=2).status == 200,
               timeout=30, what="the server")
    yield f"http://localhost:{port}/", stores
    for store in stores:
        store.cancel()
    thread.stop()


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:  # a test-time skip: on CI, conftest turns it into a failure
        pytest.skip("chromium is not installed (apt-get install chromium)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        yield browser
        browser.close()


def open_page(browser, url):
    """A browser page that records its console messages and page errors, and fails
    (as an offline machine would) every request to a host other than `url`'s: those
    requests are recorded in ``messages`` too, so ``errors(messages)`` reports them."""
    page = browser.new_page(viewport={"width": 1600, "height": 1800})
    messages = []
    host = urlsplit(url).netloc

    def outside(route):
        messages.append(f"request left the server: {route.request.url}")
        route.abort("internetdisconnected")

    # Blob and data URLs (Bokeh's web workers, inline images) never leave the browser.
    page.route(lambda target: urlsplit(target).scheme in ("http", "https", "ws", "wss")
               and urlsplit(target).netloc != host, outside)
    page.on("console", lambda message: messages.append(message))
    page.on("pageerror", lambda error: messages.append(error))
    return page, messages


@pytest.fixture
def session(server, browser):
    """A fresh browser page on the app, its console messages and its store."""
    url, stores = server
    page, messages = open_page(browser, url)
    count = len(stores)
    page.goto(url, timeout=60_000)
    wait_until(lambda: len(stores) > count, page, what="the session")
    store = stores[-1]
    wait_until(lambda: store.result is not None, page, timeout=120, what="the first training")
    shown(page)
    yield page, store, messages
    page.close()


def shown(page):
    """Wait until the browser shows a finished training (the server has sent it all)."""
    page.get_by_text("Done in").first.wait_for(state="visible", timeout=60_000)
    page.wait_for_timeout(1000)  # Bokeh draws the canvases after the models arrive




def errors(messages):
    """Console errors, page exceptions and requests that tried to leave the server."""
    found = []
    for message in messages:
        if isinstance(message, sync_api.ConsoleMessage):
            if message.type == "error":
                found.append(message.text)
        else:
            found.append(str(message))
    return found


def shot(page, name, locator=None):
    ARTIFACTS.mkdir(exist_ok=True)
    target = page.locator(locator).first if locator else page
    kwargs = {} if locator else {"full_page": True}
    return target.screenshot(path=str(ARTIFACTS / f"{name}.png"), **kwargs)


def drag(page, locator, start, end, steps=12):
    """Press at `start`, move to `end`, release; fractions of the element's box."""
    box = page.locator(locator).first.bounding_box()
    x0, y0 = box["x"] + start[0] * box["width"], box["y"] + start[1] * box["height"]
    x1, y1 = box["x"] + end[0] * box["width"], box["y"] + end[1] * box["height"]
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move(x1, y1, steps=steps)
    page.mouse.up()


def test_loads_without_console_errors(session):
    page, store, messages = session
    shot(page, "app_loaded")
    assert page.get_by_text("Latent maps (real space)").first.is_visible()
    assert page.locator(".pvd-latent-maps canvas").count() >= 2
    assert errors(messages) == []


def test_patch_size_slider_retrains_and_map_changes(session):
    page, store, messages = session
    maps = ".pvd-latent-maps"
    before = shot(page, "maps_before_slider", maps)
    started, old = store.jobs_started, store.result
    drag(page, ".pvd-patch-size .noUi-handle", (0.5, 0.5), (4.0, 0.5))  # release -> value_throttled
    wait_until(lambda: store.jobs_started > started, page, what="a new training job")
    assert store.patch_size > 8
    wait_until(lambda: store.result is not None and store.result is not old and not store.running,
               page, timeout=120, what="the retrained result")
    assert store.result.attrs["patch_size"] == store.patch_size
    shown(page)
    after = shot(page, "maps_after_slider", maps)
    assert after != before
    shot(page, "app_after_slider")
    assert errors(messages) == []


def test_box_selection_in_scatter_highlights_the_map(session):
    page, store, messages = session
    maps = ".pvd-latent-maps"
    before = shot(page, "maps_before_brush", maps)
    # The scatter's box-select tool is active: drag over the middle of the plot area.
    drag(page, ".pvd-scatter canvas", (0.2, 0.2), (0.7, 0.8))
    try:
        wait_until(lambda: store.selection is not None, page, what="the brushed selection")
    finally:
        shot(page, "scatter_brush", ".pvd-scatter")
    assert 0 < store.selection.sum() < store.selection.size
    page.wait_for_timeout(1500)
    after = shot(page, "maps_after_brush", maps)
    assert after != before
    shot(page, "app_after_brush")
    assert errors(messages) == []


def test_box_on_a_latent_map_highlights_the_scatter_and_a_click_picks_a_patch(session):
    page, store, messages = session
    scatter = ".pvd-scatter"
    before = shot(page, "scatter_before_map_brush", scatter)
    # The map's box-select tool is active: drag inside its frame (the y axis takes the
    # canvas's left ~60 px), over the left half.
    drag(page, ".pvd-latent-maps canvas", (0.3, 0.25), (0.5, 0.75))
    wait_until(lambda: store.selection is not None, page, what="the brushed positions")
    selected = store.selection
    assert 0 < selected.sum() < selected.size
    # The box covered the left of the map: the brushed columns are on the left.
    columns = np.flatnonzero(selected.any(axis=0))
    assert columns.max() < selected.shape[1] * 0.75
    page.wait_for_timeout(1500)
    after = shot(page, "scatter_after_map_brush", scatter)
    assert after != before
    # A click on the map picks that position: its patch and reconstruction are shown.
    box = page.locator(".pvd-latent-maps canvas").first.bounding_box()
    page.mouse.click(box["x"] + 0.6 * box["width"], box["y"] + 0.5 * box["height"])
    wait_until(lambda: store.point is not None, page, what="the clicked position")
    shot(page, "app_after_map_click")
    assert errors(messages) == []


def test_upload_npy_loads_it(session, tmp_path):
    page, store, messages = session
    rng = np.random.default_rng(3)
    image = np.where(np.arange(64)[None, :] < 32, 0.2, 0.8) + 0.05 * rng.standard_normal((64, 64))
    path = tmp_path / "two_phases.npy"
    np.save(path, image.astype(np.float32))
    page.locator(".pvd-upload input[type=file]").set_input_files(str(path))
    wait_until(lambda: store.source == "two_phases.npy", page, what="the uploaded data")
    assert store.data.shape == (64, 64)
    wait_until(lambda: store.result is not None and not store.running, page, timeout=120,
               what="training on the upload")
    shown(page)
    shot(page, "app_after_upload")
    assert errors(messages) == []


def test_corrupt_upload_shows_error_and_app_still_works(session, tmp_path):
    page, store, messages = session
    bad = tmp_path / "corrupt.npy"
    bad.write_bytes(b"\x93NUMPY this is not an array")
    before = store.data
    page.locator(".pvd-upload input[type=file]").set_input_files(str(bad))
    toast = page.get_by_text("Could not load corrupt.npy").first
    toast.wait_for(state="visible", timeout=30_000)
    shot(page, "app_corrupt_upload")
    assert store.data is before
    # Still works: a slider change retrains.
    started = store.jobs_started
    drag(page, ".pvd-patch-size .noUi-handle", (0.5, 0.5), (3.0, 0.5))
    wait_until(lambda: store.jobs_started > started, page, what="a new training job")
    wait_until(lambda: not store.running and store.result.attrs["patch_size"] == store.patch_size,
               page, timeout=120, what="the retrained result")
    assert errors(messages) == []


def test_binder_script_serves_the_dashboard(browser):
    """`panel serve binder/dashboard.py` (what Binder runs) serves the whole page."""
    import os
    import subprocess
    import sys

    from phyvae_dash.app.app import TITLE

    root = Path(__file__).resolve().parents[1]
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "panel", "serve", str(root / "binder" / "dashboard.py"), "--port", str(port),
         "--address", "localhost", "--allow-websocket-origin", f"localhost:{port}"],
        cwd=root, env={**os.environ, "PYTHONPATH": str(root)},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://localhost:{port}/dashboard"
    try:
        wait_until(lambda: urllib.request.urlopen(url, timeout=30).status == 200, timeout=90,
                   interval=0.5, what="panel serve")
        html = urllib.request.urlopen(url, timeout=60).read().decode()
        assert f"<title>{TITLE}</title>" in html
        assert '"roots":{"' in html  # the page has content (an empty page has no roots)
        page, messages = open_page(browser, url)
        page.goto(url, timeout=60_000)
        page.get_by_text("Latent maps (real space)").first.wait_for(state="visible", timeout=60_000)
        assert page.get_by_text(TITLE).first.is_visible()
        # The demo (one latent) trains to the end: its latent space is a histogram of z0.
        page.get_by_text("Done in").first.wait_for(state="visible", timeout=180_000)
        page.wait_for_timeout(1500)
        shot(page, "binder_dashboard")
        page.close()
        assert errors(messages) == []
    finally:
        server.terminate()
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()


def test_a_burst_of_slider_presses_ends_on_the_last_value(session):
    """30 quick key presses on a slider: the page, the store and the maps end on the last."""
    page, store, messages = session
    handle = page.locator(".pvd-patch-size .noUi-handle").first
    handle.focus()
    start = store.patch_size
    presses = [+1] * 18 + [-1] * 12  # each press is a release (value_throttled): a new job
    for step in presses:
        page.keyboard.press("ArrowRight" if step > 0 else "ArrowLeft")
        page.wait_for_timeout(60)
    last = start + sum(presses)
    wait_until(lambda: store.patch_size == last, page, timeout=30, what="the last press to arrive")
    wait_until(lambda: not store.running and store.result.attrs["patch_size"] == last, page,
               timeout=120, what="the result for the last setting")
    page.wait_for_timeout(1500)  # no late echo may move the slider afterwards
    assert page.locator(".pvd-patch-size .bk-slider-title").first.inner_text().endswith(f": {last}")
    assert store.patch_size == last
    shot(page, "app_after_burst")
    assert errors(messages) == []
