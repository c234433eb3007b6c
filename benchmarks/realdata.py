"""phyvae-dash on the real experimental files: one table, one row per file and input.

Run from the repository root (the files are read from ``../shared/data`` or from the
folder given with ``--data``)::

    python benchmarks/realdata.py            # default settings (automatic epochs)
    python benchmarks/realdata.py --quick    # 10 epochs per fit: a smoke test

Every row is ``load`` -> :func:`phyvae_dash.analysis.realdata.prepare` (the default
preprocessing: scan-line levelling of SPM channels except phases, a plane removed from
topography, outliers clipped, images over 256 px binned) -> ``fit`` with
:func:`~phyvae_dash.analysis.realdata.recommended_settings` and every other setting at
its default -> ``segment`` (number of domains by BIC). Columns:

* ``fit s``: wall time of ``fit``; ``domains``: the number BIC chose;
* ``walls``: total boundary length of those domains, in the file's physical units;
* ``ARI 2``: PFM only, adjusted Rand index between a two-domain k-means segmentation
  of the latents and the two-level phase channel
  (:func:`~phyvae_dash.analysis.realdata.phase_domains`, sampled at the patch centres);
* ``ARI merged``: PFM only, the same for the BIC domains after each has been given
  its majority phase level (domains that split a polarisation into ferroelastic twins
  are not penalised, domains that cut across 180° walls are);
* ``check``: the physics check of other files (the IV map: intersection over union of
  the highest-current domain with the same number of highest-current positions, and
  its value for a random domain of that size).

Amplitude-only rows show what amplitude can and cannot see: the piezoresponse
magnitude is the same for both polarisations, so it cannot reproduce the 180° domains.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

import phyvae_dash as pvd
from phyvae_dash.analysis import realdata as rd

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

#: (label, file, channels to load or None for all, kind of check)
CASES = [
    ("PZT PFM", "pfm/PZT_final0001.h5", ["AmplitudeRetrace", "PhaseRetrace"], "phase"),
    ("PZT PFM", "pfm/PZT_final0001.h5", ["AmplitudeRetrace"], "phase"),
    ("PZT PFM", "pfm/PZT_final0001.h5", ["PhaseRetrace"], "phase"),
    ("PTO PFM", "pfm/PTO_Funakubo0002.h5", ["AmplitudeRetrace", "PhaseRetrace"], "phase"),
    ("SingFreqPFM", "pfm/SingFreqPFM_0003.h5", ["AmplitudeRetrace", "PhaseRetrace"], "phase"),
    ("SingFreqPFM", "pfm/SingFreqPFM_0003.h5", ["AmplitudeRetrace"], "phase"),
    ("BiFeO3 IV map", "spectral/bfo_iv_final.hf5", None, "current"),
    ("MoS2 HAADF", "stem/MoS2_stem_Exp-001-5.npy", None, None),
    ("DM3 image", "formats/test_dm_image_um_unit.dm3", None, None),
]

#: Short names of the preprocessing steps for the table.
SHORT = {"flatten": "plane", "correct_scan_lines": "lines", "clip_outliers": "clip",
         "downsample": "bin"}


def _short_steps(image) -> str:
    steps = []
    for step in image.attrs.get("preprocessing", []):
        name = step.split("(")[0]
        label = SHORT.get(name, name)
        if name == "downsample":
            label += step[step.index("=") + 1:-1]
        steps.append(label)
    return "+".join(steps) or "-"


def run_case(data: Path, label: str, file: str, channels, check, epochs=None, seed=0) -> dict:
    """Load, preprocess, fit and segment one file; return one table row."""
    path = data / file
    image = rd.prepare(pvd.load(path, channel=channels))
    settings = rd.recommended_settings(image)
    t0 = time.perf_counter()
    result = pvd.fit(image, **settings, epochs=epochs, seed=seed)
    fit_s = time.perf_counter() - t0
    labels = pvd.segment(result, criterion="bic")
    walls = pvd.boundary_length(labels)
    row = {
        "data": label,
        "channels": "+".join(c.replace("Retrace", "") for c in channels) if channels else
        str(image.attrs.get("long_name") or image.name),
        "prep": _short_steps(image),
        "input": f"{result.attrs['transform']} p{settings['patch_size']}/s{settings['stride']}",
        "grid": f"{result.sizes['y']}x{result.sizes['x']}",
        "epochs": result.attrs["epochs"],
        "fit s": fit_s,
        "domains": labels.attrs["n_domains"],
        "walls": f"{float(walls):.3g} {walls.units}",
        "ARI 2": "", "ARI merged": "", "check": "",
    }
    if check == "phase":
        reference = rd.phase_domains(pvd.load(path))
        two = pvd.segment(result, n_domains=2, method="kmeans")
        row["ARI 2"] = f"{rd.reference_agreement(two, reference)['ari']:.2f}"
        row["ARI merged"] = f"{rd.reference_agreement(labels, reference)['ari_merged']:.2f}"
    elif check == "current":
        wall = rd.high_signal_domain(labels, image.mean(image.dims[2]))
        row["check"] = (f"walls: IoU {wall['iou']:.2f} (chance {wall['iou_chance']:.2f}), "
                        f"{100 * wall['area_fraction']:.0f}% of area")
    return row


def print_table(rows: list[dict]) -> None:
    print(pd.DataFrame(rows).to_markdown(index=False, floatfmt=".1f"))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA,
                        help="folder holding the real files (default ../shared/data)")
    parser.add_argument("--quick", action="store_true", help="10 epochs per fit")
    parser.add_argument("--epochs", type=int, default=None,
                        help="epochs per fit (default: fit's automatic rule)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if not args.data.is_dir():
        raise SystemExit(f"no data folder {args.data}; pass --data")
    epochs = 10 if args.quick else args.epochs
    rows = []
    for case in CASES:
        try:
            rows.append(run_case(args.data, *case, epochs=epochs, seed=args.seed))
        except Exception as exc:  # a failing file must not hide the others' rows
            print(f"{case[0]} {case[2]}: FAILED: {type(exc).__name__}: {exc}")
    if rows:
        print_table(rows)
    import torch
    print(f"\ntorch {torch.__version__}, {torch.get_num_threads()} threads, seed {args.seed}, "
          f"numpy {np.__version__}")


if __name__ == "__main__":
    main()
