"""Input transforms (MINIMAL PLACEHOLDER written by the models engineer so that `fit`
runs; the features engineer owns this file and replaces it, keeping `Inputs` and
`prepare_inputs`)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xarray as xr

from ..data.patches import extract_patches
from ..errors import SettingsError

TRANSFORMS = ("auto", "patch")


@dataclass
class Inputs:
    """Model inputs on the patch-centre grid."""

    data: np.ndarray        # float32 (n_y, n_x, *feature_shape)
    y: xr.DataArray
    x: xr.DataArray
    transform: str
    reason: str = ""


def prepare_inputs(image: xr.DataArray, patch_size: int, stride: int = 1,
                   transform: str = "auto") -> Inputs:
    """Min-max normalised patches ``(n_y, n_x, C, p, p)``."""
    if transform not in TRANSFORMS:
        raise SettingsError(f"transform must be one of {TRANSFORMS}, not {transform!r}")
    patches = extract_patches(image, patch_size, stride, normalization="minmax")
    data = np.asarray(patches.data, dtype=np.float32)
    if data.ndim == 4:
        data = data[:, :, None]
    else:
        data = np.moveaxis(data, -1, 2)
    return Inputs(np.ascontiguousarray(data), patches["y"], patches["x"], "patch",
                  "placeholder: only patch inputs" if transform == "auto" else "chosen by the user")
