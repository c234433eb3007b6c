"""How responsive the served dashboard is on the default demo (prints figures; not a test).

Serves the dashboard in this process, opens it in headless Chromium (Playwright),
waits for the first training, then releases the patch-size slider and measures:

* slider release -> first updated latent map drawn in the browser (target <= 2 s),
* slider release -> finished fit, result shown (target <= 15 s),
* a widget round-trip while that training runs (target <= 200 ms): a click on a
  checkbox, handled by the server, whose answer (a text) appears in the page; repeated
  every 0.3 s while the fit runs, so that clicks meet map and progress updates at random.
  It is timed inside the page, from the click event to the first animation frame that
  has the answer (what a user waits for); the same click as timed by the test driver
  (Playwright's protocol round-trips on top) is printed beside it.

Without Chromium (``--store``), the same figures are taken through the store's API
(no browser: the first two are then the times at which the server pushes the
update, the third is the time the server's event loop takes to handle a change).

Usage::

    python benchmarks/app_responsiveness.py [--repeats 3] [--store] [--small]
                                            [--runner process|thread] [--model shift]

``--runner`` chooses where the served store runs its fits (default: the dashboard's
own choice, a worker process); ``thread`` shows what a fit in the server's process
costs the widgets.
"""
from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import sys
import time
import urllib.request

TARGETS = {"first_map_s": 2.0, "fit_done_s": 15.0, "round_trip_ms": 200.0}



def with_probe(dashboard):
    """The dashboard's page with a round-trip probe: a checkbox whose click the server
    answers with a text. It measures how long a widget waits for the server (not what a
    view does with it)."""
    import panel as pn

    probe = pn.widgets.Checkbox(name="probe", css_classes=["pvd-probe"])
    answer = pn.pane.Markdown("probe False")
    probe.param.watch(lambda event: setattr(answer, "object", f"probe {event.new}"), "value")
    dashboard.probe = probe
    template = dashboard.template
    template.sidebar.append(pn.Row(probe, answer))
    return template

def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        return sock.getsockname()[1]


def _wait(condition, timeout=300.0, interval=0.005):
    end = time.perf_counter() + timeout
    while time.perf_counter() < end:
        if condition():
            return time.perf_counter()
        time.sleep(interval)
    raise TimeoutError("condition not met")


def _serve(small: bool):
    """Serve the default demo (or a small one); returns the URL and the sessions' dashboards."""
    import panel as pn

    from phyvae_dash.app.app import Dashboard

    dashboards = []

    def page():
        if small:
            import phyvae_dash as pvd
            from phyvae_dash.app.store import Store
            store = Store(pvd.synthetic.make("pfm_labyrinth", shape=(96, 96))["image"], auto_train=False)
            store.param.update(patch_size=8, stride=4, epochs=10)
            store.auto_train = True
            dashboard = Dashboard(store=store)
            store.train()
        else:
            dashboard = Dashboard()
        dashboards.append(dashboard)
        return with_probe(dashboard)

    port = _free_port()
    server = pn.serve(page, port=port, address="localhost", show=False, threaded=True, liveness=True)
    _wait(lambda: _ok(f"http://localhost:{port}/liveness"), timeout=60, interval=0.2)
    return f"http://localhost:{port}/", dashboards, server


def _ok(url):
    try:
        return urllib.request.urlopen(url, timeout=2).status == 200
    except OSError:
        return False


def _release_slider(page, selector, pixels):
    box = page.locator(selector).first.bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + pixels, y, steps=8)
    page.mouse.up()
    return time.perf_counter()


#: Clicks the probe checkbox and resolves with the milliseconds until an animation frame
#: finds the server's answer in the page (the answer pane's shadow root).
_PROBE_JS = """([input, host, expected]) => new Promise(resolve => {
    const answered = () => (host.shadowRoot || host).textContent.includes(expected);
    const clicked = performance.now();
    input.click();
    const poll = () => answered() ? resolve(performance.now() - clicked) : requestAnimationFrame(poll);
    requestAnimationFrame(poll);
})"""


def _probe(page, dashboard) -> tuple[float, float]:
    """One round-trip of the probe: (ms timed in the page, ms timed by the driver)."""
    state = not dashboard.probe.value
    input_ = page.locator(".pvd-probe input").first.element_handle()
    text = page.get_by_text(f"probe {not state}").first.element_handle()
    host = text.evaluate_handle("element => element.getRootNode().host || element")
    started = time.perf_counter()
    in_page = page.evaluate(_PROBE_JS, [input_, host, f"probe {state}"])
    return float(in_page), 1000 * (time.perf_counter() - started)


def run_browser(repeats: int, small: bool, model: str | None = None) -> dict:
    url, dashboards, server = _serve(small)
    try:
        return _measure_in_browser(url, dashboards, repeats, model)
    finally:
        server.stop()  # also when a measurement fails: its thread would keep the process alive


def _measure_in_browser(url, dashboards, repeats: int, model: str | None) -> dict:
    from playwright.sync_api import sync_playwright

    figures = {name: [] for name in [*TARGETS, "idle_round_trip_ms", "driver_round_trip_ms"]}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=shutil.which("chromium"),
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        page = browser.new_page(viewport={"width": 1600, "height": 1800})
        page.goto(url, timeout=120_000)
        _wait(lambda: dashboards, timeout=60)
        dashboard = dashboards[-1]
        store = dashboard.store
        _wait(lambda: store.result is not None and not store.running, timeout=900, interval=0.2)
        if model and model != store.model:
            store.model = model  # retrains
            _wait(lambda: not store.running and store.result.attrs.get("model") == model,
                  timeout=900, interval=0.2)
        print(f"first training: {store.result.attrs.get('epochs')} epochs in "
              f"{store.result.attrs.get('elapsed_s', float('nan')):.1f} s "
              f"(patch {store.patch_size}, stride {store.stride}, {store.z_maps.shape[1:]} positions; "
              f"model {store.result.attrs.get('model')}, fits run in a {store.runner})",
              flush=True)
        page.wait_for_timeout(2000)
        maps = page.locator(".pvd-latent-maps").first
        for repeat in range(repeats):
            before = maps.screenshot()
            old_result, old_z, started = store.result, store.z_maps, store.jobs_started
            # A size seen before would be answered from the cache: measure training, not that.
            store._cache.clear()
            shown_at = []  # when the server shows the new result (the probing below may lag)
            watcher = store.param.watch(lambda event: shown_at.append(time.perf_counter()), ["result"])
            released = _release_slider(page, ".pvd-patch-size .noUi-handle", -12 if repeat % 2 == 0 else 5)
            _wait(lambda: store.jobs_started > started, timeout=30)
            # The previous job had finished: any new maps come from the new one.
            _wait(lambda: store.z_maps is not old_z and store.z_maps is not None, timeout=300)
            # Drawn in the browser: the maps' pixels change.
            deadline = time.perf_counter() + 60
            while maps.screenshot() == before and time.perf_counter() < deadline:
                pass
            figures["first_map_s"].append(time.perf_counter() - released)
            print(f"release {repeat}: first map after {figures['first_map_s'][-1]:.2f} s", flush=True)
            # While training runs: click the probe checkbox and wait for the server's answer,
            # every 0.3 s until the fit ends (a click may or may not meet a map update).
            trips, driver_trips = [], []
            while store.running:
                in_page, by_driver = _probe(page, dashboard)
                if store.running:  # still training when the answer came
                    trips.append(in_page)
                    driver_trips.append(by_driver)
                page.wait_for_timeout(300)
            figures["round_trip_ms"] += trips
            figures["driver_round_trip_ms"] += driver_trips
            if trips:
                print(f"release {repeat}: {len(trips)} round trips while training, median "
                      f"{statistics.median(trips):.0f} ms, worst {max(trips):.0f} ms "
                      f"(driver: median {statistics.median(driver_trips):.0f} ms)", flush=True)
            _wait(lambda: store.result is not old_result and not store.running, timeout=900, interval=0.01)
            store.param.unwatch(watcher)
            figures["fit_done_s"].append(shown_at[-1] - released)
            print(f"release {repeat}: fit done after {figures['fit_done_s'][-1]:.2f} s "
                  f"({store.result.attrs.get('epochs')} epochs, fit itself "
                  f"{store.result.attrs.get('elapsed_s', float('nan')):.1f} s)", flush=True)
            page.wait_for_timeout(1500)
            # The same round-trip with no training running: what the machine allows at all.
            figures["idle_round_trip_ms"].append(_probe(page, dashboard)[0])
            print(f"release {repeat}: idle round trip {figures['idle_round_trip_ms'][-1]:.0f} ms", flush=True)
            page.wait_for_timeout(500)
        browser.close()
    return figures


def run_store(repeats: int, small: bool) -> dict:
    """The same figures through the store API (no browser, no server)."""
    from phyvae_dash.app.app import Dashboard
    import phyvae_dash as pvd
    from phyvae_dash.app.store import Store

    if small:
        store = Store(pvd.synthetic.make("pfm_labyrinth", shape=(96, 96))["image"], auto_train=False)
        store.param.update(patch_size=8, stride=4, epochs=10)
        store.auto_train = True
    else:
        store = Store()
    dashboard = Dashboard(store=store)
    store.train()
    store.wait(900)
    figures = {name: [] for name in TARGETS}
    for repeat in range(repeats):
        old_z = store.z_maps
        released = time.perf_counter()
        dashboard.controls.patch_size.value = store.patch_size + (-4 if repeat % 2 == 0 else 2)
        import param
        with param.edit_constant(dashboard.controls.patch_size):
            dashboard.controls.patch_size.value_throttled = dashboard.controls.patch_size.value
        first = _wait(lambda: store.z_maps is not None and store.z_maps is not old_z)
        figures["first_map_s"].append(first - released)
        if store.running:
            clicked = time.perf_counter()
            dashboard.image_view.show_walls.value = not dashboard.image_view.show_walls.value  # a view reacts
            figures["round_trip_ms"].append(1000 * (time.perf_counter() - clicked))
        store.wait(900)
        figures["fit_done_s"].append(time.perf_counter() - released)
    return figures


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--store", action="store_true", help="measure through the store API, no browser")
    parser.add_argument("--small", action="store_true", help="a 96 x 96 demo instead of the default one")
    parser.add_argument("--model", default=None,
                        help="model variant to train (browser only; default: the demo's)")
    parser.add_argument("--runner", choices=["process", "thread"], default=None,
                        help="where fits run (default: the dashboard's choice)")
    args = parser.parse_args(argv)
    if args.runner:
        os.environ["PHYVAE_DASH_RUNNER"] = args.runner
    use_browser = not args.store and shutil.which("chromium") is not None
    started = time.perf_counter()
    if use_browser:
        figures = run_browser(args.repeats, args.small, args.model)
    else:
        figures = run_store(args.repeats, args.small)
    sys.stdout.flush()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"\nDashboard responsiveness ({'default demo' if not args.small else '96 x 96 demo'}, "
          f"{'browser: headless Chromium' if use_browser else 'store API'}, {os.cpu_count()} CPU cores, "
          f"load average {load:.1f}, fits in a {os.environ.get('PHYVAE_DASH_RUNNER') or 'process (default)'}, "
          f"{time.perf_counter() - started:.0f} s in all)")
    print(f"{'measure':<38}{'median':>10}{'worst':>10}{'target':>10}  ok")
    names = {"first_map_s": "slider release -> first latent map (s)",
             "fit_done_s": "slider release -> finished fit (s)",
             "round_trip_ms": "widget round-trip while training (ms)"}
    all_ok = True
    for key, label in (("idle_round_trip_ms", "(same round-trip, no training)"),
                       ("driver_round_trip_ms", "(while training, timed by the driver)")):
        if figures.get(key):
            print(f"{label:<38}{statistics.median(figures[key]):>10.3g}{max(figures[key]):>10.3g}")
    for key, label in names.items():
        values = figures[key]
        if not values:
            print(f"{label:<38}{'n/a':>10}{'':>10}{TARGETS[key]:>10.4g}  (training ended before)")
            continue
        median, worst = statistics.median(values), max(values)
        ok = median <= TARGETS[key]
        all_ok &= ok
        print(f"{label:<38}{median:>10.3g}{worst:>10.3g}{TARGETS[key]:>10.4g}  {'yes' if ok else 'NO'}")
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
