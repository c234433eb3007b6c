"""Data larger than memory and many files: memory, throughput and scaling on dask.

Run from the repository root::

    python benchmarks/big_data.py                       # everything (16k^2 takes a while)
    python benchmarks/big_data.py --sizes 2048 8192     # the chain at these sizes only
    python benchmarks/big_data.py --quick               # small sizes: a smoke test
    python benchmarks/big_data.py --sections chunked many

Sections (each prints a table, ``DataFrame.to_markdown``):

* ``chain``: peak RSS against image size for ``load(path, lazy=True) -> fit -> encode
  -> to_zarr`` on a synthetic two-domain image written to Zarr (1024^2 chunks). Each
  size runs in a fresh child process whose resident memory, with any children's, is
  polled with psutil every 50 ms; the peak is reported with the wall time of each
  step and the positions encoded per second. ``fit(patch_size=16, stride=4,
  epochs=1, transform="patch")`` (images beyond 2k^2 are sampled: see
  ``models/sampling.py``); "encode" is ``result.pvd.encode(image).to_zarr(...)``,
  block by block (up to 2k^2 the fit itself also encodes every position in memory).
* ``scaling``: inference throughput (positions per second) of the chunked encoder on a
  LocalCluster with 1 and 2 worker processes (1 thread each), and the scaling
  efficiency ``t1 / (2 t2)``.
* ``chunked``: chunked against in-memory encode of a 1024^2 image: max |dz| and time.
* ``many``: ``encode_many`` over 20 files of 1024^2 (Zarr): files per minute, on the
  default (threads) scheduler and on 2 worker processes.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FIT = dict(patch_size=16, stride=4, epochs=1, transform="patch", latent_dim=2, seed=0)


def _phantom_block(block_info=None, seed=0):
    """One chunk of a two-domain image: a smooth labyrinth of two levels, plus noise."""
    (y0, y1), (x0, x1) = block_info[None]["array-location"]
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    field = np.sin(2 * np.pi * xx / 700) * np.sin(2 * np.pi * yy / 530) \
        + 0.6 * np.sin(2 * np.pi * (xx + 0.7 * yy) / 910)
    rng = np.random.default_rng([seed, y0, x0])
    return ((field > 0).astype(np.float32) + 0.3 * rng.standard_normal(field.shape, dtype=np.float32))


def write_synthetic(path: Path, size: int, chunk: int = 1024, seed: int = 0) -> Path:
    """A ``size x size`` float32 image in a Zarr store, written chunk by chunk."""
    import dask.array as da
    import xarray as xr

    if (path / ".done").exists():
        return path
    data = da.map_blocks(_phantom_block, dtype=np.float32, chunks=((chunk,) * (size // chunk)
                         or (size,),) * 2, seed=seed)
    image = xr.DataArray(data, dims=("y", "x"), name="image", attrs={"units": "counts"})
    image.to_dataset().to_zarr(path, mode="w")
    (path / ".done").touch()
    return path


def chain_child(store: str, out: str) -> None:
    """The measured chain, in its own process; prints its timings as JSON."""
    import phyvae_dash as pvd

    t0 = time.perf_counter()
    image = pvd.load(store, lazy=True)
    result = pvd.fit(image, **FIT)
    t1 = time.perf_counter()
    result.pvd.encode(image).to_zarr(out, mode="w")  # block by block, as it is written
    t2 = time.perf_counter()
    print(json.dumps({"fit_s": t1 - t0, "encode_s": t2 - t1,
                      "positions": int(result.sizes["y"] * result.sizes["x"]),
                      "trained_on": int(result.attrs["sampled_positions"] or result.attrs["n_patches"])}))


def run_measured(args: list[str]) -> tuple[float, str]:
    """Run a child process; return (peak RSS of it and its children in GB, its stdout)."""
    import psutil

    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    parent = psutil.Process(proc.pid)
    peak = 0
    while proc.poll() is None:
        try:
            rss = parent.memory_info().rss + sum(c.memory_info().rss for c in parent.children(recursive=True))
            peak = max(peak, rss)
        except psutil.Error:
            pass
        time.sleep(0.05)
    out = proc.stdout.read()
    if proc.returncode:
        raise RuntimeError(f"{args} failed with status {proc.returncode}")
    return peak / 1e9, out


def section_chain(sizes, work: Path):
    import pandas as pd

    rows = []
    for size in sizes:
        store = write_synthetic(work / f"synthetic_{size}.zarr", size)
        peak, out = run_measured([sys.executable, __file__, "--chain-child", str(store),
                                  str(work / f"maps_{size}.zarr")])
        t = json.loads(out.strip().splitlines()[-1])
        rows.append({"image": f"{size}²", "GiB on disk (float32)": size * size * 4 / 2 ** 30,
                     "peak RSS (GB)": peak, "fit (s)": t["fit_s"], "encode + to_zarr (s)": t["encode_s"],
                     "wall (s)": t["fit_s"] + t["encode_s"], "positions": t["positions"],
                     "trained on": t["trained_on"],
                     "positions encoded / s": t["positions"] / t["encode_s"]})
        print(f"  {size}²: peak {peak:.2f} GB", flush=True)
    print("\n### load(lazy=True) -> fit -> encode -> to_zarr\n")
    print(pd.DataFrame(rows).to_markdown(index=False, floatfmt=".3g"))


def _fitted(size=256):
    import xarray as xr

    import phyvae_dash as pvd

    values = _phantom_block({None: {"array-location": [(0, size), (0, size)]}})
    return pvd.fit(xr.DataArray(values, dims=("y", "x")), **FIT)


def section_scaling(work: Path, size: int):
    import pandas as pd
    from distributed import Client, LocalCluster

    import phyvae_dash as pvd

    result = _fitted()
    store = write_synthetic(work / f"synthetic_{size}.zarr", size)
    rows = []
    for n in (1, 2):
        with LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                          dashboard_address=None, env={"OMP_NUM_THREADS": "1"}) as cluster, \
                Client(cluster) as client:
            client.run(lambda: __import__("torch").set_num_threads(1))
            best = np.inf
            for _ in range(2):  # the first round also builds the model on each worker
                image = pvd.load(store, lazy=True)
                t0 = time.perf_counter()
                maps = result.pvd.encode(image, scheduler=client)
                maps[["z_mean", "z_std"]].to_zarr(work / f"scaling_{n}.zarr", mode="w",
                                                   compute=False).compute(scheduler=client)
                best = min(best, time.perf_counter() - t0)
            positions = maps.sizes["y"] * maps.sizes["x"]
            rows.append({"worker processes": n, "image": f"{size}²", "positions": positions,
                         "time (s)": best, "positions / s": positions / best})
    rows[1]["scaling efficiency"] = rows[0]["time (s)"] / (2 * rows[1]["time (s)"])
    print("\n### Inference throughput on a LocalCluster (1 thread per worker)\n")
    print(pd.DataFrame(rows).to_markdown(index=False, floatfmt=".3g"))


def section_chunked(size: int = 1024):
    import pandas as pd
    import xarray as xr

    result = _fitted()
    values = _phantom_block({None: {"array-location": [(0, size), (0, size)]}})
    image = xr.DataArray(values, dims=("y", "x"))
    rows = []
    for transform in ("patch", "fft+mean"):
        fitted = result if transform == "patch" else __import__("phyvae_dash").fit(
            image[:256, :256], **{**FIT, "transform": transform})
        t0 = time.perf_counter()
        in_memory = fitted.pvd.encode(image)
        t1 = time.perf_counter()
        chunked = fitted.pvd.encode(image.chunk(512)).compute()
        t2 = time.perf_counter()
        rows.append({"image": f"{size}²", "transform": transform, "in-memory (s)": t1 - t0,
                     "chunked (s)": t2 - t1,
                     "max |dz|": float(abs(chunked.z_mean - in_memory.z_mean).max())})
    print("\n### Chunked (dask, map_overlap) against in-memory encode\n")
    print(pd.DataFrame(rows).to_markdown(index=False, floatfmt=".3g"))


def section_many(work: Path, n_files: int, size: int):
    import pandas as pd
    from distributed import Client, LocalCluster

    import phyvae_dash as pvd

    result = _fitted()
    paths = [write_synthetic(work / f"many_{size}_{k}.zarr", size, chunk=512, seed=k)
             for k in range(n_files)]
    rows = []
    for name in ("threads", "2 worker processes"):
        t0 = time.perf_counter()
        if name == "threads":  # after the same warm-up
            pvd.encode_many(paths[:2], result, work / "many_warm", progress=False)
            t0 = time.perf_counter()
            pvd.encode_many(paths, result, work / "many_out", progress=False)
        else:
            with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                              dashboard_address=None, env={"OMP_NUM_THREADS": "1"}) as cluster, \
                    Client(cluster) as client:
                client.run(lambda: __import__("torch").set_num_threads(1))
                # warm-up (torch import, model build on each worker), not timed
                pvd.encode_many(paths[:2], result, work / "many_warm", scheduler=client, progress=False)
                t0 = time.perf_counter()
                pvd.encode_many(paths, result, work / "many_out", scheduler=client, progress=False)
        elapsed = time.perf_counter() - t0
        rows.append({"scheduler": name, "files": n_files, "image": f"{size}²",
                     "time (s)": elapsed, "files / min": n_files / elapsed * 60})
    print("\n### encode_many\n")
    print(pd.DataFrame(rows).to_markdown(index=False, floatfmt=".3g"))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[2048, 8192, 16384])
    parser.add_argument("--sections", nargs="+", default=["chain", "scaling", "chunked", "many"])
    parser.add_argument("--workdir", default=None, help="where the Zarr stores go (default: a temp dir)")
    parser.add_argument("--scaling-size", type=int, default=8192, help="image side for 'scaling'")
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke test")
    parser.add_argument("--chain-child", nargs=2, metavar=("STORE", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.chain_child:
        chain_child(*args.chain_child)
        return
    work = Path(args.workdir or tempfile.mkdtemp(prefix="pvd_big_"))
    work.mkdir(parents=True, exist_ok=True)
    sizes = [1024, 2048] if args.quick else args.sizes
    print(f"work folder {work}; {os.cpu_count()} CPUs")
    if "chain" in args.sections:
        section_chain(sizes, work)
    if "scaling" in args.sections:
        section_scaling(work, 1024 if args.quick else args.scaling_size)
    if "chunked" in args.sections:
        section_chunked(512 if args.quick else 1024)
    if "many" in args.sections:
        section_many(work, 4 if args.quick else 20, 512 if args.quick else 1024)


if __name__ == "__main__":
    main()
