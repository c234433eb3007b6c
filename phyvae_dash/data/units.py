"""Physical units, through one `pint` registry for the whole package.

Files spell units every way (``"um"``, ``"micron"``, ``"μm"`` with a Greek mu,
``"degrees"``, ``"Angstrom"``); the data layer stores one spelling, pint's short form
(``"µm"``, ``"deg"``, ``"Å"``), so that the rest of the package compares strings.

Two microscopy conventions differ from pint's defaults: ``"A"`` on a length axis is an
ångström (pint reads an ampere), and ``"px"`` is a scan pixel, a unit of its own (pint
reads a printing pixel, 1/96 inch).

Examples
--------
>>> clean_units("micron"), clean_units("Angstrom"), clean_units("degrees"), clean_units("a.u.")
('µm', 'Å', 'deg', 'a.u.')
>>> readable_length([0.0, 2e-6])
(array([0., 2.]), 'µm')
>>> to_radians("deg") == np.pi / 180
True
"""
from __future__ import annotations

import re

import numpy as np
import pint

__all__ = ["UREG", "clean_units", "is_length", "is_angle", "to_radians", "readable_length",
           "convert"]

UREG = pint.UnitRegistry(on_redefinition="ignore")
UREG.define("scan_pixel = [scan_pixel] = px = pixel = pixels")

# Spellings pint does not parse (or parses as something else) in microscopy files.
_ALIASES = {"a": "angstrom", "micron": "micrometer", "microns": "micrometer", "°": "degree",
            "<undefined>": ""}
_COMPACT_LENGTHS = ("pm", "nm", "µm", "mm", "m")
# pint counts angles as dimensionless, like counts and ratios: name them.
_ANGLES = {"radian", "degree", "milliradian", "microradian", "arcminute", "arcsecond", "turn"}
# What a unit can look like; anything else ("a.u.", "arb. units") is a label, not parsed.
_UNIT_TEXT = re.compile(r"^[A-Za-z\u00b5\u03bc\u00c5\u00b0/*^ 0-9\-]+$")


def _unit(units) -> pint.Unit | None:
    """The pint unit of a spelling, or None for a label pint does not know (``"a.u."``)."""
    text = _text(units)
    if not text:
        return None
    text = _ALIASES.get(text.lower(), text)
    if not _UNIT_TEXT.match(text):
        return None
    for spelling in (text, text.lower()):  # "Angstrom", "Nanometer"
        try:
            return UREG.Unit(spelling)
        except (pint.errors.UndefinedUnitError, pint.errors.DefinitionSyntaxError, ValueError,
                AttributeError, TypeError, AssertionError):
            continue
    return None


def _text(units) -> str:
    if units is None:
        return ""
    if isinstance(units, bytes):
        units = units.decode(errors="replace")
    text = str(units).strip()
    if text.lower() == "none":
        return ""
    # Reciprocal lengths of detector axes: "nm-1", "nm⁻¹" and "A^-1" (an ångström).
    text = text.replace("\u207b\u00b9", "^-1")
    text = re.sub(r"^([A-Za-z\u00b5\u00c5]+)-1$", r"\1^-1", text)
    text = re.sub(r"\bA\b", "angstrom", text) if text != "A" else text
    return _ALIASES.get(text, text)


def clean_units(units) -> str:
    """One spelling for a unit (pint's short form); an unknown label is kept as it is."""
    unit = _unit(units)
    if unit is None:
        return _text(units)
    return f"{unit:~P}"


def is_length(units) -> bool:
    """Whether ``units`` is a physical length (not pixels)."""
    unit = _unit(units)
    return unit is not None and unit.dimensionality == UREG.meter.dimensionality


def is_angle(units) -> bool:
    """Whether ``units`` is an angle (degrees, radians, ...)."""
    unit = _unit(units)
    return unit is not None and str(unit) in _ANGLES


def to_radians(units) -> float:
    """How many radians one ``units`` is (``"deg"`` -> pi/180); raises for non-angles."""
    if not is_angle(units):
        raise ValueError(f"{units!r} is not an angle unit")
    return float((1 * _unit(units)).to(UREG.radian).magnitude)


def convert(value, units, to: str) -> float:
    """``value`` in ``units`` expressed in ``to`` (``convert(2, "µm", "nm") == 2000``)."""
    return float(UREG.Quantity(value, _unit(units)).to(_unit(to)).magnitude)


def readable_length(values, units: str = "m") -> tuple[np.ndarray, str]:
    """Lengths in the prefix that puts their largest between 1 and 1000 (2e-6 m -> 2 µm)."""
    values = np.asarray(values, dtype=float)
    extent = float(np.nanmax(np.abs(values))) if values.size else 0.0
    if extent == 0.0 or not np.isfinite(extent):
        return values, clean_units(units)
    metres = convert(extent, units, "m")
    target = next((u for u in reversed(_COMPACT_LENGTHS) if metres >= convert(1, u, "m")),
                  _COMPACT_LENGTHS[0])
    return values * convert(1, units, target), target
