"""Fits in a worker process, so that training never holds the dashboard server's GIL.

A fit in a thread of the server process competes with the Bokeh event loop for the
GIL: between two torch operations the training runs Python, and every widget message
the loop handles waits for it (a round-trip of 300-340 ms while training, 135 ms
idle, on two cores). In its own process, training shares only the CPU cores.

:class:`FitWorker` is one long-lived process that runs `phyvae_dash.fit` calls, one at
a time, for one dashboard session. :meth:`FitWorker.fit` has `fit`'s signature and
blocks its caller (the store's job thread) until the fit finishes; meanwhile it
forwards the per-epoch progress to ``callback`` in the caller's thread, stops the
fit when ``cancel`` is set, re-issues the fit's warnings and re-raises its errors.
The trained model comes back as safetensors bytes (no pickle of torch objects) and is
registered here under the result's ``model_id``, so ``result.pvd`` works as after an
in-process fit.

Starting a process imports torch (seconds): :func:`acquire` starts one when a
session opens, or hands out a warmed-up spare where a server asked for spares
(:func:`prestart`, which ``phyvae-dash serve`` calls).
"""
from __future__ import annotations

import atexit
import logging
import os
import secrets
import subprocess
import sys
import threading
import warnings
import weakref
from multiprocessing.connection import Client, Listener

log = logging.getLogger(__name__)

#: Seconds between two checks of the cancel token while waiting for the worker.
POLL_S = 0.05
#: Scheduling priority of the worker process (POSIX nice increment; 19 is the lowest).
WORKER_NICENESS = 10
#: The worker learns the secret that authenticates its connection from this variable.
_KEY_VARIABLE = "PHYVAE_DASH_WORKER_KEY"


class _CancelMessages:
    """The worker's cancel token: set once the server sends ``("cancel", job_id)``."""

    def __init__(self, connection, job_id: int):
        self._connection, self._job_id, self._set = connection, job_id, False

    def is_set(self) -> bool:
        try:
            while not self._set and self._connection.poll():
                self._set = self._connection.recv() == ("cancel", self._job_id)
        except (EOFError, OSError):  # the server went away: nobody waits for this fit
            self._set = True
        return self._set


def main(address: str):
    """Body of the worker process: answer fit requests until the connection closes."""
    connection = Client(address, authkey=bytes.fromhex(os.environ.pop(_KEY_VARIABLE)))
    import torch

    import phyvae_dash as pvd
    from phyvae_dash.models import persist

    # Leave a core to the server: its event loop draws what this process sends. And
    # yield the CPU to it (and to a browser on the same machine) whenever they need it:
    # a widget's answer waits for them, the fit only runs a little longer.
    torch.set_num_threads(max(1, (os.cpu_count() or 2) - 1))
    if hasattr(os, "nice"):
        os.nice(WORKER_NICENESS)
    connection.send(("ready",))
    while True:
        try:
            message = connection.recv()
        except (EOFError, OSError):
            return
        if message[0] == "cancel":
            continue  # for a fit that had finished already
        job_id, image, kwargs = message
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                result = pvd.fit(image, **kwargs, cancel=_CancelMessages(connection, job_id),
                                 callback=lambda progress: connection.send(("progress", job_id, progress)))
            except Exception as error:  # sent back and raised in the server
                try:
                    connection.send(("error", job_id, error, warnings_to_send(caught)))
                except Exception:  # an error that does not pickle: its text does
                    connection.send(("error", job_id, RuntimeError(f"{type(error).__name__}: {error}"),
                                     warnings_to_send(caught)))
                continue
        entry = persist.get_entry(result.attrs["model_id"])
        inputs = None if entry.inputs is None else entry.inputs.detach().float().cpu().numpy()
        connection.send(("done", job_id, result, persist.weights_to_bytes(entry.model),
                         inputs, entry.grid_shape, warnings_to_send(caught)))


def warnings_to_send(caught) -> list:
    """Recorded warnings as picklable ``(category, text)`` pairs (see `take_outcome`)."""
    return [(w.category, str(w.message)) for w in caught]


def _import_path() -> str:
    """PYTHONPATH for the worker: where this process found phyvae_dash comes first (so the
    worker runs the same code, installed or not), then the caller's own setting."""
    package_parent = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return os.pathsep.join(p for p in (package_parent, os.environ.get("PYTHONPATH")) if p)


class FitWorker:
    """A process that runs a session's fits; see the module's docstring.

    Examples
    --------
    >>> import phyvae_dash as pvd
    >>> from phyvae_dash.app.worker import FitWorker
    >>> image = pvd.synthetic.make("pfm_labyrinth", shape=(48, 48))["image"]
    >>> with FitWorker() as worker:
    ...     result = worker.fit(image, patch_size=8, stride=4, epochs=2)
    >>> result.z_mean.dims
    ('latent', 'y', 'x')
    """

    def __init__(self):
        # A fresh interpreter (not fork, not multiprocessing's spawn): a fork would copy
        # the server's threads half-made, and spawn re-runs the user's main script.
        key = secrets.token_bytes(32)
        self._listener = Listener(authkey=key)
        self._process = subprocess.Popen(
            [sys.executable, "-c", "import sys; from phyvae_dash.app.worker import main; main(sys.argv[1])",
             str(self._listener.address)],
            env={**os.environ, _KEY_VARIABLE: key.hex(), "PYTHONPATH": _import_path()})
        self._connection = None
        self._connected = threading.Event()
        threading.Thread(target=self._accept, name="phyvae-dash-worker-accept", daemon=True).start()
        _running.add(self)
        self._lock = threading.Lock()
        self._ready = False
        self._jobs = 0
        self._cancelled: set[int] = set()

    def _accept(self):
        try:
            self._connection = self._listener.accept()
        except OSError:  # closed before the worker connected
            pass
        finally:
            self._listener.close()
            self._connected.set()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def alive(self) -> bool:
        return self._process.poll() is None

    def close(self):
        """Stop the process (a running fit is abandoned)."""
        self._listener.close()
        if self._connection is not None:
            self._connection.close()
        if self.alive:
            self._process.terminate()
        try:
            self._process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._process.kill()

    def _check_alive(self):
        if not self.alive:
            from phyvae_dash.errors import PhyvaeDashError
            raise PhyvaeDashError(f"the training process stopped unexpectedly "
                                  f"(exit code {self._process.returncode})")

    def _receive(self, job_id=None, cancel=None):
        """The next message; asks the worker to stop the fit once ``cancel`` is set."""
        while True:
            if cancel is not None and cancel.is_set() and job_id not in self._cancelled:
                self._connection.send(("cancel", job_id))  # the fit stops within an epoch
                self._cancelled.add(job_id)
            if self._connection.poll(POLL_S):
                return self._connection.recv()
            self._check_alive()

    def _start(self):
        while not self._connected.wait(POLL_S):
            self._check_alive()
        self._check_alive()
        self._receive()  # "ready": torch and the package are imported
        self._ready = True

    def fit(self, image, *, callback=None, cancel=None, **kwargs):
        """`phyvae_dash.fit` in the worker process; same arguments and result."""
        with self._lock:
            if not self._ready:
                self._start()
            self._jobs += 1
            job_id = self._jobs
            self._connection.send((job_id, image, kwargs))
            while True:
                kind, message_job, *payload = self._receive(job_id, cancel)
                if message_job != job_id:
                    continue  # the tail of an earlier job
                if kind == "progress":
                    if callback is not None:
                        callback(payload[0])
                    continue
                return take_outcome(kind, payload)


_running: "weakref.WeakSet[FitWorker]" = weakref.WeakSet()


@atexit.register
def _close_all():
    for fit_worker in list(_running):
        fit_worker.close()


def _rewarn(caught):
    for category, text in caught:
        warnings.warn(text, category, stacklevel=4)


def take_outcome(kind: str, payload) -> "xr.Dataset":
    """What a fit run elsewhere (this module's process, or the pool's) sent back when it
    ended: its warnings are issued again here, an error is raised, and a result's model
    is registered in this process, so that ``result.pvd`` works."""
    import torch  # not at import time: the dashboard starts before torch is needed

    from phyvae_dash.models import persist

    if kind == "error":
        error, caught = payload
        _rewarn(caught)
        raise error
    result, weights, inputs, grid_shape, caught = payload
    _rewarn(caught)
    model = persist.model_from_bytes(weights)
    if inputs is not None:
        inputs = torch.from_numpy(inputs)
    persist.register(result.attrs["model_id"], model, inputs=inputs, grid_shape=grid_shape)
    return result


_spare: FitWorker | None = None
_spare_lock = threading.Lock()


def acquire() -> FitWorker:
    """A started worker for a new session.

    After :func:`prestart` (a server that expects sessions calls it), a warmed-up spare
    is handed out and the next one starts in the background; otherwise a new worker
    starts now (importing torch takes a few seconds, while the page renders). An idle
    worker holds a few hundred MB, so spares are kept only where asked for.
    """
    global _spare
    with _spare_lock:
        worker, _spare = _spare, None
        if worker is None or not worker.alive:
            return FitWorker()
        _spare = FitWorker()
        return worker


def prestart():
    """Keep a spare worker from now on, so that a new session's first fit starts at once."""
    global _spare
    with _spare_lock:
        if _spare is None or not _spare.alive:
            _spare = FitWorker()
