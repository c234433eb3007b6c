"""4D-STEM and EELS phantoms: phyvae-dash with its defaults against the field's baselines.

Tables (printed with ``DataFrame.to_markdown``):

1. **4D-STEM** (`synthetic_spectral.diffraction_grains`: 64 x 64 scan, 64 x 64 detector,
   four grains of two phases, descan error, Poisson noise), per dose (electrons per
   pattern): adjusted Rand index against the grain labels of

   * ``phyvae-dash`` -- ``fit(image, patch_size=1, stride=1)`` with every other setting
     at its default (``transform="auto"``, boundary weight, latent_dim, epochs), then
     ``segment(result, n_domains=4)``;
   * ``boundary_weight=0`` -- the same fit without the boundary prior;
   * ``transform=...`` -- the same fit with each 4D transform (``pattern``, ``virtual``;
     ``profiles_invariant`` is scored against the *phase* labels, which is what it is
     for);
   * ``k-means (raw)``, ``GMM (raw)`` -- on the raw patterns (flattened, float;
     diagonal covariances for the GMM, since full ones in 4096 dims do not fit);
   * ``NMF+GMM``, ``PCA+GMM`` -- 8 components of the raw patterns, then a
     full-covariance GMM;
   * ``virtual detector (best)`` -- the best of single virtual-detector images (BF,
     ADF and annuli) split by multi-Otsu thresholds: each scored against the truth and
     the best kept, which favours this baseline.

2. **EELS** (`synthetic_spectral.eels_phases`: 64 x 64 x 256, three phases), the same
   comparison (``transform="auto"`` is the power-law background subtraction), with a
   single energy window (the best of 16) in place of the virtual detector.

3. **Throughput**: training and encoding in patterns per second (4D phantom at the
   first dose; encoding = feature extraction + encoder, and the encoder alone).

4. **Big data**: a dask-backed ``256 x 256 x 128 x 128`` uint16 4D-STEM dataset
   (2 GiB: the issue's "1 GiB" is a slip, 256^2 x 128^2 x 2 bytes is 2 GiB) written to
   Zarr by this script, then, in a fresh process, opened lazily with ``load(...,
   lazy=True)`` and put through a virtual ADF image, the profile features and a short
   ``fit``: time and peak resident memory of that process (``ru_maxrss``).

Usage::

    python benchmarks/fourd.py [--quick] [--doses 2000,200,100,60] [--seeds 0]
                               [--big-scan 128,256] [--no-big] [--no-eels] [--no-4d]
                               [--no-throughput]

``--quick`` runs one dose per table, 1 seed and a 64 x 64 big-data scan.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

import phyvae_dash as pvd
from phyvae_dash.analysis.metrics import adjusted_rand_index
from phyvae_dash.data import fourd, synthetic_spectral


def _ari(pred, truth) -> float:
    from sklearn.metrics import adjusted_rand_score

    return float(adjusted_rand_score(np.asarray(truth).ravel(), np.asarray(pred).ravel()))


def _gmm(features, k, seed, covariance="full"):
    from sklearn.mixture import GaussianMixture

    return GaussianMixture(k, covariance_type=covariance, n_init=3, random_state=seed,
                           reg_covar=1e-4).fit_predict(features)


def raw_baselines(raw: np.ndarray, truth: np.ndarray, k: int, seed: int) -> dict:
    """k-means / GMM on the raw data, NMF+GMM and PCA+GMM (8 components)."""
    from sklearn.cluster import KMeans
    from sklearn.decomposition import NMF, PCA

    flat = raw.reshape(raw.shape[0] * raw.shape[1], -1).astype(np.float32)
    out = {"k-means (raw)": _ari(KMeans(k, n_init=4, random_state=seed).fit_predict(flat), truth),
           "GMM (raw)": _ari(_gmm(flat, k, seed, "diag"), truth)}
    nmf = NMF(8, init="nndsvda", max_iter=300, random_state=seed).fit_transform(np.clip(flat, 0, None))
    out["NMF+GMM"] = _ari(_gmm(nmf, k, seed), truth)
    pca = PCA(8, random_state=seed).fit_transform(flat - flat.mean(axis=0))
    out["PCA+GMM"] = _ari(_gmm(pca, k, seed), truth)
    return out


def _best_threshold(images, truth, k) -> tuple[float, str]:
    from skimage.filters import threshold_multiotsu

    best = (-1.0, "")
    for name, image in images:
        values = np.asarray(image, float)
        try:
            thresholds = threshold_multiotsu(values, classes=k)
        except ValueError:
            continue
        best = max(best, (_ari(np.digitize(values, thresholds), truth), name))
    return best


def virtual_detector_baseline(image, truth, k):
    """Best single virtual-detector image (BF, ADF, annuli) split by multi-Otsu."""
    bf = fourd.virtual_image(image, "bf")
    r_bf = bf.attrs["outer"]
    edge = float(abs(image.kx).max())
    images = [("BF", bf.values), ("ADF", fourd.virtual_image(image, "adf").values)]
    radii = np.linspace(r_bf, edge, 7)
    for inner, outer in zip(radii[:-1], radii[1:]):
        images.append((f"annulus {inner:.1f}-{outer:.1f}",
                       fourd.virtual_image(image, "annular", inner=inner, outer=outer).values))
    return _best_threshold(images, truth, k)


def energy_window_baseline(image, truth, k, n_windows=16):
    """Best single energy-window map (counts in one of 16 windows) split by multi-Otsu."""
    edges = np.linspace(0, image.sizes["energy"], n_windows + 1).astype(int)
    energy = image.energy.values
    images = [(f"{energy[a]:.0f}-{energy[b - 1]:.0f} eV", image.values[..., a:b].sum(axis=-1))
              for a, b in zip(edges[:-1], edges[1:])]
    return _best_threshold(images, truth, k)


def _fit_ari(image, truth, k, seed, **settings):
    t0 = time.perf_counter()
    result = pvd.fit(image, patch_size=1, stride=1, seed=seed, **settings)
    labels = pvd.segment(result, n_domains=k)
    return adjusted_rand_index(labels, truth), time.perf_counter() - t0, result


def fourd_table(doses, seeds, quick):
    rows, results = [], {}
    for dose in doses:
        for seed in seeds:
            ds = synthetic_spectral.diffraction_grains(scan_shape=(64, 64), detector=64,
                                                       dose=dose, seed=seed)
            truth, k = ds.labels, int(ds.attrs["n_grains"])
            row = {"dose (e/pattern)": dose, "seed": seed}
            ari, elapsed, result = _fit_ari(ds.image, truth, k, seed)
            row["phyvae-dash"] = ari
            row["transform (auto)"] = result.attrs["transform"]
            row["fit s"] = elapsed
            results.setdefault(dose, (ds, result))
            row["boundary_weight=0"] = _fit_ari(ds.image, truth, k, seed, boundary_weight=0.0)[0]
            for transform in ("pattern", "virtual"):
                row[f"transform={transform}"] = _fit_ari(ds.image, truth, k, seed,
                                                         transform=transform)[0]
            row["profiles_invariant (phases)"] = _fit_ari(
                ds.image, ds.phase_labels, 2, seed, transform="profiles_invariant")[0]
            row.update(raw_baselines(ds.image.values, truth.values, k, seed))
            row["virtual detector (best)"], row["best detector"] = \
                virtual_detector_baseline(ds.image, truth.values, k)
            rows.append(row)
            print(json.dumps(row, default=str), flush=True)
    return pd.DataFrame(rows), results


def eels_table(doses, seeds):
    rows = []
    for dose in doses:
        for seed in seeds:
            ds = synthetic_spectral.eels_phases(scan_shape=(64, 64), n_energy=256, dose=dose,
                                                seed=seed)
            truth, k = ds.labels, 3
            row = {"dose (counts, first channel)": dose, "seed": seed}
            ari, elapsed, result = _fit_ari(ds.image, truth, k, seed)
            row["phyvae-dash"] = ari
            row["transform (auto)"] = result.attrs["transform"]
            row["fit s"] = elapsed
            row["boundary_weight=0"] = _fit_ari(ds.image, truth, k, seed, boundary_weight=0.0)[0]
            row["transform=spectrum"] = _fit_ari(ds.image, truth, k, seed, transform="spectrum")[0]
            row.update(raw_baselines(ds.image.values, truth.values, k, seed))
            row["energy window (best)"], row["best window"] = \
                energy_window_baseline(ds.image, truth.values, k)
            rows.append(row)
            print(json.dumps(row, default=str), flush=True)
    return pd.DataFrame(rows)


def throughput_table(ds, result):
    import torch

    from phyvae_dash.models.features import prepare_inputs
    from phyvae_dash.models.train import encode_all

    n = ds.sizes["y"] * ds.sizes["x"]
    t0 = time.perf_counter()
    result.pvd.encode(ds.image)
    full = time.perf_counter() - t0
    inputs = prepare_inputs(ds.image, 1, 1, transform=result.attrs["transform"])
    data = torch.from_numpy(inputs.data.reshape(n, -1))
    t0 = time.perf_counter()
    encode_all(result.pvd.model, data)
    encoder = time.perf_counter() - t0
    return pd.DataFrame([{
        "patterns": n, "detector": f"{ds.sizes['ky']} x {ds.sizes['kx']}",
        "transform": result.attrs["transform"], "epochs": result.attrs["epochs"],
        "training (patterns/s, all epochs)": result.attrs["patches_per_s"],
        "encoding: features + encoder (patterns/s)": n / full,
        "encoding: encoder alone (patterns/s)": n / encoder,
        "torch threads": torch.get_num_threads(),
    }])


# ------------------------------------------------------------------------- big data

def write_big(path: Path, scan: int, detector: int) -> None:
    """A ``scan x scan x detector x detector`` uint16 dataset in Zarr, written by dask
    from a 32 x 32-position phantom tiled over the scan (memory bounded by one chunk).
    The tiling repeats patterns, so the Zarr store compresses far better than real data
    would; the memory and time of reading it back are what is measured."""
    import dask.array as dsa
    import xarray as xr

    tile = min(32, scan)
    small = synthetic_spectral.diffraction_grains(scan_shape=(tile, tile), detector=detector,
                                                  dose=2000, seed=0).image.values
    reps = scan // tile
    big = dsa.tile(dsa.from_array(small, chunks=(16, tile, -1, -1)), (reps, reps, 1, 1))
    big = big.rechunk((16, scan, detector, detector))
    xr.DataArray(big, dims=fourd.FOURD_DIMS).to_dataset(name="diffraction").to_zarr(
        path, mode="w")


def _peak_rss_mib() -> float:
    """This process's peak resident memory (VmHWM). Unlike ``ru_maxrss``, which a child
    inherits from its parent across fork + exec, VmHWM starts afresh at exec."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return float(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure_big(path: str) -> dict:
    """In this process: open lazily, virtual image, features, a short fit; peak RSS."""
    import torch  # noqa: F401  (imported first so that its memory counts as baseline)

    rss0 = _peak_rss_mib()
    t0 = time.perf_counter()
    data = pvd.load(path, lazy=True)
    adf = fourd.virtual_image(data, "adf").compute()
    t_adf = time.perf_counter() - t0
    t0 = time.perf_counter()
    result = pvd.fit(data, patch_size=1, stride=1, epochs=3, seed=0)
    t_fit = time.perf_counter() - t0
    n = data.sizes["y"] * data.sizes["x"]
    return {"shape": "x".join(str(s) for s in data.shape), "dtype": str(data.dtype),
            "GiB": data.nbytes / 2 ** 30, "dask chunks (y)": int(data.data.chunksize[0]),
            "virtual ADF s": t_adf, "ADF mean": float(adf.mean()),
            "fit (features + 3 epochs) s": t_fit,
            "fit patterns/s (incl. features)": n * 3 / t_fit,
            "transform": result.attrs["transform"],
            "peak RSS MiB": _peak_rss_mib(),
            "RSS after imports MiB": rss0}


def big_table(scan: int, detector: int = 128):
    folder = Path(tempfile.mkdtemp(prefix="pvd-fourd-"))
    path = folder / "big.zarr"
    t0 = time.perf_counter()
    write_big(path, scan, detector)
    written = time.perf_counter() - t0
    out = subprocess.run([sys.executable, __file__, "--measure-big", str(path)],
                         capture_output=True, text=True, check=True, env=os.environ.copy())
    row = json.loads(out.stdout.strip().splitlines()[-1])
    row["write to Zarr s"] = written
    disk = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    row["Zarr on disk MiB"] = disk / 2 ** 20
    import shutil

    shutil.rmtree(folder, ignore_errors=True)
    return pd.DataFrame([row])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--doses", default="2000,200,100,60")
    parser.add_argument("--eels-doses", default="400,40,20")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--big-scan", default="256",
                        help="scan sizes of the big-data table, comma-separated (e.g. 128,256)")
    parser.add_argument("--no-big", action="store_true")
    parser.add_argument("--no-eels", action="store_true")
    parser.add_argument("--no-4d", action="store_true", help="skip the 4D-STEM table")
    parser.add_argument("--no-throughput", action="store_true")
    parser.add_argument("--measure-big", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure_big:
        print(json.dumps(measure_big(args.measure_big)))
        return
    doses = [float(d) for d in args.doses.split(",")]
    eels_doses = [float(d) for d in args.eels_doses.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    big_scans = [int(v) for v in str(args.big_scan).split(",")]
    if args.quick:
        doses, eels_doses, seeds, big_scans = doses[:1], eels_doses[:1], seeds[:1], [64]
    if not args.no_4d:
        table, results = fourd_table(doses, seeds, args.quick)
        print("\n## 4D-STEM phantom (64 x 64 scan, 64 x 64 detector, 4 grains): ARI\n")
        print(table.to_markdown(index=False, floatfmt=".3f"))
        ds, result = results[doses[0]]
    elif not args.no_throughput:
        ds = synthetic_spectral.diffraction_grains(scan_shape=(64, 64), detector=64,
                                                   dose=doses[0], seed=seeds[0])
        result = pvd.fit(ds.image, patch_size=1, stride=1, seed=seeds[0])
    if not args.no_eels:
        print("\n## EELS phantom (64 x 64 x 256, 3 phases): ARI\n")
        print(eels_table(eels_doses, seeds).to_markdown(index=False, floatfmt=".3f"))
    if not args.no_throughput:
        print("\n## Throughput (CPU)\n")
        print(throughput_table(ds, result).to_markdown(index=False, floatfmt=".0f"))
    if not args.no_big:
        print("\n## Dask-backed (scan x scan x 128 x 128) uint16 from Zarr\n")
        table = pd.concat([big_table(scan) for scan in big_scans], ignore_index=True)
        print(table.to_markdown(index=False, floatfmt=".1f"))


if __name__ == "__main__":
    main()
