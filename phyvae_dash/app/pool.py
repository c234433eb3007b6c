"""Fits on one shared, bounded pool of processes: a `dask.distributed` cluster.

A served dashboard hands every session's fits to one :class:`FitPool`, so that an idle
session costs no process and no model memory, and the number of fits running at
once is bounded by the pool's workers. The pool is a `LocalCluster` of single-threaded
worker processes that it starts (sized to the machine), or any running cluster given
by its scheduler's address (``tcp://host:8786``), for example GPU workers on another
machine: ``phyvae-dash serve --scheduler tcp://host:8786``.

:meth:`FitPool.fit` has `phyvae_dash.fit`'s signature, and the contract of
:meth:`phyvae_dash.app.worker.FitWorker.fit`: it blocks its caller (a store's job
thread) until the fit is done, meanwhile calls ``callback`` with each epoch's
`Progress` in the caller's thread, stops the fit when ``cancel`` is set (the fit raises
`FitCancelled`), re-issues the fit's warnings and re-raises its errors. While the fit
waits for a free worker, ``waiting`` is called with the number of fits ahead of it.

How a job talks to its task (all through the scheduler, so it works for remote
workers too): the progress goes through a `distributed.Queue` named after the job
(pickled to bytes: the queue carries msgpack data), cancellation is a
`distributed.Event` of the same name that the fit's ``cancel.is_set()`` reads. The
trained model comes back as safetensors bytes and is registered here under the
result's ``model_id``, so ``result.pvd`` works as after an in-process fit.

A worker that crashes or is killed (out of memory: the nanny stops a worker over its
memory limit) fails only the fit it was running, with a
:class:`~phyvae_dash.errors.PhyvaeDashError`; the nanny starts a fresh worker, and the
pool goes on.
"""
from __future__ import annotations

import logging
import os
import pickle
import time
import uuid
import warnings

import dask
import distributed

from phyvae_dash.app import worker
from phyvae_dash.errors import FitCancelled, PhyvaeDashError

#: Seconds a job waits for a progress message before it checks its cancel token again.
POLL_S = 0.1
#: Seconds between two questions to the scheduler about a queued job's place.
POSITION_INTERVAL_S = 0.5
#: Scheduling priority of the local pool's fits (POSIX nice increment; 19 is the lowest):
#: a widget's answer waits for the server, the fit only runs a little longer.
WORKER_NICENESS = 10
#: Every fit's task key starts with this, so that the scheduler can count them.
KEY_PREFIX = "phyvae-dash-fit-"
#: Scheduler task states of a fit that has not finished.
_UNFINISHED = ("released", "waiting", "no-worker", "queued", "processing")
#: The first message of a task: the fit has started on a worker.
_STARTED = b"started"


def default_workers() -> int:
    """Worker processes of a local pool: one per two cores (each fit uses two threads)."""
    return max(1, (os.cpu_count() or 2) // 2)


class FitPool:
    """Runs `phyvae_dash.fit` calls on a `dask.distributed` cluster; see the module docstring.

    Parameters
    ----------
    scheduler : str, optional
        Address of a running scheduler (``tcp://host:8786``). When None, a
        `LocalCluster` of ``n_workers`` single-threaded processes is started, and
        closed with the pool.
    n_workers : int, optional
        Worker processes of the local cluster (default :func:`default_workers`).
        Ignored with ``scheduler``.

    Examples
    --------
    >>> import phyvae_dash as pvd
    >>> from phyvae_dash.app.pool import FitPool
    >>> image = pvd.synthetic.make("pfm_labyrinth", shape=(48, 48))["image"]
    >>> with FitPool(n_workers=1) as pool:
    ...     result = pool.fit(image, patch_size=8, stride=4, epochs=2)
    >>> result.z_mean.dims
    ('latent', 'y', 'x')

    See Also
    --------
    phyvae_dash.app.worker.FitWorker : one process for one session's fits.
    """

    def __init__(self, scheduler: str | None = None, *, n_workers: int | None = None):
        self.cluster = None
        if scheduler is None:
            n_workers = n_workers or default_workers()
            # A fit whose worker died fails at once: retrying it on another worker would
            # most likely kill that one too (out of memory), and the user is waiting.
            with dask.config.set({"distributed.scheduler.allowed-failures": 0,
                                  # each (re)started worker imports torch before it takes
                                  # a fit: the user's first fit does not wait for it
                                  "distributed.worker.preload": ["phyvae_dash.models.train"]}):
                self.cluster = distributed.LocalCluster(
                    n_workers=n_workers, threads_per_worker=1, processes=True,
                    dashboard_address=None, silence_logs=logging.ERROR)
            self._torch_threads = max(1, (os.cpu_count() or 2) // n_workers)
            self._niceness = WORKER_NICENESS
            address = self.cluster
        else:
            # Workers of someone else's cluster keep their own settings.
            self._torch_threads = self._niceness = None
            address = scheduler
        try:
            self.client = distributed.Client(address, set_as_default=False)
        except OSError as error:
            if self.cluster is not None:
                self.cluster.close()
            raise PhyvaeDashError(f"cannot reach the dask scheduler at {scheduler!r} ({error}); "
                                  f"check --scheduler, or leave it out for a local pool") from error

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        """Disconnect; and stop the local cluster, if this pool started it."""
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()

    @property
    def n_workers(self) -> int:
        return len(self.client.scheduler_info(n_workers=-1)["workers"])

    def submit(self, image, **settings) -> FitJob:
        """Queue a fit and return at once; :meth:`FitJob.result` waits for it."""
        return FitJob(self, image, settings)

    def fit(self, image, *, callback=None, cancel=None, waiting=None, **settings):
        """`phyvae_dash.fit` on the pool; same arguments and result.

        ``waiting(n)``, if given, is called in this thread with the number of fits
        ahead of this one while it waits for a worker (each time that number changes).
        """
        return self.submit(image, **settings).result(callback=callback, cancel=cancel, waiting=waiting)

    def position(self, job: FitJob) -> int:
        """How many fits submitted before ``job`` have not finished (0 once it has started)."""
        if job.started:
            return 0
        return self.client.run_on_scheduler(_fits_ahead_query(), job.key, KEY_PREFIX, _UNFINISHED)


class FitJob:
    """One fit submitted to a :class:`FitPool`."""

    def __init__(self, pool: FitPool, image, settings: dict):
        self.pool = pool
        # The submission time first: keys sort in the order the fits were submitted.
        self.key = f"{KEY_PREFIX}{time.time_ns():020d}-{uuid.uuid4().hex}"
        self.started = False
        client = pool.client
        # Made before the task, so that its first messages cannot be lost.
        self._progress = distributed.Queue(f"{self.key}-progress", client=client)
        self._cancel = distributed.Event(f"{self.key}-cancel", client=client)
        self.future = client.submit(_fit_on_worker, image, settings, self.key,
                                    pool._torch_threads, pool._niceness, key=self.key, pure=False)

    def position(self) -> int:
        """Fits ahead of this one; see :meth:`FitPool.position`."""
        return self.pool.position(self)

    def result(self, *, callback=None, cancel=None, waiting=None):
        """Wait for the fit; see :meth:`FitPool.fit`."""
        try:
            self._follow(callback, cancel, waiting)
            outcome = self.future.result()
        except distributed.client.FutureCancelledError as error:
            raise FitCancelled("fit cancelled before it started") from error
        except distributed.KilledWorker as error:
            raise PhyvaeDashError(
                "the pool's training process stopped unexpectedly during this fit (out of "
                "memory? try a smaller image, patch size or latent_dim); the pool has "
                "started a new one, the next fit will run") from error
        finally:
            self._release()
        kind, *payload = outcome
        return worker.take_outcome(kind, payload)

    def _follow(self, callback, cancel, waiting):
        """Pass on progress and cancellation until the task has finished."""
        cancelled = False
        last_position, asked_at = None, -POSITION_INTERVAL_S
        def handle(messages):
            for message in messages:
                if message == _STARTED:
                    self.started = True
                    if waiting is not None and last_position:
                        waiting(0)
                elif callback is not None:
                    callback(pickle.loads(message))

        while True:
            handle(self._messages(POLL_S))
            if cancel is not None and cancel.is_set() and not cancelled:
                cancelled = True
                self._cancel.set()  # a running fit stops within an epoch
                if not self.started:
                    self.future.cancel()  # a queued one never starts
                    raise FitCancelled("fit cancelled before it started")
            if self.future.done():
                handle(self._messages(None))  # the last epochs (and its start, if unseen)
                return
            if (waiting is not None and not self.started
                    and time.monotonic() - asked_at >= POSITION_INTERVAL_S):
                asked_at = time.monotonic()
                position = self.position()
                if position != last_position and not self.started:
                    last_position = position
                    waiting(position)

    def _messages(self, timeout):
        """What the task has sent; when nothing, wait ``timeout`` s for the task to end.

        (Not ``Queue.get(timeout=)``: the scheduler logs each such timeout as an error.)
        """
        if self._progress.qsize():
            return self._progress.get(batch=True)
        if timeout is not None and not self.future.done():
            time.sleep(timeout)
        return []

    def _release(self):
        """Free the job's queue and event on the scheduler."""
        try:
            self._progress.close()
            self._cancel.clear()  # an event nobody waits for is deleted when cleared
        except Exception:  # the scheduler is gone: nothing left to free
            pass


def _fits_ahead_query():
    """The scheduler-side count behind :meth:`FitPool.position`.

    Made inside a function so that cloudpickle sends it by value: a remote scheduler
    need not have phyvae_dash installed.
    """
    def fits_ahead(key, prefix, unfinished, dask_scheduler=None):
        mine = dask_scheduler.tasks.get(key)  # None while its submission is on the way
        if mine is not None and mine.state not in unfinished:
            return 0
        return sum(1 for task in dask_scheduler.tasks.values()
                   if isinstance(task.key, str) and task.key.startswith(prefix) and task.key != key
                   and task.state in unfinished and task.key < key)
    return fits_ahead


class _CancelEvent:
    """The fit's cancel token on a worker: the job's `distributed.Event`."""

    def __init__(self, event):
        self._event = event

    def is_set(self) -> bool:
        try:
            return self._event.is_set()
        except Exception:  # the scheduler went away: nobody waits for this fit
            return True


def _fit_on_worker(image, settings, key, torch_threads, niceness):
    """The task: `fit` on a worker, its progress and result sent back as plain data."""
    import torch

    import phyvae_dash as pvd
    from phyvae_dash.models import persist

    if torch_threads:
        torch.set_num_threads(torch_threads)
    if niceness and hasattr(os, "nice") and os.nice(0) < niceness:
        os.nice(niceness - os.nice(0))
    client = distributed.get_client()  # the worker's own client
    progress = distributed.Queue(f"{key}-progress", client=client)
    try:
        progress.put(_STARTED)
        cancel = _CancelEvent(distributed.Event(f"{key}-cancel", client=client))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                result = pvd.fit(image, **settings, cancel=cancel,
                                 callback=lambda p: progress.put(pickle.dumps(p)))
            except Exception as error:  # raised again in the caller, with the warnings
                try:
                    pickle.dumps(error)
                except Exception:  # an error that does not pickle: its text does
                    error = RuntimeError(f"{type(error).__name__}: {error}")
                return ("error", error, worker.warnings_to_send(caught))
        entry = persist.get_entry(result.attrs["model_id"])
        inputs = None if entry.inputs is None else entry.inputs.detach().float().cpu().numpy()
        return ("done", result, persist.weights_to_bytes(entry.model), inputs, entry.grid_shape,
                worker.warnings_to_send(caught))
    finally:
        progress.close()
