"""Several concurrent dashboard sessions in headless Chromium (prints a table; not a test).

Serves the dashboard in this process (a small demo per session, 96 x 96 px, 10 epochs)
and, for each session count, opens that many pages in Debian's Chromium at once, then:

* ``GET / TTFB``: the page request's time to first byte (the browser's navigation timing);
* ``first render``: from asking for the page to its first drawn canvas;
* ``idle MB / session``: server-tree RSS added per open, idle session;
* ``slider -> first map``: every page releases its patch-size slider together; the time
  until that page's latent maps change on screen;
* ``round-trip while training``: a checkbox click answered by the server (timed in the
  page) on page 0 while the others train;
* ``queue wait``: the fits do not queue yet (one worker process per training session);
* server-tree RSS idle, under load (peak) and after a settle, and its threads and processes;
* ``lost last settings``: storm runs, each page pressing its slider's arrow keys 30 times
  quickly; a page whose slider, store or shown result does not end on its last press
  counts as lost.

Usage::

    python benchmarks/app_load.py [--sessions 1 4 8] [--storms 10] [--presses 30] [--settle 60]
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import threading
import time

import pandas as pd
import psutil

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from app_responsiveness import _free_port, _ok, _probe, _wait, with_probe  # noqa: E402


def _tree():
    """RSS (MB), threads and processes of the server: this process and its fit workers
    (not the browser and Playwright's driver, which are children of this process too)."""
    me = psutil.Process()
    processes = [me]
    for child in me.children(recursive=True):
        try:
            if any("phyvae_dash" in part for part in child.cmdline()):
                processes.append(child)
        except psutil.NoSuchProcess:
            pass
    rss, threads = 0, 0
    for process in processes:
        try:
            rss += process.memory_info().rss
            threads += process.num_threads()
        except psutil.NoSuchProcess:
            pass
    return rss / 1024**2, threads, len(processes)


def _serve():
    import panel as pn

    import phyvae_dash as pvd
    from phyvae_dash.app import worker
    from phyvae_dash.app.app import Dashboard
    from phyvae_dash.app.store import Store

    image = pvd.synthetic.make("pfm_labyrinth", shape=(96, 96), seed=1)["image"]
    dashboards = []

    def page():
        store = Store(image, auto_train=False)
        store.param.update(patch_size=8, stride=4, epochs=10)
        store.auto_train = True  # trains when a setting changes, not when the page opens
        dashboard = Dashboard(store=store)
        dashboards.append(dashboard)
        return with_probe(dashboard)

    worker.prestart()  # as `phyvae-dash serve` does: a warmed-up spare for the first fit
    port = _free_port()
    server = pn.serve(page, port=port, address="localhost", show=False, threaded=True, liveness=True)
    _wait(lambda: _ok(f"http://localhost:{port}/liveness"), timeout=60, interval=0.2)
    return f"http://localhost:{port}/", dashboards, server


class _Sampler(threading.Thread):
    """Peak server-tree RSS while it runs."""

    def __init__(self):
        super().__init__(daemon=True)
        self.peak, self._done = 0.0, threading.Event()

    def run(self):
        while not self._done.is_set():
            self.peak = max(self.peak, _tree()[0])
            time.sleep(0.2)

    def stop(self):
        self._done.set()
        self.join()
        return self.peak


def _press(page, key, times, gap_ms=40):
    handle = page.locator(".pvd-patch-size .noUi-handle").first
    handle.focus()
    for _ in range(times):
        page.keyboard.press(key)
        page.wait_for_timeout(gap_ms)


def _slider_text(page) -> str:
    return page.locator(".pvd-patch-size .bk-slider-title").first.inner_text()


def run(n: int, storms: int, presses: int, settle: float, browser) -> dict:
    url, dashboards, server = _serve()
    row = {"sessions": n}
    try:
        page0 = browser.new_page()
        page0.goto(f"{url}liveness")
        page0.close()
        base = _tree()
        pages, asked = [], []
        for _ in range(n):
            page = browser.new_page(viewport={"width": 1600, "height": 1800})
            errors = []
            page.on("console", lambda message, errors=errors: message.type == "error" and errors.append(message.text))
            page.errors = errors
            asked.append(time.perf_counter())
            page.goto(url, wait_until="commit", timeout=120_000)
            pages.append(page)
        rendered = [None] * n
        while None in rendered:
            for i, page in enumerate(pages):
                if rendered[i] is None and page.locator("canvas").count() > 0:
                    rendered[i] = time.perf_counter() - asked[i]
            time.sleep(0.05)
        ttfb = [page.evaluate("() => { const t = performance.getEntriesByType('navigation')[0];"
                              " return t.responseStart - t.requestStart; }") / 1000 for page in pages]
        _wait(lambda: len(dashboards) == n, timeout=60)
        time.sleep(2)
        idle = _tree()
        row.update({"GET / TTFB s (median/max)": f"{statistics.median(ttfb):.2f} / {max(ttfb):.2f}",
                    "first render s (median/max)": f"{statistics.median(rendered):.2f} / {max(rendered):.2f}",
                    "idle MB / session": round((idle[0] - base[0]) / n, 1)})

        # All pages release their slider together; each page's maps change when its fit shows.
        sampler = _Sampler()
        sampler.start()
        before = [page.locator(".pvd-latent-maps").first.screenshot() for page in pages]
        released = []
        for page in pages:
            released.append(time.perf_counter())
            _press(page, "ArrowRight", 1, gap_ms=0)
        first_map = [None] * n
        trips = []
        end = time.perf_counter() + 300
        while None in first_map and time.perf_counter() < end:
            for i, page in enumerate(pages):
                if first_map[i] is None and page.locator(".pvd-latent-maps").first.screenshot() != before[i]:
                    first_map[i] = time.perf_counter() - released[i]
            if n > 1 and any(d.store.running for d in dashboards[1:]):
                trips.append(_probe(pages[0], dashboards[0])[0])
        _wait(lambda: not any(d.store.running for d in dashboards), timeout=600, interval=0.2)
        load = _tree()
        shown = [t for t in first_map if t is not None]
        row.update({"slider -> first map s (median/max)":
                    f"{statistics.median(shown):.2f} / {max(shown):.2f}" if shown else "none",
                    "round-trip while others train ms (median)":
                    round(statistics.median(trips)) if trips else "n/a (1 session)",
                    "queue wait s": "n/a (no shared pool yet)"})

        # Storms: every page presses its slider quickly; the last press must win everywhere.
        lost = 0
        for storm in range(storms):
            # Up, then down again: the slider stays in its range over any number of storms.
            key, step = ("ArrowLeft", -1) if storm % 2 else ("ArrowRight", +1)
            expected = [d.store.patch_size + step * presses for d in dashboards]
            for page in pages:
                page.locator(".pvd-patch-size .noUi-handle").first.focus()
            for _ in range(presses):  # one Playwright thread: the pages' presses interleave
                for page in pages:
                    page.keyboard.press(key)
                pages[0].wait_for_timeout(max(10, 300 // n))
            time.sleep(2)
            _wait(lambda: not any(d.store.running for d in dashboards), timeout=900, interval=0.5)
            time.sleep(1.5)
            for page, dashboard, value in zip(pages, dashboards, expected):
                store = dashboard.store
                slider = _slider_text(page).rsplit(":", 1)[-1].strip()
                fitted = None if store.result is None else store.result.attrs["patch_size"]
                ok = store.patch_size == value and slider == str(value) and fitted == value
                lost += not ok
                if not ok:  # which part missed the last press: the page, the store or the result
                    print(f"storm {storm}: pressed to {value}; slider shows {slider}, store "
                          f"{store.patch_size}, result {fitted}", flush=True)
        row["lost last settings"] = f"{lost} / {storms * n}"
        errors = sum(len(page.errors) for page in pages)
        for page in pages:
            page.close()
        peak = sampler.stop()
        time.sleep(settle)
        after = _tree()
        row.update({"RSS MB idle / load peak / after settle":
                    f"{idle[0]:.0f} / {max(peak, load[0]):.0f} / {after[0]:.0f}",
                    "threads idle / after": f"{idle[1]} / {after[1]}",
                    "processes idle / load / after": f"{idle[2]} / {load[2]} / {after[2]}",
                    "console errors": errors})
    finally:
        server.stop()
        for dashboard in dashboards:
            dashboard.store.close()
        from phyvae_dash.app import worker
        worker._close_all()  # the spare too: the next session count starts from nothing
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--storms", type=int, default=10)
    parser.add_argument("--presses", type=int, default=30)
    parser.add_argument("--settle", type=float, default=60.0)
    args = parser.parse_args(argv)
    from playwright.sync_api import sync_playwright

    rows = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=shutil.which("chromium"),
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        for n in args.sessions:
            rows.append(run(n, args.storms, args.presses, args.settle, browser))
            print(pd.DataFrame([rows[-1]]).set_index("sessions").T.to_markdown(), flush=True)
        browser.close()
    print()
    print(pd.DataFrame(rows).set_index("sessions").T.to_markdown())
    return 0


if __name__ == "__main__":
    sys.exit(main())
