"""Model weights as safetensors, with the model's JSON config in the metadata.

Nothing is pickled: a file (or bytes sent to another process or a dask worker) holds
the tensors and the config that `registry.build_model` rebuilds the model from.
"""
from __future__ import annotations

import json
from pathlib import Path

from ..errors import DataError
from .registry import build_model


def save_weights(model, path) -> Path:
    """Write ``model``'s weights as safetensors with its JSON config in the metadata."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(tensors, str(path), metadata={"format": "phyvae-dash", "config": json.dumps(model.config)})
    return Path(path)


def load_weights(path):
    """Rebuild a model from a safetensors file written by `save_weights` (CPU)."""
    from safetensors import safe_open
    from safetensors.torch import load_file


    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    if "config" not in meta:
        raise DataError(f"{path} has no model config in its metadata; not a phyvae-dash weights file")
    model = build_model(json.loads(meta["config"]))
    model.load_state_dict(load_file(str(path)))
    return model.eval()


def weights_to_bytes(model) -> bytes:
    """``model``'s weights and config as safetensors bytes (to send to another process)."""
    from safetensors.torch import save

    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    return save(tensors, metadata={"format": "phyvae-dash", "config": json.dumps(model.config)})


def model_from_bytes(data: bytes):
    """Rebuild a model (on the CPU) from `weights_to_bytes`'s output."""
    from safetensors.torch import load


    # The metadata sits in the header: 8 bytes of little-endian length, then JSON.
    header = json.loads(data[8:8 + int.from_bytes(data[:8], "little")])
    model = build_model(json.loads(header["__metadata__"]["config"]))
    model.load_state_dict(load(data))
    return model.eval()
