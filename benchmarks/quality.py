"""Segmentation quality on the package's phantoms: phyvae-dash against its baselines.

For each phantom kind (graphene-like rotated grains, BiFeO3-like stripe orientation
domains, NiO-LSMO-like two-phase lattice, PFM labyrinth with amplitude + phase) this
prints one table:

* ``phyvae-dash``      -- `fit` with the kind's preset (``features.PRESETS``: patch size,
  stride, transform, boundary weight, ...), then `segment` (``features.SEGMENT_PRESETS``)
  into the true number of domains;
* ``boundary_weight=0`` -- the same fit without the boundary loss;
* ``reference``        -- (``--reference``) the authors' multiplicative, non-differentiable
  boundary term instead of the total-variation loss;
* ``PCA+GMM``          -- principal components of the raw patches, Gaussian mixture
  (full covariances); ``PCA+<method>`` the same components segmented like the VAE
  (when that differs), so the baseline gets the better of the two segmenters;
* ``PCA+GMM (inputs)`` -- the same on the inputs the VAE sees (e.g. |FFT| + mean), to
  separate what the transform gives from what the model and boundary loss add;
* ``grid ceiling``      -- the ground truth on the patch-centre grid against itself
  shifted by one grid step along x: what a wall misplaced by one cell costs, i.e. how
  much of the gap to ARI = 1 is the grid rather than the method;

with the adjusted Rand index and boundary F1 (tolerance one grid step) against the
ground truth sampled at the patch centres, predicted/true boundary length, and the fit
time. Below each table two lines compare ``phyvae-dash`` with ``boundary_weight=0``
(paired by fit seed) and with the best PCA row (per metric): the mean difference, its
range over the fit seeds, and a verdict -- "beats" only when the prior is ahead for
every fit seed, "loses" when behind for every one, otherwise "ties": with three seeds a
mean difference of a few thousandths is seed noise, not a win.

Noise (``--low-snr``): the phantoms' default noise is that of a good scan (per-pixel
SNR, the standard deviation of the clean lattice/stripe/phase modulation over that of
the noise, about 6 for the HAADF-like lattices, 3 for the stripes, 9 for the PFM
phase). Low-dose HAADF-STEM of beam-sensitive materials (graphene imaged at a few tens
of counts per atom column, oxides scanned fast to beat drift) and fast or low-drive PFM
scans record SNR near 1-2, and suppressing the speckle that this noise puts in the
latent maps is what the boundary prior is for. ``--low-snr`` therefore also runs every
kind at the settings in `LOW_SNR`, chosen by one rule for all kinds (per-pixel SNR about
1.5; see `LOW_SNR`), and prints a second table for it. The phantoms' defaults are not
changed; ``--phantom NAME=VALUE`` sets any phantom argument by hand instead.

Usage::

    python benchmarks/quality.py [--size 256] [--quick] [--kinds graphene_grains,...]
                                 [--seed 0] [--reference] [--epochs N] [--repeats 3]
                                 [--low-snr] [--phantom dose=20] [--set boundary_weight=3]

``--quick`` runs 128 x 128 phantoms (about a minute per kind on two cores).
"""
from __future__ import annotations

import argparse
import json
import time

import pandas as pd

import phyvae_dash as pvd
from phyvae_dash.analysis import metrics
from phyvae_dash.models.features import PRESETS, SEGMENT_PRESETS, preset_for

#: Phantom settings of a low-dose / fast scan, per kind: the noise that brings the
#: per-pixel SNR (standard deviation of the clean modulation, after removing the slow
#: background, over that of the added noise; 256 px, phantom seed 0) to about 1.5 for
#: every kind, instead of the defaults' 3-9. Only the noise changes.
#: graphene: dose 10 counts per pixel at a column's peak intensity (SNR 1.47; default
#: 200: 5.7), the few to tens of counts per carbon column of medium/high-angle ADF
#: images of graphene at 60-80 kV. NiO-LSMO: dose 10 (1.49; default 200: 5.9), a fast
#: or low-dose HAADF frame. Stripes: Gaussian noise 0.1 (1.44; default 0.05: 2.9).
#: PFM: phase noise 45 deg and amplitude noise 0.2 (phase SNR 1.55; default 10 deg:
#: 8.7), a fast or low-drive scan.
LOW_SNR: dict[str, dict] = {
    "graphene_grains": {"dose": 10.0},
    "bfo_stripes": {"noise": 0.1},
    "nio_lsmo": {"dose": 10.0},
    "pfm_labyrinth": {"phase_noise_deg": 45.0, "amplitude_noise": 0.2},
}


def _score(labels, phantom, seconds, transform):
    truth = metrics.labels_on_grid(phantom, labels)
    true_length = float(pvd.boundary_length(truth))
    return {
        "ARI": metrics.adjusted_rand_index(labels, phantom),
        "F1": metrics.boundary_f1(labels, phantom),
        "length": float(pvd.boundary_length(labels)) / true_length if true_length else float("nan"),
        "seconds": seconds,
        "transform": transform,
    }


def _mean_scores(runs: list) -> dict:
    """Average the scores of repeated fits; keep the spread of the ARI and each run's
    ARI and F1 (``"runs"``, in fit-seed order, for paired comparisons)."""
    out = {k: sum(r[k] for r in runs) / len(runs) for k in ("ARI", "F1", "length", "seconds")}
    out["ARI_range"] = (min(r["ARI"] for r in runs), max(r["ARI"] for r in runs))
    out["transform"] = runs[0]["transform"]
    out["runs"] = [{"ARI": r["ARI"], "F1": r["F1"]} for r in runs]
    return out


def _verdict(diffs: list) -> str:
    """"beats" when every paired difference is positive, "loses" when every one is
    negative, else "ties" (differences under 0.0005 count as zero)."""
    if all(d > 5e-4 for d in diffs):
        return "beats"
    if all(d < -5e-4 for d in diffs):
        return "loses"
    return "ties"


def compare(rows: dict, name: str = "phyvae-dash") -> dict:
    """Paired differences of ``rows[name]`` against weight 0 and the best PCA row.

    Returns ``{"weight 0": {metric: (mean, low, high, verdict)}, "PCA": {...}}``; the PCA
    entry compares each fit seed's score with the best PCA row's for that metric.
    """
    own = rows[name]["runs"]
    out = {}
    if "boundary_weight=0" in rows:
        base = rows["boundary_weight=0"]["runs"]
        out["weight 0"] = {}
        for m in ("ARI", "F1"):
            d = [a[m] - b[m] for a, b in zip(own, base)]
            out["weight 0"][m] = (sum(d) / len(d), min(d), max(d), _verdict(d))
    pca = [r for k, r in rows.items() if k.startswith("PCA")]
    if pca:
        out["PCA"] = {}
        for m in ("ARI", "F1"):
            best = max(r[m] for r in pca)
            d = [a[m] - best for a in own]
            out["PCA"][m] = (sum(d) / len(d), min(d), max(d), _verdict(d))
    return out


def run_kind(kind: str, size: int, seed: int, reference: bool, epochs: int | None,
             repeats: int = 1, overrides: dict | None = None,
             phantom_settings: dict | None = None) -> dict:
    """Fit every method on one phantom; return ``{method: scores}``.

    VAE methods are fitted ``repeats`` times (fit seeds ``seed, seed + 1, ...``) and
    their scores averaged: a single fit's ARI varies by a few hundredths with the seed.
    ``phantom_settings`` are passed to the phantom (e.g. ``{"dose": 10}``).
    """
    phantom = pvd.synthetic.make(kind, shape=(size, size), seed=seed, **(phantom_settings or {}))
    settings = preset_for(kind, phantom.image)
    n_domains = int(phantom.attrs["n_labels"])
    fit_settings = dict(settings)
    if epochs is not None:
        fit_settings["epochs"] = epochs
    fit_settings.update(overrides or {})
    segment_options = SEGMENT_PRESETS.get(kind, {})
    rows = {}
    segmented_with = []

    def vae(name, **override):
        runs = []
        for fit_seed in range(seed, seed + repeats):
            t0 = time.perf_counter()
            result = pvd.fit(phantom.image, seed=fit_seed, **{**fit_settings, **override})
            seconds = time.perf_counter() - t0
            labels = pvd.segment(result, n_domains=n_domains, **segment_options)
            segmented_with.append(labels.attrs["method"])
            runs.append(_score(labels, phantom, seconds, result.attrs.get("transform", "?")))
        rows[name] = _mean_scores(runs)

    vae("phyvae-dash")
    vae("boundary_weight=0", boundary_weight=0.0)
    if reference:
        vae("reference", boundary_loss="reference", boundary_weight=None)
    vae_inputs = rows["phyvae-dash"]["transform"]
    vae_method = segmented_with[0]  # what segment_options resolved to (e.g. "auto")
    for name, transform in (("PCA", "patch"), ("PCA (inputs)", vae_inputs)):
        if name == "PCA (inputs)" and transform == "patch":
            continue
        t0 = time.perf_counter()
        result = pvd.pca_baseline(phantom.image, fit_settings["patch_size"], fit_settings["stride"],
                                  n_components=fit_settings.get("latent_dim", 2),
                                  transform=transform, seed=seed)
        seconds = time.perf_counter() - t0
        for method in dict.fromkeys(("gmm", vae_method)):
            label = "GMM" if method == "gmm" else method
            row = name.replace("PCA", f"PCA+{label}")
            labels = pvd.segment(result, n_domains=n_domains, method=method)
            rows[row] = _score(labels, phantom, seconds, transform)
    rows["grid ceiling"] = _ceiling(phantom, labels)
    return rows


def _ceiling(phantom, grid_labels):
    """Scores of the true labels shifted by one grid step along x (see the docstring)."""
    truth = metrics.labels_on_grid(phantom, grid_labels)
    shifted = truth.copy(data=truth.values.copy())
    shifted.values[:, 1:] = truth.values[:, :-1]
    return {"ARI": metrics.adjusted_rand_index(shifted, truth),
            "F1": metrics.boundary_f1(shifted, truth),
            "length": float(pvd.boundary_length(shifted)) / float(pvd.boundary_length(truth)),
            "seconds": 0.0, "transform": "-"}


def print_table(kind: str, size: int, rows: dict, settings: dict,
                phantom_settings: dict | None = None) -> None:
    shown = ", ".join(f"{k}={v}" for k, v in {**settings, **SEGMENT_PRESETS.get(kind, {})}.items())
    noise = ", ".join(f"{k}={v}" for k, v in (phantom_settings or {}).items())
    noise = f"; phantom: {noise}" if noise else "; default noise"
    print(f"\n{kind} ({size} x {size}{noise}; preset: {shown})")
    table = []
    for name, r in rows.items():
        low, high = r.get("ARI_range", (r["ARI"], r["ARI"]))
        table.append({"method": name, "inputs": r["transform"], "ARI": f"{r['ARI']:.3f}",
                      "(min-max)": f"{low:.2f}-{high:.2f}" if high > low else "",
                      "bF1": f"{r['F1']:.3f}", "len pred/true": f"{r['length']:.2f}",
                      "fit s": f"{r['seconds']:.1f}"})
    print(pd.DataFrame(table).to_markdown(index=False, disable_numparse=True))
    for against, scores in compare(rows).items():
        parts = [f"{'bF1' if m == 'F1' else m} {mean:+.3f} ({low:+.3f} to {high:+.3f}) {verdict}"
                 for m, (mean, low, high, verdict) in scores.items()]
        paired = "paired by fit seed" if against == "weight 0" else "best PCA row"
        print(f"  phyvae-dash vs {against} ({paired}): " + "; ".join(parts))


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=256, help="phantom side in pixels")
    parser.add_argument("--quick", action="store_true", help="128 px phantoms")
    parser.add_argument("--kinds", default=",".join(pvd.synthetic.KINDS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reference", action="store_true",
                        help="also the authors' multiplicative boundary term")
    parser.add_argument("--epochs", type=int, default=None, help="override the epochs")
    parser.add_argument("--repeats", type=int, default=1,
                        help="fit seeds per VAE method (scores averaged)")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="override a fit setting of every kind (VALUE read as JSON, "
                             "e.g. --set boundary_weight=3 --set 'boundary_ramp=[0.25,0.5]')")
    parser.add_argument("--phantom", action="append", default=[], metavar="NAME=VALUE",
                        help="set a phantom argument of every kind (VALUE read as JSON, "
                             "e.g. --phantom dose=20)")
    parser.add_argument("--low-snr", action="store_true",
                        help="also run every kind at low-dose noise (LOW_SNR: per-pixel "
                             "SNR about 1.5) and print a second table")
    args = parser.parse_args(argv)
    size = 128 if args.quick else args.size
    overrides = _parse_settings(args.set)
    if overrides:
        print("fit settings overridden:", overrides)
    phantom_overrides = _parse_settings(args.phantom)
    if phantom_overrides:
        print("phantom settings:", phantom_overrides)
    results = {}
    for kind in args.kinds.split(","):
        settings = PRESETS[kind]
        noises = [("", phantom_overrides)]
        if args.low_snr:
            noises.append((" low-snr", {**LOW_SNR[kind], **phantom_overrides}))
        for suffix, phantom_settings in noises:
            rows = run_kind(kind, size, args.seed, args.reference, args.epochs, args.repeats,
                            overrides, phantom_settings)
            print_table(kind, size, rows, settings, phantom_settings)
            results[kind + suffix] = rows
    print("\nARI: adjusted Rand index; bF1: boundary F1 (tolerance 1 grid step); "
          "len: predicted over true boundary length on the patch-centre grid.")
    return results


def _parse_settings(items: list) -> dict:
    """``["NAME=VALUE", ...]`` -> dict, each VALUE read as JSON (else kept a string)."""
    out = {}
    for item in items:
        name, _, value = item.partition("=")
        try:
            out[name] = json.loads(value)
        except json.JSONDecodeError:
            out[name] = value  # a bare string such as prior
    return out


if __name__ == "__main__":
    main()
