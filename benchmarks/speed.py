"""Training speed of phyvae-dash: throughput, FLOP/s, the default fit, and pyroVED.

Run from the repository root::

    python benchmarks/speed.py                 # everything, CPU (and CUDA if present)
    python benchmarks/speed.py --no-pyroved    # skip the pyroVED comparison
    python benchmarks/speed.py --quick         # fewer epochs: a smoke test of the script

It prints one table per device:

* the default demo fit (``fit(image, patch_size=16, stride=4, latent_dim=2)`` with all
  other settings at their defaults) and its wall time, against the 15 s target;
* training throughput in patches per second of each model variant ("vae", "shift",
  "rotation") on the same demo with a fixed number of epochs: patches per epoch over
  the fastest epoch, timed by the per-epoch callback, leaving out the first epoch
  (warm-up) and the last (it also encodes the full latent map). The fastest epoch is
  the one least slowed by other processes on a shared machine; pyroVED is timed the
  same way, after one warm-up epoch. Throughput per CPU-second (``process_time`` of
  the training process, all its threads) is printed beside it: on a busy machine it
  is much less disturbed by other processes than wall time;
* the achieved FLOP/s of the training loop: FLOPs counted with
  ``torch.utils.flop_counter.FlopCounterMode`` (matmuls and convolutions, forward and
  backward) for one epoch -- the difference between a 2-epoch and a 1-epoch fit, so
  set-up and the final encoding cancel -- times epochs per second, next to the
  device's measured float32 matmul peak;
* like for like with pyroVED: its ``iVAE(invariances=['t'])`` trained by its
  ``SVItrainer`` and our shift-invariant model (``transform="patch"``) on the same
  16 x 16 patches of the demo's first channel (pyroVED's iVAE takes one channel) --
  z-scored for ours as ``fit`` does, min-max scaled to [0, 1] for pyroVED's Bernoulli
  likelihood -- with the same latent size (2 content + 2 shift latents), hidden width
  (128) and batch size (and also pyroVED's default batch of 100). pyroVED runs with
  torch's default threads (all cores) and with as many threads as ``fit`` used (one on
  a 2-core machine): more threads buy it wall time but cost CPU time, so the
  single-thread run is the fair reference for patches per CPU-second. The target is
  our shift model >= 10x pyroVED's throughput.

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
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    line = "  ".join("-" * w for w in widths)
    print(f"\n{title}")
    print(line)
    print("  ".join(str(h).ljust(w) for h, w in zip(header, widths)))
    print(line)
    for row in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)))
    print(line)


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


# ------------------------------------------------------------------------------ main
def benchmark_device(device: str, args, image, pyroved_python) -> None:
    from phyvae_dash.models.train import fit

    print(f"\n=== device: {device}"
          + (f" ({torch.cuda.get_device_name(0)})" if device.startswith("cuda") else
             f" ({platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
             f"torch threads {torch.get_num_threads()}, load average {load_average()})"))
    peak = matmul_peak(device)
    print(f"float32 matmul peak (2048^3, best of 5): {fmt_rate(peak, 'FLOP/s')}")
    if device.startswith("cuda"):
        print(f"bfloat16 matmul peak: {fmt_rate(matmul_peak(device, 4096, dtype=torch.bfloat16), 'FLOP/s')}"
              " (fit uses bf16 autocast on CUDA)")

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
    header = ["trainer", "input", "batch", "patches/s", "patches/CPU-s", "FLOP/patch",
              "FLOP/s", "of matmul peak"]
    rows, measured = our_rows(image, device, args.epochs, peak)

    # 3. Like for like: our shift model and pyroVED's iVAE(t) on the same patches.
    patches, single = like_for_like_patches(image)
    ours = None
    try:
        run = timed_fit(single, device, model="shift", transform="patch", patch_size=16,
                        stride=4, latent_dim=2, seed=0, epochs=args.epochs)
        flops = training_flops_per_epoch(single, device, model="shift", transform="patch",
                                         patch_size=16, stride=4, latent_dim=2, seed=0)
        ours = run
        batch = run["result"].attrs["batch_size"]
        rows.append(table_row("phyvae-dash shift, 1 channel", "patch 16x16", batch,
                              run["patches_per_s"], run["patches_per_cpu_s"],
                              flops / run["patches_per_epoch"] if flops else None, peak))
    except Exception as exc:
        batch = 256
        rows.append(["phyvae-dash shift, 1 channel", "-", "-", f"failed: {exc}", "-", "-", "-",
                     "-"])
    notes = []
    if pyroved_python is not None:
        # pyroVED with torch's default threads (all cores), and with one thread like
        # `fit` on a 2-core machine: one thread spends the least CPU time per patch, so
        # it is the fair reference for the patches/CPU-s comparison.
        ours_threads = ours["result"].attrs["num_threads"] if ours else 1
        for batch_size in sorted({batch, 100}):
            for threads in (None, ours_threads):
                name = "pyroVED iVAE(t) + SVItrainer" + (f", {threads} thread(s)" if threads else "")
                try:
                    pv = run_pyroved(pyroved_python, patches, device, batch_size,
                                     args.pyroved_epochs, threads)
                    ratio = ours["patches_per_s"] / pv["patches_per_s"] if ours else None
                    rows.append(table_row(name, "patch 16x16", batch_size, pv["patches_per_s"],
                                          pv["patches_per_cpu_s"], pv["flops_per_patch"], peak,
                                          f" (ours {ratio:.1f}x)" if ratio else ""))
                    if ratio:
                        cpu_ratio = ours["patches_per_cpu_s"] / pv["patches_per_cpu_s"]
                        notes.append(
                            f"shift model (batch {batch}) vs pyroVED batch {batch_size}, "
                            f"{threads or 'default'} thread(s): {ratio:.1f}x in wall time, "
                            f"{cpu_ratio:.1f}x in CPU time -- "
                            f"{'meets' if cpu_ratio >= TARGET_SPEEDUP else 'MISSES'} the "
                            f"{TARGET_SPEEDUP:.0f}x target (CPU time: steadier on a shared machine)")
                except Exception as exc:
                    rows.append([name, "-", batch_size,
                                 f"failed: {str(exc).splitlines()[-1][:120]}", "-", "-", "-", "-"])
                if device != "cpu":
                    break  # threads only matter on the CPU
    print_table(f"training throughput on {device} ({args.kind} {args.size}x{args.size}, patch 16, "
                f"stride 4, latent 2; fastest of epochs 2..{args.epochs - 1}; pyroVED fastest of "
                f"{args.pyroved_epochs} after a warm-up; load average {load_average()})",
                header, rows)
    for note in notes:
        print(note)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", default="pfm_labyrinth",
                        help="phantom of the demo (default: the dashboard's demo)")
    parser.add_argument("--size", type=int, default=256, help="side of the demo image")
    parser.add_argument("--epochs", type=int, default=6,
                        help="epochs of the throughput fits (first and last not timed)")
    parser.add_argument("--pyroved-epochs", type=int, default=3,
                        help="timed epochs of pyroVED training (after one warm-up epoch)")
    parser.add_argument("--no-pyroved", action="store_true", help="skip the pyroVED comparison")
    parser.add_argument("--devices", default="auto",
                        help="comma-separated torch devices, or 'auto' (CPU, and CUDA if present)")
    parser.add_argument("--quick", action="store_true", help="3 epochs each: a smoke test")
    parser.add_argument("--pyroved-worker", help=argparse.SUPPRESS)
    parser.add_argument("--pyroved-probe", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.pyroved_worker:
        return pyroved_worker(args.pyroved_worker)
    if args.pyroved_probe:
        pyroved = _import_pyroved()
        import pyro
        print(torch.__version__, pyro.__version__, pyroved.__version__)
        return None
    if args.quick:
        args.epochs, args.pyroved_epochs = 3, 1

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


if __name__ == "__main__":
    main()
