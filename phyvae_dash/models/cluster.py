"""Which dask scheduler runs a computation: the ``scheduler=`` of every dask entry point.

``scheduler`` may be

* ``None``: dask's default (an active ``distributed.Client`` if there is one, else threads);
* a local scheduler's name: ``"threads"``, ``"processes"``, ``"sync"``;
* the address of a running cluster, ``"tcp://host:8786"`` (connected for the call and
  closed afterwards; an unreachable address raises `SettingsError` within
  `CONNECT_TIMEOUT_S` seconds);
* a ``distributed.Client`` or a ``LocalCluster`` (a client is made for it).

Examples
--------
>>> import dask.array as da
>>> with compute_kwargs("sync") as kw:
...     int(da.ones(4, chunks=2).sum().compute(**kw))
4
"""
from __future__ import annotations

from contextlib import contextmanager

from ..errors import SettingsError

__all__ = ["compute_kwargs", "connect", "CONNECT_TIMEOUT_S", "LOCAL_SCHEDULERS"]

LOCAL_SCHEDULERS = ("threads", "threading", "processes", "multiprocessing", "sync",
                    "synchronous", "single-threaded")
CONNECT_TIMEOUT_S = 5
_ADDRESS_PREFIXES = ("tcp://", "tls://", "inproc://", "ucx://", "ws://", "wss://")


def connect(address: str, timeout: float = CONNECT_TIMEOUT_S):
    """A ``distributed.Client`` to the scheduler at ``address``, or `SettingsError`."""
    from distributed import Client

    try:
        return Client(address, timeout=f"{timeout}s", set_as_default=False)
    except (OSError, TimeoutError) as err:
        raise SettingsError(
            f"cannot reach the dask scheduler at {address!r} within {timeout:g} s "
            f"({type(err).__name__}: {err}); check that `dask scheduler` runs there and "
            "that the port is open, or pass scheduler=None to compute on this machine") from None


@contextmanager
def compute_kwargs(scheduler=None):
    """Keyword arguments for ``dask.compute`` (and ``.compute()``) that use ``scheduler``.

    Yields ``{}`` (dask's default), ``{"scheduler": name}`` or
    ``{"scheduler": client}``; a client opened here is closed on exit.
    """
    if scheduler is None:
        yield {}
        return
    if isinstance(scheduler, str):
        if scheduler in LOCAL_SCHEDULERS:
            yield {"scheduler": scheduler}
            return
        if not scheduler.startswith(_ADDRESS_PREFIXES):
            raise SettingsError(f"scheduler must be None, one of {LOCAL_SCHEDULERS}, an address "
                                f"such as 'tcp://host:8786' or a distributed.Client; got {scheduler!r}")
        client = connect(scheduler)
        try:
            yield {"scheduler": client}
        finally:
            client.close()
        return
    from distributed import Client

    if isinstance(scheduler, Client):
        yield {"scheduler": scheduler}
        return
    if hasattr(scheduler, "scheduler_address"):  # a LocalCluster or another cluster object
        client = Client(scheduler, set_as_default=False)
        try:
            yield {"scheduler": client}
        finally:
            client.close()
        return
    raise SettingsError(f"scheduler {scheduler!r} is not a scheduler name, address, Client or cluster")


def client_of(kwargs: dict):
    """The ``distributed.Client`` in `compute_kwargs`' output, or None (local schedulers)."""
    scheduler = kwargs.get("scheduler")
    if scheduler is not None and not isinstance(scheduler, str):
        return scheduler
    if scheduler is None:
        try:
            from distributed import default_client

            return default_client()
        except (ImportError, ValueError):
            return None
    return None
