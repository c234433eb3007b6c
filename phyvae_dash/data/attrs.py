"""``attrs`` that survive NetCDF: what may be stored, and the lists it gives back.

NetCDF stores str, numbers and 1-D arrays of one type. It has no bool, None, dict or
empty list, and it gives a one-item list back as a scalar. `encode` writes attrs in
those types and names the keys that held lists in ``attrs["list_attrs"]``; `decode`
gives those keys back as lists (bools come back as 0/1, None as "", dicts as JSON).

Examples
--------
>>> stored = encode({"preprocessing": ["flatten(order=1)"], "tags": [], "ok": True})
>>> stored["ok"], stored["list_attrs"]
(1, '["preprocessing", "tags"]')
>>> decode({**stored, "preprocessing": "flatten(order=1)", "tags": ""})["preprocessing"]
['flatten(order=1)']
"""
from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

__all__ = ["as_list", "encode", "decode", "LIST_KEYS", "metadata_summary", "flatten_metadata"]

#: The attr naming the keys that held lists.
LIST_KEYS = "list_attrs"
#: Most entries of a file's metadata kept in ``attrs["metadata"]``.
MAX_METADATA_ENTRIES = 40


def as_list(value) -> list:
    """An attr that may hold one item or many, as a list (``"a"`` -> ``["a"]``; ``""`` and
    ``None`` -> ``[]``; arrays -> lists)."""
    if value is None or (isinstance(value, str) and value == ""):
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, np.ndarray):
        return value.tolist() if value.ndim else [value.item()]
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


def encode(attrs: dict) -> dict:
    """NetCDF-safe attrs: bools as ints, None as "", dicts as JSON, sequences as lists of
    one type, and the names of the list attrs in ``attrs["list_attrs"]``."""
    out: dict[str, Any] = {}
    lists = []
    for k, v in attrs.items():
        if k == LIST_KEYS:
            continue
        if isinstance(v, (bool, np.bool_)):
            v = int(v)
        elif v is None:
            v = ""
        elif isinstance(v, (list, tuple, np.ndarray)):
            lists.append(k)
            items = v.tolist() if isinstance(v, np.ndarray) else list(v)
            v = [int(e) if isinstance(e, (bool, np.bool_)) else e for e in items]
            if not v:
                v = ""
            elif not all(isinstance(e, (int, float, np.number)) for e in v):
                # h5netcdf writes variable-length strings only from object arrays.
                v = np.array([str(e) for e in v], dtype=object)
        elif isinstance(v, dict):
            v = json.dumps(v)
        elif isinstance(v, str):
            v = str(v)  # str subclasses (torch's TorchVersion) have no NetCDF type
        out[k] = v
    if lists:
        out[LIST_KEYS] = json.dumps(lists)
    return out


def decode(attrs: dict) -> dict:
    """Attrs as read from NetCDF, with arrays as lists and the list attrs as lists."""
    out = {k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in attrs.items()}
    for key in json.loads(out.pop(LIST_KEYS, "[]") or "[]"):
        if key in out:
            out[key] = as_list(out[key])
    return out


def flatten_metadata(tree, prefix="") -> dict:
    """A nested metadata tree as one level of dotted keys ({"a": {"b": 1}} -> {"a.b": 1})."""
    flat = {}
    for key, value in (tree.items() if isinstance(tree, dict) else []):
        full = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten_metadata(value, full + "."))
        else:
            flat[full] = value
    return flat


def metadata_summary(metadata: dict) -> str:
    """A short JSON summary of the original metadata: scalars only, so NetCDF stores it."""
    flat, kept = flatten_metadata(metadata), {}
    for key, value in flat.items():
        if isinstance(value, bytes):
            value = value.decode(errors="replace")
        if isinstance(value, np.generic):
            value = value.item()
        if isinstance(value, float) and not math.isfinite(value):
            continue
        if isinstance(value, (bool, int, float)) or (isinstance(value, str) and len(value) <= 200):
            kept[key] = value
        if len(kept) >= MAX_METADATA_ENTRIES:
            break
    if len(flat) > len(kept):
        kept["entries_in_file"] = len(flat)
    return json.dumps(kept, ensure_ascii=False)
