"""What dashboard sessions cost the server: one worker process each, or one shared pool.

For each runner and session count, opens that many stores (as a served page does),
then has each train once (a tiny fit, one after the other), and prints the server
tree's processes and RSS: before any session, with the sessions open and idle, and
after each has trained. The ``pool`` runner is what ``phyvae-dash serve`` uses (a
LocalCluster of ``default_workers()`` processes, started with the server); ``process``
is one worker process per session that trains.

    python benchmarks/pool_sessions.py [--sessions 1 4]
"""
from __future__ import annotations

import argparse
import time

import psutil

import phyvae_dash as pvd
from phyvae_dash.app import worker
from phyvae_dash.app.pool import FitPool
from phyvae_dash.app.store import Store

SETTINGS = dict(patch_size=8, stride=4, epochs=2)


def _tree():
    """(processes, RSS MB) of this process and all its children."""
    processes = [psutil.Process(), *psutil.Process().children(recursive=True)]
    rss = 0
    for process in processes:
        try:
            rss += process.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return len(processes), rss / 1024**2


def _measure(runner: str, sessions: int, image, pool) -> dict:
    before = _tree()
    stores = [Store(image, auto_train=False, **({"pool": pool} if runner == "pool" else {"runner": runner}))
              for _ in range(sessions)]
    idle = _tree()
    started = time.perf_counter()
    for store in stores:
        store.param.update(**SETTINGS)
        store.train()
        assert store.wait(300) and store.status == "done", store.messages
    trained_s = time.perf_counter() - started
    trained = _tree()
    for store in stores:
        store.close()
    worker._close_all()
    return dict(runner=runner, sessions=sessions, before=before, idle=idle, trained=trained,
                trained_s=trained_s)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, nargs="+", default=[1, 4])
    args = parser.parse_args()
    image = pvd.synthetic.make("pfm_labyrinth", shape=(48, 48), seed=2)["image"]
    rows = []
    alone = _tree()
    with FitPool() as pool:
        pool_workers = pool.n_workers
        pool.fit(image, **SETTINGS)  # the pool is warm, as on a server that has run a fit
        with_pool = _tree()
        for sessions in args.sessions:
            for runner in ("pool", "process"):
                rows.append(_measure(runner, sessions, image, pool))
    print(f"The pool itself ({pool_workers} worker(s), warm): +{with_pool[0] - alone[0]} processes, "
          f"+{with_pool[1] - alone[1]:.0f} MB, whatever the number of sessions.\n")
    print("| runner | sessions | processes before / idle / trained | tree RSS MB before / idle / trained "
          "| idle MB per session | trained MB per session | fits s |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        (p0, r0), (p1, r1), (p2, r2) = row["before"], row["idle"], row["trained"]
        n = row["sessions"]
        print(f"| {row['runner']} | {n} | {p0} / {p1} / {p2} | {r0:.0f} / {r1:.0f} / {r2:.0f} "
              f"| {(r1 - r0) / n:.0f} | {(r2 - r0) / n:.0f} | {row['trained_s']:.1f} |")


if __name__ == "__main__":
    main()
