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
time. Only the public API is used.

Usage::

    python benchmarks/quality.py [--size 256] [--quick] [--kinds graphene_grains,...]
                                 [--seed 0] [--reference] [--epochs N] [--repeats 3]

``--quick`` runs 128 x 128 phantoms (about a minute per kind on two cores).
"""
from __future__ import annotations

import argparse
import json
import time

import phyvae_dash as pvd
from phyvae_dash.analysis import metrics
from phyvae_dash.models.features import PRESETS, SEGMENT_PRESETS, preset_for


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
    """Average the scores of repeated fits; keep the spread of the ARI."""
    out = {k: sum(r[k] for r in runs) / len(runs) for k in ("ARI", "F1", "length", "seconds")}
    out["ARI_range"] = (min(r["ARI"] for r in runs), max(r["ARI"] for r in runs))
    out["transform"] = runs[0]["transform"]
    return out


def run_kind(kind: str, size: int, seed: int, reference: bool, epochs: int | None,
             repeats: int = 1, overrides: dict | None = None) -> dict:
    """Fit every method on one phantom; return ``{method: scores}``.

    VAE methods are fitted ``repeats`` times (fit seeds ``seed, seed + 1, ...``) and
    their scores averaged: a single fit's ARI varies by a few hundredths with the seed.
    """
    phantom = pvd.synthetic.make(kind, shape=(size, size), seed=seed)
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


def print_table(kind: str, size: int, rows: dict, settings: dict) -> None:
    shown = ", ".join(f"{k}={v}" for k, v in {**settings, **SEGMENT_PRESETS.get(kind, {})}.items())
    print(f"\n{kind} ({size} x {size}; preset: {shown})")
    print(f"{'method':<20}{'inputs':<11}{'ARI':>7}{'(min-max)':>13}{'bF1':>7}"
          f"{'len pred/true':>15}{'fit s':>8}")
    for name, r in rows.items():
        low, high = r.get("ARI_range", (r["ARI"], r["ARI"]))
        spread = f"{low:.2f}-{high:.2f}" if high > low else ""
        print(f"{name:<20}{r['transform']:<11}{r['ARI']:>7.3f}{spread:>13}{r['F1']:>7.3f}"
              f"{r['length']:>15.2f}{r['seconds']:>8.1f}")


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
    args = parser.parse_args(argv)
    size = 128 if args.quick else args.size
    overrides = {}
    for item in args.set:
        name, _, value = item.partition("=")
        try:
            overrides[name] = json.loads(value)
        except json.JSONDecodeError:
            overrides[name] = value  # a bare string such as prior
    if overrides:
        print("fit settings overridden:", overrides)
    results = {}
    for kind in args.kinds.split(","):
        phantom_settings = PRESETS[kind]
        rows = run_kind(kind, size, args.seed, args.reference, args.epochs, args.repeats,
                        overrides)
        print_table(kind, size, rows, phantom_settings)
        results[kind] = rows
    print("\nARI: adjusted Rand index; bF1: boundary F1 (tolerance 1 grid step); "
          "len: predicted over true boundary length on the patch-centre grid.")
    return results


if __name__ == "__main__":
    main()
