"""benchmarks/quality.py: the paired verdicts, the low-SNR noise settings, option parsing.

The benchmark itself takes minutes; these check its bookkeeping and that its low-SNR
rule (per-pixel SNR about 1.5 for every kind) holds for the settings it uses.
"""
import importlib.util
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

import phyvae_dash as pvd

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "quality.py"
_spec = importlib.util.spec_from_file_location("quality_benchmark", _PATH)
quality = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(quality)


def _row(aris, f1s):
    runs = [{"ARI": a, "F1": f} for a, f in zip(aris, f1s)]
    return {"ARI": float(np.mean(aris)), "F1": float(np.mean(f1s)), "runs": runs}


def test_verdict_needs_every_seed():
    assert quality._verdict([0.01, 0.02, 0.001]) == "beats"
    assert quality._verdict([-0.01, -0.02, -0.001]) == "loses"
    assert quality._verdict([0.03, -0.01, 0.02]) == "ties"  # mean > 0, but not every seed
    assert quality._verdict([0.0, 0.0, 0.0]) == "ties"  # equal (e.g. bF1 1.000 everywhere)


def test_compare_pairs_by_seed_and_takes_the_best_pca_row():
    rows = {
        "phyvae-dash": _row([0.90, 0.95, 0.93], [1.0, 1.0, 0.99]),
        "boundary_weight=0": _row([0.85, 0.96, 0.90], [1.0, 1.0, 0.99]),
        "PCA+GMM": {"ARI": 0.5, "F1": 0.995},
        "PCA+kmeans (inputs)": {"ARI": 0.88, "F1": 0.7},
        "grid ceiling": {"ARI": 0.99, "F1": 1.0},  # not a baseline
    }
    out = quality.compare(rows)
    mean, low, high, verdict = out["weight 0"]["ARI"]
    assert (round(low, 3), round(high, 3), verdict) == (-0.01, 0.05, "ties")
    assert round(mean, 4) == round((0.05 - 0.01 + 0.03) / 3, 4)
    assert out["weight 0"]["F1"][3] == "ties"
    # against PCA each metric takes its best row: ARI 0.88 (inputs), F1 0.995 (raw)
    assert out["PCA"]["ARI"][3] == "beats"
    assert round(out["PCA"]["ARI"][1], 3) == 0.02
    assert out["PCA"]["F1"][3] == "ties"


def test_parse_settings_reads_json_or_keeps_strings():
    assert quality._parse_settings(["dose=20", "boundary_ramp=[0.25,0.5]", "model=shift"]) == {
        "dose": 20, "boundary_ramp": [0.25, 0.5], "model": "shift"}


def _snr(kind, **noise):
    """Std of the clean modulation (slow background removed) over the noise's std."""
    quiet = ({"amplitude_noise": 0.0, "phase_noise_deg": 0.0} if kind == "pfm_labyrinth"
             else {"dose": 0, "noise": 0.0})
    clean = pvd.synthetic.make(kind, shape=(256, 256), seed=0, line_offset=0.0, **quiet).image.values
    noisy = pvd.synthetic.make(kind, shape=(256, 256), seed=0, line_offset=0.0, **noise).image.values
    if clean.ndim == 3:  # PFM: the phase channel defines the domains
        clean, noisy = clean[..., 1], noisy[..., 1]
        return float(np.std(clean) / np.std(noisy - clean))
    signal = clean - ndimage.gaussian_filter(clean, 8)
    return float(np.std(signal) / np.std(noisy - clean))


@pytest.mark.parametrize("kind", pvd.synthetic.KINDS)
def test_low_snr_settings_follow_one_rule(kind):
    assert set(quality.LOW_SNR) == set(pvd.synthetic.KINDS)
    low = _snr(kind, **quality.LOW_SNR[kind])
    assert 1.3 <= low <= 1.7, low
    assert _snr(kind) > 1.8 * low  # the defaults are a good scan
