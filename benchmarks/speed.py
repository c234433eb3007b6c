"""Training speed of phyvae-dash: throughput, FLOP/s, the default fit, and pyroVED.

Run from the repository root::

    python benchmarks/speed.py                 # everything, CPU (and CUDA if present)
    python benchmarks/speed.py --no-pyroved    # skip the pyroVED comparison
    python benchmarks/speed.py --quick         # fewer epochs: a smoke test of the script
    python benchmarks/speed.py --compare-only --rounds 9   # only shift vs pyroVED
    python benchmarks/speed.py --decoder-only  # hand-written backward vs torch.compile

It prints one table per device:

* the default demo fit (``fit(image, patch_size=16, stride=4, latent_dim=2)`` with all
  other settings at their defaults) and its wall time, against the 15 s target;
* training throughput in patches per second of each model variant ("vae", "shift",
  "rotation") on the same demo with a fixed number of epochs: patches per epoch over
  the fastest epoch, timed by the per-epoch callback, leaving out the first epoch
  (warm-up) and the last (it also encodes the full latent map). The fastest epoch is
  the one least slowed by other processes on a shared machine. Throughput per
  CPU-second (``process_time`` of the training process, all its threads) is printed
  beside it: on a busy machine it is much less disturbed by other processes than wall
  time;
* the achieved FLOP/s of the training loop: FLOPs counted with
  ``torch.utils.flop_counter.FlopCounterMode`` (matmuls and convolutions, forward and
  backward) for one epoch -- the difference between a 2-epoch and a 1-epoch fit, so
  set-up and the final encoding cancel -- times epochs per second, next to the
  device's measured float32 matmul peak (on the CPU at the thread count ``fit`` uses,
  one on a 2-core machine: the peak of all cores would understate the share);
* like for like with pyroVED: its ``iVAE(invariances=['t'])`` trained by its
  ``SVItrainer`` and our shift-invariant model (``transform="patch"``) on the same
  16 x 16 patches of the demo's first channel (pyroVED's iVAE takes one channel) --
  z-scored for ours as ``fit`` does, min-max scaled to [0, 1] for pyroVED's Bernoulli
  likelihood -- with the same latent size (2 content + 2 shift latents), at our batch
  size (256) and at pyroVED's default (100). Both run on as many threads as ``fit``
  uses (one on a 2-core machine). The two are *interleaved*: one ``fit`` whose
  per-epoch callback, after every ``--epochs-per-round`` (10) of our timed epochs (not
  the first, warm-up, nor the last, which also encodes the latent map), runs one epoch
  of each pyroVED configuration in its own already warmed-up subprocess (Pyro traces
  model and guide in its first, untimed epoch), alternating their order; 10 of our
  epochs take about as long as one of pyroVED's, so each trainer gets a turn of about
  the same length (with one of our epochs per turn, ours would pay for the caches
  pyroVED evicted ten times as often). So both see the same load from other
  processes, each round gives one throughput ratio,
  and the median and range of the ratio over rounds are printed, in CPU time
  (``process_time`` of each trainer's process, all its threads; on a busy machine
  much steadier than wall time) and in wall time. The target is our shift model
  >= 10x pyroVED's throughput. For reference (not interleaved), pyroVED also runs
  with torch's default threads (all cores): more threads buy it wall time at a cost
  in CPU time.

pyroVED and Pyro are not dependencies of phyvae-dash: the script makes its own virtual
environment, ``benchmarks/.venv-pyroved`` (with ``--system-site-packages``, so it uses
our torch), installs ``pyroved pyro-ppl pyro-api opt_einsum`` there with ``--no-deps``
(their declared dependencies would replace our torch), and runs pyroVED in a
subprocess with that environment's Python. pyroVED imports ``torchvision`` only for
plotting (``make_grid``); where no torchvision build matches our torch (the CPU-only
torch here has none), the worker puts a stub module in its place, which training
never touches. Anything that fails is printed with its reason, and the rest goes on.

Timings on a shared CPU are noisy: the script prints the load average next to them.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

HERE = Path(__file__).resolve().parent
VENV = HERE / ".venv-pyroved"
PYROVED_PACKAGES = ["pyroved", "pyro-ppl", "pyro-api", "opt_einsum"]
MODELS = ("vae", "shift", "rotation")
TARGET_FIT_S = 15.0
TARGET_SPEEDUP = 10.0


# ---------------------------------------------------------------------------- helpers
def load_average() -> str:
    try:
        return "/".join(f"{v:.1f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def matmul_peak(device: str, n: int = 2048, repeats: int = 5, dtype=torch.float32) -> float:
    """Best-of-``repeats`` FLOP/s of an ``n x n`` matmul (2 n^3 FLOPs) on ``device``."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b  # warm-up: thread pools, cuBLAS handles
    synchronize(device)
    best = float("inf")
    inner = 20 if device.startswith("cuda") else 1
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(inner):
            a @ b
        synchronize(device)
        best = min(best, (time.perf_counter() - start) / inner)
    return 2 * n**3 / best


def fmt_rate(value: float | None, unit: str = "") -> str:
    if value is None or not np.isfinite(value):
        return "-"
    for scale, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.2f} {prefix}{unit}"
    return f"{value:.1f} {unit}"


def table_row(name, inputs, batch, rate, cpu_rate, flops_per_patch, peak, note=""):
    """One row: throughput (wall and CPU time), FLOP per patch, FLOP/s, share of peak."""
    achieved = flops_per_patch * rate if flops_per_patch else None
    return [name, inputs, batch, f"{rate:,.0f}{note}", f"{cpu_rate:,.0f}",
            fmt_rate(flops_per_patch, "FLOP"), fmt_rate(achieved, "FLOP/s"),
            f"{100 * achieved / peak:.1f} %" if achieved else "-"]


def print_table(title: str, header: list[str], rows: list[list[str]]) -> None:
    print(f"\n{title}")
    print(pd.DataFrame(rows, columns=header).to_markdown(index=False))


# ------------------------------------------------------------------------ our models
def demo_image(kind: str, size: int):
    from phyvae_dash.data import synthetic

    return synthetic.make(kind, shape=(size, size), seed=0).image


def timed_fit(image, device: str, **settings) -> dict:
    """Fit and time it; throughput from the callback's clock, after the first epoch."""
    from phyvae_dash.models.train import fit

    stamps = []

    def callback(progress):
        synchronize(device)
        stamps.append((time.perf_counter(), time.process_time()))

    synchronize(device)
    start = time.perf_counter()
    # map_every: no full latent map per epoch (the dashboard's cost, not training's),
    # except on the last epoch, whose stamp is therefore left out below
    result = fit(image, device=device, callback=callback, map_every=10**9, **settings)
    wall = time.perf_counter() - start
    per_epoch = result.attrs["steps_per_epoch"] * result.attrs["batch_size"]
    epochs = result.attrs["epochs"]
    # Durations of epochs 2 .. E-1 (the first pays for warm-up, the last for the final
    # latent map); the fastest one is the least disturbed by other processes.
    durations = np.diff(np.array(stamps[:-1]).reshape(-1, 2), axis=0)
    epoch_s = float(durations[:, 0].min()) if len(durations) else wall / epochs
    cpu_s = float(durations[:, 1].min()) if len(durations) else float("nan")
    rate = per_epoch / epoch_s
    return {"result": result, "wall_s": wall, "patches_per_s": rate, "epoch_s": epoch_s,
            "patches_per_cpu_s": per_epoch / cpu_s,
            "patches_per_epoch": per_epoch}


def training_flops_per_epoch(image, device: str, **settings) -> float | None:
    """FLOPs of one training epoch: 2-epoch fit minus 1-epoch fit, both counted."""
    from torch.utils.flop_counter import FlopCounterMode

    from phyvae_dash.models.train import fit

    totals = []
    for epochs in (1, 2):
        counter = FlopCounterMode(display=False)
        with counter:
            fit(image, device=device, epochs=epochs, **settings)
        totals.append(counter.get_total_flops())
    return float(totals[1] - totals[0]) or None


def our_rows(image, device: str, epochs: int, peak: float) -> tuple[list, dict]:
    """Throughput and FLOP/s rows of every model variant."""
    rows, measured = [], {}
    common = dict(patch_size=16, stride=4, latent_dim=2, seed=0)
    for model in MODELS:
        try:
            run = timed_fit(image, device, model=model, epochs=epochs, **common)
            flops = training_flops_per_epoch(image, device, model=model, **common)
            attrs = run["result"].attrs
            measured[model] = run
            rows.append(table_row(
                f"phyvae-dash {model}", attrs["transform"], attrs["batch_size"],
                run["patches_per_s"], run["patches_per_cpu_s"],
                flops / run["patches_per_epoch"] if flops else None, peak))
        except Exception as exc:  # keep going: one broken variant must not hide the rest
            rows.append([f"phyvae-dash {model}", "-", "-", f"failed: {type(exc).__name__}: {exc}",
                         "-", "-", "-", "-"])
    return rows, measured


def like_for_like_patches(image):
    """The demo's first channel, and its 16 x 16 patches in [0, 1] for pyroVED."""
    from phyvae_dash.models.features import prepare_inputs

    if image.ndim == 3:  # pyroVED's iVAE takes one channel: use the first
        image = image.isel({image.dims[2]: 0})
    inputs = prepare_inputs(image, 16, 4, "patch", normalization="minmax")
    return inputs.data.reshape(-1, 16, 16).astype(np.float32), image


# --------------------------------------------------------------------------- pyroVED
def ensure_pyroved_venv() -> tuple[Path | None, str]:
    """Python of the benchmark's pyroVED environment, creating it if needed."""
    python = VENV / "bin" / "python"
    probe_cmd = [str(python), str(Path(__file__).resolve()), "--pyroved-probe"]
    try:
        if not python.exists():
            print(f"creating {VENV} (pyroVED's own environment) ...", flush=True)
            subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(VENV)],
                           check=True, capture_output=True, text=True)
            # keep the environment out of version control
            (VENV / ".gitignore").write_text("*\n")
        probe = subprocess.run(probe_cmd, capture_output=True, text=True, env=_worker_env())
        if probe.returncode != 0:
            # --no-deps: pyro-ppl and pyroved would otherwise pull in another torch
            install = subprocess.run(
                [str(python), "-m", "pip", "install", "--quiet", "--no-deps", *PYROVED_PACKAGES],
                capture_output=True, text=True)
            if install.returncode != 0:
                return None, f"pip install failed: {install.stderr.strip()[-500:]}"
            probe = subprocess.run(probe_cmd, capture_output=True, text=True, env=_worker_env())
            if probe.returncode != 0:
                return None, f"pyroved does not import: {probe.stderr.strip()[-500:]}"
        versions = probe.stdout.split()
        if versions[0] != torch.__version__:
            return None, (f"the pyroVED environment has torch {versions[0]}, not ours "
                          f"({torch.__version__}); delete {VENV} and rerun")
        return python, "torch {} / pyro {} / pyroved {}".format(*versions[:3])
    except (OSError, subprocess.SubprocessError, IndexError) as exc:
        return None, f"could not set up {VENV}: {exc}"


def _worker_env() -> dict:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    return env


def run_pyroved(python: Path, patches: np.ndarray, device: str, batch_size: int,
                epochs: int, threads: int | None = None) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "patches.npy"
        np.save(data, patches)
        spec = json.dumps({"data": str(data), "device": device, "batch_size": batch_size,
                           "epochs": epochs, "latent_dim": 2, "threads": threads})
        proc = subprocess.run([str(python), str(Path(__file__).resolve()), "--pyroved-worker", spec],
                              capture_output=True, text=True, env=_worker_env(), timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.strip()[-800:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _import_pyroved():
    """Import pyroVED, standing in for torchvision when no build matches our torch."""
    import types

    try:
        import torchvision.utils  # noqa: F401
    except Exception:  # ImportError, or a RuntimeError from a mismatched build
        for name in [m for m in sys.modules if m.startswith("torchvision")]:
            del sys.modules[name]
        stub, utils = types.ModuleType("torchvision"), types.ModuleType("torchvision.utils")

        def make_grid(*args, **kwargs):
            raise NotImplementedError("torchvision is stubbed in the speed benchmark")

        utils.make_grid = make_grid
        stub.utils = utils
        sys.modules["torchvision"], sys.modules["torchvision.utils"] = stub, utils
    import pyroved

    return pyroved


def pyroved_worker(spec: str) -> None:
    """Runs inside the pyroVED environment: train iVAE(t) with SVItrainer and time it."""
    from torch.utils.flop_counter import FlopCounterMode

    spec = json.loads(spec)
    pyroved = _import_pyroved()
    from pyroved.models import iVAE
    from pyroved.trainers import SVItrainer
    from pyroved.utils import init_dataloader

    device = spec["device"]
    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    x = torch.from_numpy(np.load(spec["data"]))
    model = iVAE(tuple(x.shape[1:]), latent_dim=spec["latent_dim"], invariances=["t"],
                 seed=0, device=device)
    trainer = SVItrainer(model, device=device, seed=0)
    loader = init_dataloader(x, batch_size=spec["batch_size"])
    trainer.step(loader)  # warm-up epoch: Pyro traces the model and guide
    synchronize(device)
    stamps = [(time.perf_counter(), time.process_time())]
    for _ in range(spec["epochs"]):
        trainer.step(loader)
        synchronize(device)
        stamps.append((time.perf_counter(), time.process_time()))
    # fastest epoch after the first, as for our models (the first pays for warm-up)
    durations = np.diff(np.array(stamps), axis=0)
    epoch_s = float(durations[:, 0].min())
    rate = len(x) / epoch_s
    batch = x[: spec["batch_size"]].to(device)
    counter = FlopCounterMode(display=False)
    with counter:
        trainer.svi.step(batch)
    step_flops = counter.get_total_flops()
    print(json.dumps({
        "patches_per_s": rate,
        "patches_per_cpu_s": len(x) / float(durations[:, 1].min()),
        "epoch_s": epoch_s,
        "flops_per_patch": step_flops / len(batch) if step_flops else None,
        "loss": trainer.loss_history["training_loss"][-1],
        "versions": f"pyroved {pyroved.__version__}, torch {torch.__version__}",
    }))


def pyroved_server(spec: str) -> None:
    """Runs inside the pyroVED environment: one epoch of iVAE(t) per ``epoch`` line.

    Used for the interleaved comparison: the parent alternates one of our epochs with
    one pyroVED epoch, so that load from other processes hits both alike. The first
    (warm-up) epoch, in which Pyro traces the model and guide, is run and not timed
    before ``ready`` is printed; every ``epoch`` command then prints the wall and CPU
    (``process_time``: this process, all its threads) seconds of one epoch.
    """
    from torch.utils.flop_counter import FlopCounterMode

    spec = json.loads(spec)
    pyroved = _import_pyroved()
    from pyroved.models import iVAE
    from pyroved.trainers import SVItrainer
    from pyroved.utils import init_dataloader

    device = spec["device"]
    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    x = torch.from_numpy(np.load(spec["data"]))
    model = iVAE(tuple(x.shape[1:]), latent_dim=spec["latent_dim"], invariances=["t"],
                 seed=0, device=device)
    trainer = SVItrainer(model, device=device, seed=0)
    loader = init_dataloader(x, batch_size=spec["batch_size"])
    trainer.step(loader)  # warm-up epoch: not timed
    synchronize(device)
    batch = x[: spec["batch_size"]].to(device)
    counter = FlopCounterMode(display=False)
    with counter:
        trainer.svi.step(batch)
    step_flops = counter.get_total_flops()
    print(json.dumps({"ready": True, "patches": len(x),
                      "flops_per_patch": step_flops / len(batch) if step_flops else None,
                      "threads": torch.get_num_threads(),
                      "versions": f"pyroved {pyroved.__version__}, torch {torch.__version__}"}),
          flush=True)
    for line in sys.stdin:
        if line.strip() != "epoch":
            break
        wall, cpu = time.perf_counter(), time.process_time()
        trainer.step(loader)
        synchronize(device)
        print(json.dumps({"wall_s": time.perf_counter() - wall,
                          "cpu_s": time.process_time() - cpu,
                          "loss": trainer.loss_history["training_loss"][-1]}), flush=True)


class PyrovedServer:
    """A `pyroved_server` subprocess: ``epoch()`` trains one epoch and returns its times."""

    def __init__(self, python: Path, data: Path, device: str, batch_size: int,
                 threads: int | None):
        spec = json.dumps({"data": str(data), "device": device, "batch_size": batch_size,
                           "epochs": 0, "latent_dim": 2, "threads": threads})
        self.proc = subprocess.Popen(
            [str(python), str(Path(__file__).resolve()), "--pyroved-server", spec],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=_worker_env())
        self.info = self._read()

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(self.proc.stderr.read().strip()[-800:] or "pyroVED server exited")
        return json.loads(line)

    def epoch(self) -> dict:
        self.proc.stdin.write("epoch\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        try:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.close()
            self.proc.wait(timeout=30)
        except (OSError, subprocess.SubprocessError):
            self.proc.kill()


def interleaved_comparison(single, patches, device: str, python: Path, rounds: int,
                           batch_sizes: list[int], threads: int | None,
                           epochs_per_round: int) -> dict:
    """Our shift model and pyroVED in turn, ``rounds`` times, under the same load.

    One `fit` of ``rounds * epochs_per_round + 2`` epochs (the first, warm-up, and the
    last, which also encodes the latent map, are not timed). A round is
    ``epochs_per_round`` of our epochs followed, in the callback, by one epoch of every
    pyroVED configuration (each in its own subprocess, warmed up beforehand), in an
    order that alternates from round to round. Our epochs are about 10x shorter than
    pyroVED's, so several of them make a round: both trainers then spend about as
    long per round, and each starts its turn with caches the other one has just
    evicted equally rarely. Our time is counted from the callback's return to its
    next call, so the pyroVED epochs in between are not counted. Each round gives a
    throughput ratio in CPU time and in wall time.
    """
    from phyvae_dash.models.train import fit

    servers = {}
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "patches.npy"
        np.save(data, patches)
        try:
            for bs in batch_sizes:
                servers[bs] = PyrovedServer(python, data, device, bs, threads)
            pv = {bs: [] for bs in batch_sizes}
            ours: list[list[float]] = []      # per round: [wall s, CPU s, epochs]
            last: list[tuple[float, float]] = []

            def callback(progress):
                synchronize(device)
                now = (time.perf_counter(), time.process_time())
                if 1 < progress.epoch < progress.epochs:
                    if not ours or ours[-1][2] == epochs_per_round:
                        ours.append([0.0, 0.0, 0])
                    ours[-1][0] += now[0] - last[0][0]
                    ours[-1][1] += now[1] - last[0][1]
                    ours[-1][2] += 1
                    if ours[-1][2] == epochs_per_round:
                        order = batch_sizes if len(ours) % 2 else batch_sizes[::-1]
                        for bs in order:
                            pv[bs].append(servers[bs].epoch())
                last[:] = [(time.perf_counter(), time.process_time())]

            result = fit(single, device=device, callback=callback, map_every=10**9,
                         model="shift", transform="patch", patch_size=16, stride=4,
                         latent_dim=2, seed=0, epochs=rounds * epochs_per_round + 2,
                         num_threads=threads)
        finally:
            for server in servers.values():
                server.close()
    per_epoch = result.attrs["steps_per_epoch"] * result.attrs["batch_size"]
    ours_cpu = np.array([per_epoch * n / cpu for _, cpu, n in ours])
    ours_wall = np.array([per_epoch * n / wall for wall, _, n in ours])
    out = {"result": result, "ours_cpu": ours_cpu, "ours_wall": ours_wall, "pyroved": {}}
    for bs in batch_sizes:
        n = servers[bs].info["patches"]
        runs = pv[bs]  # runs[k] ran right after our round k
        cpu = np.array([n / r["cpu_s"] for r in runs])
        wall = np.array([n / r["wall_s"] for r in runs])
        out["pyroved"][bs] = {"cpu": cpu, "wall": wall, "info": servers[bs].info,
                              "ratio_cpu": ours_cpu[:len(cpu)] / cpu,
                              "ratio_wall": ours_wall[:len(wall)] / wall}
    return out


# ------------------------------------------------------------------------------ main
def default_fit_and_variants(device: str, args, image, peak: float) -> list:
    """The default demo fit (printed) and the rows of every model variant."""
    from phyvae_dash.models.train import fit

    # 1. The default demo fit, everything at its defaults.
    start = time.perf_counter()
    result = fit(image, patch_size=16, stride=4, latent_dim=2, seed=0, device=device)
    synchronize(device)
    wall = time.perf_counter() - start
    verdict = "meets" if wall <= TARGET_FIT_S else "MISSES"
    print(f"default demo fit: {wall:.1f} s wall ({result.attrs['epochs']} epochs, model "
          f"{result.attrs['model']}, transform {result.attrs['transform']}, "
          f"{result.attrs['n_patches']} patches) -- {verdict} the {TARGET_FIT_S:.0f} s target "
          f"(load average {load_average()})")

    # 2. Throughput and FLOP/s of every variant.
    rows, _ = our_rows(image, device, args.epochs, peak)
    return rows


def benchmark_device(device: str, args, image, pyroved_python) -> None:
    print(f"\n=== device: {device}"
          + (f" ({torch.cuda.get_device_name(0)})" if device.startswith("cuda") else
             f" ({platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
             f"torch threads {torch.get_num_threads()}, load average {load_average()})"))
    if device == "cpu":
        # at the thread count `fit` trains with (half the cores), so that "of matmul
        # peak" compares like with like; all cores for reference
        fit_threads, all_threads = max(1, (os.cpu_count() or 2) // 2), torch.get_num_threads()
        try:
            torch.set_num_threads(fit_threads)
            peak = matmul_peak(device)
        finally:
            torch.set_num_threads(all_threads)
        print(f"float32 matmul peak (2048^3, best of 5): {fmt_rate(peak, 'FLOP/s')} on "
              f"{fit_threads} thread(s) as fit uses (the FLOP/s column's reference); "
              f"{fmt_rate(matmul_peak(device), 'FLOP/s')} on {all_threads}")
    else:
        peak = matmul_peak(device)
        print(f"float32 matmul peak (2048^3, best of 5): {fmt_rate(peak, 'FLOP/s')}")
    if device.startswith("cuda"):
        print(f"bfloat16 matmul peak: {fmt_rate(matmul_peak(device, 4096, dtype=torch.bfloat16), 'FLOP/s')}"
              " (fit uses bf16 autocast on CUDA)")

    header = ["trainer", "input", "batch", "patches/s", "patches/CPU-s", "FLOP/patch",
              "FLOP/s", "of matmul peak"]
    if args.compare_only:
        rows = []
    else:
        rows = default_fit_and_variants(device, args, image, peak)

    # 3. Like for like: our shift model and pyroVED's iVAE(t) on the same patches,
    #    one epoch each in turn (interleaved rounds), both on as many threads as `fit`
    #    uses (one on a 2-core machine): the fair reference for patches per CPU-second.
    patches, single = like_for_like_patches(image)
    threads = max(1, (os.cpu_count() or 2) // 2) if device == "cpu" else None
    batch, notes, flops = 256, [], None
    try:
        flops = training_flops_per_epoch(single, device, model="shift", transform="patch",
                                         patch_size=16, stride=4, latent_dim=2, seed=0)
    except Exception as exc:
        notes.append(f"FLOP count of the 1-channel shift model failed: {exc}")
    if pyroved_python is None:
        try:
            run = timed_fit(single, device, model="shift", transform="patch", patch_size=16,
                            stride=4, latent_dim=2, seed=0, epochs=args.epochs)
            rows.append(table_row("phyvae-dash shift, 1 channel", "patch 16x16",
                                  run["result"].attrs["batch_size"], run["patches_per_s"],
                                  run["patches_per_cpu_s"],
                                  flops / run["patches_per_epoch"] if flops else None, peak))
        except Exception as exc:
            rows.append(["phyvae-dash shift, 1 channel", "-", "-", f"failed: {exc}", "-", "-",
                         "-", "-"])
    else:
        batch_sizes = sorted({batch, 100})
        try:
            cmp = interleaved_comparison(single, patches, device, pyroved_python, args.rounds,
                                         batch_sizes, threads, args.epochs_per_round)
            per_epoch = cmp["result"].attrs["steps_per_epoch"] * cmp["result"].attrs["batch_size"]
            rows.append(table_row(
                "phyvae-dash shift, 1 channel", "patch 16x16", cmp["result"].attrs["batch_size"],
                float(np.median(cmp["ours_wall"])), float(np.median(cmp["ours_cpu"])),
                flops / per_epoch if flops else None, peak))
            for bs in batch_sizes:
                pv = cmp["pyroved"][bs]
                ratio_cpu, ratio_wall = pv["ratio_cpu"], pv["ratio_wall"]
                rows.append(table_row(
                    f"pyroVED iVAE(t) + SVItrainer, {pv['info']['threads']} thread(s)"
                    if device == "cpu" else "pyroVED iVAE(t) + SVItrainer",
                    "patch 16x16", bs, float(np.median(pv["wall"])), float(np.median(pv["cpu"])),
                    pv["info"]["flops_per_patch"], peak,
                    f" (ours {np.median(ratio_wall):.1f}x)"))
                every = bool(np.all(ratio_cpu >= TARGET_SPEEDUP))
                verdict = ("meets" if every else "meets (median only)"
                           if np.median(ratio_cpu) >= TARGET_SPEEDUP else "MISSES")
                notes.append(
                    f"shift model vs pyroVED batch {bs}, {threads or 'default'} thread(s), "
                    f"{len(ratio_cpu)} interleaved rounds: "
                    f"{np.median(ratio_cpu):.1f}x in CPU time (range {ratio_cpu.min():.1f}-"
                    f"{ratio_cpu.max():.1f}; per round "
                    + ", ".join(f"{r:.1f}" for r in ratio_cpu) + "), "
                    f"{np.median(ratio_wall):.1f}x in wall time (range {ratio_wall.min():.1f}-"
                    f"{ratio_wall.max():.1f}) -- {verdict} the {TARGET_SPEEDUP:.0f}x target")
            ours_wall = float(np.median(cmp["ours_wall"]))
        except Exception as exc:
            ours_wall = None
            rows.append(["interleaved shift vs pyroVED", "-", "-",
                         f"failed: {str(exc).splitlines()[-1][:160] if str(exc) else exc!r}",
                         "-", "-", "-", "-"])
        if device == "cpu" and threads != torch.get_num_threads():
            # pyroVED with torch's default threads (all cores): more threads buy it wall
            # time at a cost in CPU time; not interleaved, for reference only.
            name = "pyroVED iVAE(t) + SVItrainer, default threads"
            try:
                pv = run_pyroved(pyroved_python, patches, device, batch, args.pyroved_epochs)
                rows.append(table_row(name, "patch 16x16", batch, pv["patches_per_s"],
                                      pv["patches_per_cpu_s"], pv["flops_per_patch"], peak,
                                      f" (ours {ours_wall / pv['patches_per_s']:.1f}x)"
                                      if ours_wall else ""))
            except Exception as exc:
                rows.append([name, "-", batch, f"failed: {str(exc).splitlines()[-1][:120]}",
                             "-", "-", "-", "-"])
    print_table(f"training throughput on {device} ({args.kind} {args.size}x{args.size}, patch 16, "
                f"stride 4, latent 2; model variants: fastest of epochs 2..{args.epochs - 1}; "
                f"1-channel shift vs pyroVED: medians over {args.rounds} interleaved rounds of "
                f"{args.epochs_per_round} epochs of ours and one of pyroVED; load average "
                f"{load_average()})",
                header, rows)
    for note in notes:
        print(note)


def decoder_step_comparison(patch: int = 16, batch: int = 256, repeats: int = 20) -> None:
    """The shift model's decoder, forward and backward, three ways on the CPU: the
    hand-written blocked backward (`nets._ShiftedCoordMLP`, what `fit` runs), plain
    autograd, and autograd under ``torch.compile`` (inductor). ``fit`` keeps the
    hand-written path only while it is the fastest of the three."""
    from unittest import mock

    from phyvae_dash.models import nets
    from phyvae_dash.models.shift_vae import ShiftVAE

    torch.manual_seed(0)
    model = ShiftVAE((1, patch, patch), latent_dim=2, shift_prior=2.0)
    z = torch.randn(batch, 2 + model.n_pose, requires_grad=True)
    target = torch.randn(batch, 1, patch, patch)

    def step():
        model.zero_grad(set_to_none=True)
        z.grad = None
        loss = ((model.decoder_output(z) - target) ** 2).mean()
        loss.backward()
        return loss

    def autograd_step():
        with mock.patch.object(nets, "_fusable", lambda *tensors: False):
            return step()

    paths = {"hand-written backward (fit's path)": step, "autograd": autograd_step}
    try:
        paths["torch.compile (inductor)"] = torch.compile(autograd_step)
    except Exception as exc:  # no compiler toolchain, an unsupported op, ...
        print(f"torch.compile failed: {type(exc).__name__}: {str(exc).splitlines()[0]}")
    first, times = {}, {name: [] for name in paths}
    for name, run in list(paths.items()):
        t0 = time.perf_counter()
        try:
            run()  # warm-up (and, compiled, the compilation itself)
        except Exception as exc:
            print(f"{name} failed: {type(exc).__name__}: {str(exc).splitlines()[0]}")
            del paths[name], times[name]
            continue
        first[name] = time.perf_counter() - t0
    # Interleaved, so that every path sees the same load from other processes.
    for _ in range(repeats):
        for name, run in paths.items():
            t0 = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - t0)
    rows = {name: (first[name], float(np.median(t))) for name, t in times.items()}
    fastest = min(best for _, best in rows.values())
    ours_first, ours = rows["hand-written backward (fit's path)"]
    table = []
    for name, (first, best) in rows.items():
        saved = ours - best
        # Steps after which the first call's extra cost (compilation) has paid for itself.
        break_even = (first - best - (ours_first - ours)) / saved if saved > 0 else None
        table.append({"path": name, "ms per step": f"{1e3 * best:.1f}",
                      "vs fastest": f"{best / fastest:.2f}x", "first call s": f"{first:.2f}",
                      "steps to pay back the first call": "-" if break_even is None
                      else f"{max(break_even, 0):.0f}"})
    print(f"\nShift decoder, forward + backward, {batch} patches of {patch} x {patch}, "
          f"{torch.get_num_threads()} thread(s), median of {repeats} interleaved (load {load_average()})")
    print(pd.DataFrame(table).to_markdown(index=False, disable_numparse=True))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", default="pfm_labyrinth",
                        help="phantom of the demo (default: the dashboard's demo)")
    parser.add_argument("--size", type=int, default=256, help="side of the demo image")
    parser.add_argument("--epochs", type=int, default=6,
                        help="epochs of the throughput fits (first and last not timed)")
    parser.add_argument("--pyroved-epochs", type=int, default=3,
                        help="timed epochs of the (not interleaved) pyroVED run with default "
                             "threads (after one warm-up epoch)")
    parser.add_argument("--rounds", type=int, default=7,
                        help="interleaved rounds (one epoch of each trainer) of the "
                             "shift-vs-pyroVED comparison")
    parser.add_argument("--no-pyroved", action="store_true", help="skip the pyroVED comparison")
    parser.add_argument("--devices", default="auto",
                        help="comma-separated torch devices, or 'auto' (CPU, and CUDA if present)")
    parser.add_argument("--epochs-per-round", type=int, default=10,
                        help="our epochs per interleaved round (one pyroVED epoch takes "
                             "about as long as 10 of ours on a CPU)")
    parser.add_argument("--compare-only", action="store_true",
                        help="only the interleaved shift-vs-pyroVED comparison")
    parser.add_argument("--quick", action="store_true", help="3 epochs each: a smoke test")
    parser.add_argument("--decoder-only", action="store_true",
                        help="only the shift decoder's hand-written backward vs autograd vs "
                             "torch.compile")
    parser.add_argument("--pyroved-worker", help=argparse.SUPPRESS)
    parser.add_argument("--pyroved-server", help=argparse.SUPPRESS)
    parser.add_argument("--pyroved-probe", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.pyroved_worker:
        return pyroved_worker(args.pyroved_worker)
    if args.pyroved_server:
        return pyroved_server(args.pyroved_server)
    if args.pyroved_probe:
        pyroved = _import_pyroved()
        import pyro
        print(torch.__version__, pyro.__version__, pyroved.__version__)
        return None
    if args.quick:
        args.epochs, args.pyroved_epochs, args.rounds, args.epochs_per_round = 3, 1, 2, 2
    if args.decoder_only:
        torch.set_num_threads(1)
        return decoder_step_comparison()

    import phyvae_dash

    print(f"phyvae-dash {phyvae_dash.__version__}, torch {torch.__version__}, "
          f"python {platform.python_version()}")
    pyroved_python, why = (None, "skipped (--no-pyroved)")
    if not args.no_pyroved:
        pyroved_python, why = ensure_pyroved_venv()
    print(f"pyroVED: {why if pyroved_python is None else why + ' in ' + str(VENV)}")

    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else []) \
        if args.devices == "auto" else args.devices.split(",")
    image = demo_image(args.kind, args.size)
    for device in devices:
        benchmark_device(device, args, image, pyroved_python)
    decoder_step_comparison()


if __name__ == "__main__":
    main()
