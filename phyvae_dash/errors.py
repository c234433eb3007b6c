"""Exceptions a user can meet, each naming what went wrong and how to fix it."""


class PhyvaeDashError(Exception):
    """Base class of every error phyvae-dash raises on purpose."""


class DataError(PhyvaeDashError, ValueError):
    """A file or array cannot be used: unknown format, wrong shape, NaN/Inf, ..."""


class SettingsError(PhyvaeDashError, ValueError):
    """A setting is out of range or inconsistent with the data (e.g. patch too large)."""


class FitCancelled(PhyvaeDashError):
    """Training was stopped through its cancel token."""


class FitDiverged(PhyvaeDashError, FloatingPointError):
    """Training produced NaN or Inf losses."""
