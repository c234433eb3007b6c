"""The dashboard's data store: the data, the settings, the running job and its results.

The store follows Panel's "structure with a data store" pattern: it is the one
place that holds state, and the views only read it (and call its few methods
when the user selects something). It holds no numerics of its own: training,
segmentation and boundaries come from :mod:`phyvae_dash`'s public API.

Threading model
---------------
Training runs in a background thread so that the browser stays responsive. Each
job gets a ``threading.Event`` as its cancel token; a newer job sets the previous
job's token, and results of a job that is no longer the current one are dropped.
In a served session or a notebook, that thread hands the fits themselves to the
session's worker process (:mod:`phyvae_dash.app.worker`): a fit in the server's
process would hold its GIL and slow every widget round-trip while it runs.
Everything the thread wants to show goes through :meth:`Store._dispatch`; the
thread itself never touches a parameter a view watches, because a view that is
being rendered at the same moment would see half an update. Where the update runs:

* in a served session: on that session's event loop, next tick (the Bokeh document
  lock is then held);
* in a notebook (an asyncio loop runs the cells): on that loop, between cells;
* with no loop at all (a script, a test): it waits in a queue until the thread that
  owns the store calls :meth:`Store.apply_updates` (:meth:`Store.wait` does).

An update that fails (a view that cannot draw something) is logged and shown as a
notification; it never stops the training.
"""
from __future__ import annotations

import asyncio
import itertools
import logging
import os
import queue
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import panel as pn
import param
import xarray as xr

import phyvae_dash as pvd
from phyvae_dash.app import worker
from phyvae_dash.data.patches import patch_centres
from phyvae_dash.errors import FitCancelled, PhyvaeDashError
from phyvae_dash.models.features import PRESETS, TRANSFORMS
from phyvae_dash.models.train import DEFAULT_BOUNDARY_WEIGHT, MODELS, pick_device

log = logging.getLogger(__name__)

#: Largest upload accepted, in bytes (the websocket limit is raised to match in app.py).
MAX_UPLOAD_BYTES = 200 * 1024**2
#: Seconds between two progress updates (epoch, losses) sent from the training callback.
PROGRESS_INTERVAL_S = 0.5
#: Seconds between two live latent-map updates: redrawing the maps and the scatter costs
#: the server's event loop a few hundred ms, which widgets must not wait for.
MAPS_INTERVAL_S = 1.5
#: The demo a dashboard opens on when it is given no image.
DEFAULT_DEMO = "pfm_labyrinth"
#: The names the settings are known by (also the keys of the settings JSON).
SETTINGS = ("channel", "patch_size", "stride", "latent_dim", "boundary_weight",
            "epochs", "model", "transform", "seed")
ALL_CHANNELS = "all channels"


def dataset_names() -> list[str]:
    """Built-in phantoms first, then the registry's other entries."""
    names = list(pvd.synthetic.KINDS)
    return names + [n for n in pvd.datasets.list_datasets() if n not in names]


def image_kind(image: xr.DataArray) -> str:
    """``"image"``, ``"channels"`` (multi-channel scan), ``"spectral"`` or
    ``"diffraction"`` (4D-STEM: a pattern per scan position; see ARCHITECTURE)."""
    if image.ndim == 2:
        return "image"
    if image.ndim == 4:
        return "diffraction"
    return "channels" if image.dims[2] == "channel" else "spectral"


#: Longest time (s) a thread holds the GIL before Python hands it over (default 5 ms).
SERVER_SWITCH_INTERVAL_S = 0.001


def _leave_a_core_for_the_server():
    """Keep the server's event loop (widgets, plots) responsive while a fit runs.

    Training uses one core fewer than the machine has; and the GIL changes hands more
    often: between two torch ops the training thread runs Python, and the event loop,
    which gives the GIL up at every socket read and write, would otherwise wait up to
    5 ms each time to get it back (tens of times for one widget message). Both are
    process-wide settings, made only in a server.
    """
    import os
    import sys

    import torch
    threads = max(1, (os.cpu_count() or 2) - 1)
    if torch.get_num_threads() > threads:
        torch.set_num_threads(threads)
    if sys.getswitchinterval() > SERVER_SWITCH_INTERVAL_S:
        sys.setswitchinterval(SERVER_SWITCH_INTERVAL_S)


@dataclass
class Job:
    """One training run: its settings, cancel token and thread."""

    id: int
    key: tuple
    settings: dict
    image: xr.DataArray
    compare: bool
    n_domains: int | None
    cancel: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None
    previous: "Job | None" = None
    losses: dict = field(default_factory=dict)
    last_update: float = 0.0
    last_maps: float = 0.0
    started: float = field(default_factory=time.perf_counter)


@dataclass
class Outcome:
    """What a finished job produced; cached by settings so that it is not recomputed."""

    result: xr.Dataset
    baseline: xr.Dataset | None = None
    inputs: np.ndarray | None = None         # model inputs (n_y, n_x, *feature_shape)
    reconstruction: np.ndarray | None = None  # same shape as inputs
    manifold: xr.DataArray | np.ndarray | None = None
    segmentations: dict = field(default_factory=dict)  # n_domains -> labels, walls, lengths
    partial: bool = False  # only the fit (a comparison run): inputs, reconstruction still to do


AUTO_REASONS = "_auto_reasons"


def automatic_settings(image: xr.DataArray) -> dict:
    """The settings `pvd.choose_settings` picks for ``image`` that the dashboard has
    controls for, clipped to the controls' ranges, with the reasons under
    `AUTO_REASONS`; ``{}`` when the image is too small for automatic settings (the
    controls then keep their values)."""
    try:
        choice = pvd.choose_settings(image)
    except PhyvaeDashError as error:
        log.info("no automatic settings: %s", error)
        return {}
    chosen = {k: v for k, v in choice.fit_kwargs().items() if k in SETTINGS}
    for name in ("patch_size", "stride", "latent_dim"):
        low, high = Store.param[name].bounds
        chosen[name] = int(min(max(chosen[name], low), high))
    return {**chosen, AUTO_REASONS: choice.reason_list()}


class Store(param.Parameterized):
    """State of one dashboard session: data, settings, the running job and its results.

    Parameters
    ----------
    image : xarray.DataArray, optional
        The image to open on (any DataArray the data layer produces). Without one
        the store loads the built-in demo (:data:`DEFAULT_DEMO`).
    auto_train : bool
        Retrain as soon as a setting changes (the dashboard's behaviour).

    Examples
    --------
    >>> store = Store(auto_train=False)
    >>> store.patch_size, store.epochs = 8, 2
    >>> store.train(); store.wait()
    True
    >>> store.result.z_mean.dims
    ('latent', 'y', 'x')
    """

    # ---- data
    source = param.String(default="", doc="Where the data came from (dataset name or file).")
    data = param.ClassSelector(class_=xr.DataArray, doc="The loaded data, all channels.")
    truth = param.ClassSelector(class_=xr.DataArray, doc="A phantom's true labels, if any.")
    channel = param.Selector(default=ALL_CHANNELS, objects=[ALL_CHANNELS],
                             doc="Which channel of a multi-channel scan is used.")
    virtual_detector = param.Selector(default="adf", objects=["adf", "bf"],
                                      doc="4D-STEM: the virtual detector of the image shown.")

    # ---- settings (a change retrains, unless the result is cached)
    patch_size = param.Integer(default=16, bounds=(1, 128),
                               doc="Patch side; 1 (spectra, 4D-STEM): each position's own input.")
    stride = param.Integer(default=4, bounds=(1, 64))
    latent_dim = param.Integer(default=2, bounds=(1, 8))
    boundary_weight = param.Number(default=DEFAULT_BOUNDARY_WEIGHT, bounds=(0, None))
    epochs = param.Integer(default=None, allow_None=True, bounds=(1, 1000),
                           doc="Training epochs; None lets `fit` choose from the data size.")
    model = param.Selector(default="vae", objects=list(MODELS))
    transform = param.Selector(default="auto", objects=list(TRANSFORMS))
    seed = param.Integer(default=0)
    n_domains = param.Integer(default=None, allow_None=True, bounds=(1, 12),
                              doc="Number of domains; None chooses it automatically.")
    compare = param.Boolean(default=False, doc="Also fit with boundary_weight=0.")
    auto_train = param.Boolean(default=True)
    runner = param.Selector(default="auto", objects=["auto", "pool", "process", "thread"], constant=True,
                            doc="Where fits run: the server's shared pool, a worker process, or a "
                                "thread of this process; auto: the pool when one is given, else a "
                                "process in a served session or a notebook (so that training never "
                                "holds the GIL the widgets need), else a thread.")
    pool = param.Parameter(default=None, constant=True,
                           doc="A shared `phyvae_dash.app.pool.FitPool` (one per server) that runs "
                               "the fits; the store then holds no process of its own.")

    # ---- the running job
    running = param.Boolean(default=False, constant=False)
    status = param.String(default="idle")
    epoch = param.Integer(default=0)
    epochs_total = param.Integer(default=0)
    eta_s = param.Number(default=None, allow_None=True)
    elapsed_s = param.Number(default=None, allow_None=True)
    losses = param.Dict(default={}, doc="Per-epoch losses of the current job, by name.")
    jobs_started = param.Integer(default=0, doc="How many trainings were started.")
    cache_hits = param.Integer(default=0)

    # ---- what the views show
    z_maps = param.ClassSelector(class_=xr.DataArray, doc="Latent maps (latent, y, x), live.")
    grid = param.ClassSelector(class_=xr.DataArray,
                               doc="The patch-centre grid (y, x) of z_maps; changes only with it, "
                                   "so that overlays that need only positions do not redraw.")
    result = param.ClassSelector(class_=xr.Dataset)
    outcome = param.ClassSelector(class_=Outcome)
    labels = param.ClassSelector(class_=xr.DataArray)
    boundaries = param.ClassSelector(class_=xr.DataArray)
    boundary_len = param.Parameter(default=None, doc="Total boundary length (a Length).")
    baseline_labels = param.ClassSelector(class_=xr.DataArray)
    baseline_len = param.Parameter(default=None, doc="Boundary length of the weight-0 fit.")
    transform_info = param.String(default="")
    auto_settings = param.Dict(default={}, doc="The settings chosen from the current data "
                               "(`choose_settings`): what `use_automatic` returns to.")
    auto_reasons = param.List(default=[], item_type=str,
                              doc="Why each automatic setting was chosen, one line each.")
    selection = param.Array(default=None, allow_None=True,
                            doc="Boolean mask (n_y, n_x) of brushed positions.")
    point = param.Tuple(default=None, allow_None=True, length=2,
                        doc="(row, column) index of the clicked position.")
    message = param.Dict(default={}, doc="The latest notification: level and text.")
    device = param.String(default="cpu")

    def __init__(self, image: xr.DataArray | None = None, **params):
        super().__init__(**params)
        self.device = str(pick_device("auto"))
        self.messages: list[dict] = []
        self._ids = itertools.count(1)
        self._cache: dict[tuple, Outcome] = {}
        self._job: Job | None = None
        self._recommended: dict = {}  # the settings the current dataset came with
        self._loader: threading.Thread | None = None
        self._lock = threading.RLock()
        self._pending: queue.SimpleQueue = queue.SimpleQueue()
        # The last setting always wins: every write of a setting from outside the store
        # (a widget, a script) gets a number; settings that the store itself brings later
        # (a dataset's recommended ones) skip any setting written after they were asked for.
        self._writes = itertools.count(1)
        self._written: dict[str, int] = {}
        # The session's document: background threads schedule their updates on it.
        self._doc = pn.state.curdoc if pn.state.curdoc and pn.state.curdoc.session_context else None
        # Without a document, the loop this store was made on (a notebook's), if any.
        try:
            self._loop = asyncio.get_running_loop() if self._doc is None else None
        except RuntimeError:
            self._loop = None
        if self.runner == "pool" and self.pool is None:
            raise PhyvaeDashError('runner="pool" needs a pool: Store(pool=FitPool(...))')
        if self.runner == "auto" and self.pool is not None:
            with param.edit_constant(self):
                self.runner = "pool"
        if self.runner == "auto":
            interactive = self._doc is not None or self._loop is not None
            with param.edit_constant(self):
                self.runner = os.environ.get("PHYVAE_DASH_RUNNER") or ("process" if interactive else "thread")
        # The worker process starts with the first fit: a session that never trains
        # (a page left open) costs no process and no model memory.
        self._worker = None
        self._worker_lock = threading.Lock()
        if self._doc is not None:
            # A closed browser tab must not leave its training (or its process) running.
            pn.state.on_session_destroyed(lambda context: self.close())
        if image is not None:
            self._set_data(image, source=image.attrs.get("source") or image.name or "your image",
                           recommended=automatic_settings(image))
        else:
            names = dataset_names()
            demo = DEFAULT_DEMO if DEFAULT_DEMO in names else (names[0] if names else None)
            if demo is not None:
                self._set_data(*self._read_dataset(demo))
        self.param.watch(self._note_writes, [*SETTINGS, "n_domains", "compare"])
        self.param.watch(self._on_settings, [*SETTINGS, "compare"])
        self.param.watch(self._on_n_domains, ["n_domains"])

    # ------------------------------------------------------------------ data
    @property
    def image(self) -> xr.DataArray | None:
        """The array given to `fit`: the data, restricted to the chosen channel."""
        if self.data is None:
            return None
        if self.channel != ALL_CHANNELS and "channel" in self.data.dims:
            return self.data.sel(channel=self.channel)
        return self.data

    @property
    def kind(self) -> str:
        """``"image"``, ``"channels"`` or ``"spectral"``."""
        return image_kind(self.data) if self.data is not None else "image"

    def _read_dataset(self, name: str):
        """A registry entry, and the settings it starts from: the automatic choices (the
        presets are documentation, not what the dashboard relies on)."""
        loaded = pvd.datasets.load_dataset(name)
        known = {}
        if isinstance(loaded, xr.Dataset):
            # A phantom knows how many domain levels it has: segment into that many.
            if "n_labels" in loaded.attrs:
                known["n_domains"] = int(loaded.attrs["n_labels"])
            image, truth = loaded["image"], loaded.get("labels")
        else:
            image, truth = loaded, None
        return image, name, truth, {**automatic_settings(image), **known}

    def _note_writes(self, *events):
        for event in events:
            self._written[event.name] = next(self._writes)

    def written_since(self, mark: int) -> set[str]:
        """The settings written (by the user or a script) after `mark` (see :meth:`mark`)."""
        return {name for name, number in self._written.items() if number > mark}

    def mark(self) -> int:
        """A point in the sequence of setting writes, for :meth:`written_since`."""
        return max(self._written.values(), default=0)

    def _set_data(self, image, source, truth=None, recommended=None, requested_at=None):
        """Show new data: reset results and apply recommended settings, then retrain.

        Settings written after `requested_at` (a :meth:`mark` taken when the load was
        asked for) keep their value: the user's last setting wins over the dataset's.
        """
        channels = [ALL_CHANNELS]
        if image.ndim == 3 and image.dims[2] == "channel":
            channels += [str(c) for c in image["channel"].values]
        recommended = dict(recommended or {})
        reasons = recommended.pop(AUTO_REASONS, [])
        settings = {k: v for k, v in recommended.items() if k in self.param and k in SETTINGS}
        automatic = dict(settings)
        settings["n_domains"] = recommended.get("n_domains")
        smallest = min(image.sizes["y"], image.sizes["x"])
        if image_kind(image) == "spectral":
            # The model layer's spectral preset (the spectrum averaged over 3 x 3
            # positions, at every position): the settings `fit` is known to accept.
            spectral = {k: v for k, v in PRESETS.get("spectral", {}).items() if k in SETTINGS}
            settings = {**(spectral or {"patch_size": 3, "stride": 1}), **settings}
        elif "patch_size" not in settings:
            settings["patch_size"] = min(self.patch_size, max(2, smallest // 4))
        settings["patch_size"] = min(settings["patch_size"], smallest)
        if requested_at is not None:
            for name in self.written_since(requested_at):
                settings.pop(name, None)
            if "patch_size" not in settings and self.patch_size > smallest:
                settings["patch_size"] = smallest  # the user's patch does not fit the new image
        self.param.channel.objects = channels
        self._recommended = dict(settings)
        self.param.update(auto_settings=automatic, auto_reasons=list(reasons))
        self._cancel_job()
        with param.parameterized.discard_events(self):
            self.param.update(channel=ALL_CHANNELS, **settings)
        self.param.update(
            data=image, truth=truth, source=str(source), z_maps=None, grid=None, result=None,
            outcome=None, labels=None, boundaries=None, boundary_len=None,
            baseline_labels=None, baseline_len=None, selection=None, point=None, losses={}, epoch=0,
            transform_info="",
        )
        if self.auto_train:
            self.train()

    def use_automatic(self):
        """Return every model setting to what was chosen automatically for this data."""
        if self.auto_settings:
            self.param.update(**self.auto_settings)

    def load_dataset(self, name: str):
        """Load a built-in phantom or registry entry in the background, then retrain."""
        self._background(lambda: self._read_dataset(name), f"dataset {name!r}")

    def upload(self, content: bytes, filename: str):
        """Load an uploaded file (its bytes and name) in the background, then retrain.

        Errors (an unknown format, a corrupt file, a file too large) become
        notifications; the previous data stay on screen.
        """
        if content is None:
            return
        if len(content) > MAX_UPLOAD_BYTES:
            self.notify(f"{filename} is {len(content) / 1024**2:.0f} MB; the limit is "
                        f"{MAX_UPLOAD_BYTES // 1024**2} MB. Downsample it or use "
                        "`phyvae-dash fit` on the command line.", "error")
            return

        def read():
            # The data layer reads paths (formats are told apart by their suffix).
            with tempfile.TemporaryDirectory() as folder:
                path = Path(folder) / Path(filename).name
                path.write_bytes(content)
                try:
                    image = pvd.load(path)
                    image.load()
                except PhyvaeDashError as error:
                    # Name the file as the user knows it, not by its temporary path.
                    raise type(error)(str(error).replace(str(path), filename)) from error
            image.attrs["source"] = filename
            return image, filename, None, automatic_settings(image)

        self._background(read, filename)

    def _background(self, read, what: str):
        requested_at = self.mark()

        def work():
            try:
                loaded = read()
            except PhyvaeDashError as error:
                self._dispatch(None, self.notify, f"Could not load {what}: {error}", "error")
            except Exception as error:  # a reader's own error: still the user's file
                log.exception("loading %s failed", what)
                self._dispatch(None, self.notify,
                               f"Could not load {what}: {type(error).__name__}: {error}", "error")
            else:
                self._dispatch(None, partial(self._set_data, requested_at=requested_at), *loaded)
                self._dispatch(None, self.notify, f"Loaded {what}.", "success")

        self._loader = threading.Thread(target=work, name="phyvae-dash-load", daemon=True)
        self._loader.start()

    # ------------------------------------------------------------------ notifications
    def notify(self, text: str, level: str = "info"):
        """Tell the user something: a toast in the browser, and `message` for the views."""
        entry = {"level": level, "text": text, "time": time.time()}
        self.messages.append(entry)
        self.message = entry
        notifications = pn.state.notifications
        if notifications is not None:
            getattr(notifications, level, notifications.info)(text, duration=8000 if level == "error" else 3000)
        (log.warning if level in ("error", "warning") else log.info)(text)

    # ------------------------------------------------------------------ training
    def settings(self) -> dict:
        """The settings of the current training, JSON-able."""
        return {name: getattr(self, name) for name in SETTINGS} | {
            "n_domains": self.n_domains, "compare": self.compare, "source": self.source}

    def _key(self, boundary_weight=None) -> tuple:
        values = self.settings() | {"data": id(self.data)}
        if boundary_weight is not None:
            values["boundary_weight"] = boundary_weight
        values.pop("n_domains"), values.pop("compare")
        return tuple(sorted((k, str(v)) for k, v in values.items()))

    def _on_settings(self, *events):
        if self.auto_train and self.data is not None:
            self.train()

    def _on_n_domains(self, *events):
        job = self._job
        if job is not None and job.thread is not None and job.thread.is_alive() and job.key:
            job.n_domains = self.n_domains  # the running job segments when it finishes
        elif self.outcome is not None:
            self._segment_in_background(self.outcome)

    def train(self, force: bool = False):
        """Train with the current settings, or show the cached result of the same settings.

        Cancels the running job, if any. Returns at once; the work runs in a thread.

        Parameters
        ----------
        force : bool
            Retrain even if the settings' result is cached.
        """
        if self.data is None:
            return
        key = self._key()
        cached = self._cache.get(key)
        if (cached is not None and not force and not cached.partial
                and (cached.baseline is not None or not self.compare)):
            self._cancel_job()
            self.cache_hits += 1
            self.status = "cached result"
            self._segment_in_background(cached)
            return
        settings = {k: getattr(self, k) for k in SETTINGS if k != "channel"}
        job = Job(next(self._ids), key, settings, self.image, self.compare, self.n_domains,
                  previous=self._job)
        self._cancel_job()
        self._job = job
        self.param.update(running=True, status="training", epoch=0,
                          epochs_total=settings["epochs"] or 0, eta_s=None, elapsed_s=None,
                          losses={}, jobs_started=self.jobs_started + 1)
        job.thread = threading.Thread(target=self._run, args=(job,), daemon=True,
                                      name=f"phyvae-dash-fit-{job.id}")
        job.thread.start()

    def cancel(self):
        """Stop the running job (its result is never shown)."""
        if self._cancel_job():
            self.notify("Training cancelled.", "info")

    def _cancel_job(self) -> bool:
        job, self._job = self._job, None
        if job is None or not job.thread or not job.thread.is_alive():
            return False
        job.cancel.set()
        self.param.update(running=False, status="cancelled")
        return True

    def close(self):
        """Cancel the running job and stop this store's worker process, if it has one."""
        self._cancel_job()
        if self._worker is not None:
            self._worker.close()

    def _fit(self, image, waiting=None, **kwargs):
        """`fit` on the pool, in this store's worker process, or here.

        ``waiting(n)`` hears how many fits are ahead while a pool's fit waits for a worker.
        """
        if self.runner == "pool":
            return self.pool.fit(image, waiting=waiting, **kwargs)
        if self.runner != "process":
            return pvd.fit(image, **kwargs)
        with self._worker_lock:
            # None before the first fit; dead after a crash (out of memory?): a new one.
            if self._worker is None or not self._worker.alive:
                self._worker = worker.acquire()
            fit_worker = self._worker
        return fit_worker.fit(image, **kwargs)

    def wait(self, timeout: float = 60.0) -> bool:
        """Block until the current load and job are done (for tests, scripts, benchmarks).

        Returns
        -------
        bool
            True when nothing is running any more.
        """
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            # Applying an update can start more work (a loaded file starts a training).
            self.apply_updates()
            threads = [self._loader, self._job.thread if self._job else None]
            alive = [t for t in threads if t is not None and t.is_alive()]
            if not alive and self._pending.empty():
                return True
            if alive:
                alive[0].join(min(0.1, max(0.0, end - time.monotonic())))
        return False

    def apply_updates(self):
        """Show what the background threads have sent (without a server or a notebook loop).

        Call it from the thread that renders the views; :meth:`wait` calls it.
        """
        while True:
            try:
                update = self._pending.get_nowait()
            except queue.Empty:
                return
            update()

    def _run(self, job: Job):
        """Body of the training thread."""
        if self._doc is not None and self.runner == "thread":
            _leave_a_core_for_the_server()
        if job.previous is not None and job.previous.thread is not None:
            # The cancelled job stops within an epoch; waiting keeps the 2 cores for us.
            job.previous.thread.join()
            job.previous = None
        try:
            result = self._cached_or_fit(job, job.key, job.settings["boundary_weight"])
            baseline = None
            if job.compare:
                baseline = (result if job.settings["boundary_weight"] == 0 else
                            self._cached_or_fit(job, self._key(0), 0.0, "comparison"))
            outcome = self._cache.get(job.key)
            if outcome is None or outcome.partial:
                outcome = self._analyse(job, result)
            outcome.baseline = outcome.baseline or baseline
            self._cache[job.key] = outcome
            segmentation = self._segmentation(outcome, job.n_domains)
        except FitCancelled:
            return
        except PhyvaeDashError as error:
            self._dispatch(job, self._failed, f"Training failed: {error}")
        except Exception as error:
            log.exception("training job %s failed", job.id)
            self._dispatch(job, self._failed, f"Training failed: {type(error).__name__}: {error}")
        else:
            self._dispatch(job, self._show, outcome, segmentation, True)

    def _report_warnings(self, job: Job, caught, phase: str):
        texts = dict.fromkeys(str(w.message) for w in caught
                              if not issubclass(w.category, (DeprecationWarning, PendingDeprecationWarning)))
        what = "Training" if phase == "training" else "The weight-0 comparison"
        for text in texts:
            self._dispatch(job, self.notify, f"{what}: {text}", "warning")

    def _cached_or_fit(self, job: Job, key: tuple, boundary_weight: float, phase="training"):
        cached = self._cache.get(key)
        if cached is not None:
            return cached.result
        job.losses = {}
        with warnings.catch_warnings(record=True) as caught:
            # `fit` warns about what the user should know (collapsed latents, ...): a
            # notification shows it. (catch_warnings swaps process-wide state; a store
            # runs one fit at a time, a new job waits for the cancelled one.)
            warnings.simplefilter("always")
            result = self._fit(job.image, **{**job.settings, "boundary_weight": boundary_weight},
                             callback=partial(self._on_progress, job, phase), cancel=job.cancel,
                             waiting=partial(self._on_waiting, job))
        self._report_warnings(job, caught, phase)
        if job.cancel.is_set():
            raise FitCancelled("cancelled")
        if phase == "comparison":
            self._cache.setdefault(key, Outcome(result, partial=True))
        return result

    def _analyse(self, job: Job, result: xr.Dataset) -> Outcome:
        """Everything the views show about a result that does not depend on n_domains."""
        outcome = Outcome(result)
        try:
            from phyvae_dash.models.features import prepare_inputs
            inputs = prepare_inputs(job.image, job.settings["patch_size"], job.settings["stride"],
                                    result.attrs.get("transform", job.settings["transform"]))
            outcome.inputs = inputs.data
        except Exception:  # the input view then says it has nothing to show
            log.debug("prepare_inputs failed", exc_info=True)
        for name, compute in (("reconstruction", lambda: result.pvd.reconstruct()),
                              ("manifold", lambda: result.pvd.manifold(n=8))):
            if job.cancel.is_set():
                raise FitCancelled("cancelled")
            try:
                value = compute()
            except Exception:
                log.debug("%s failed", name, exc_info=True)
                continue
            if name == "reconstruction":
                if isinstance(value, xr.DataArray) and {"channel", "wy", "wx"} <= set(value.dims):
                    # The model's inputs are channel-first (C, p, p); the decoded patches
                    # come channel-last: reorder before flattening, or the pixels scramble.
                    value = value.transpose(..., "channel", "wy", "wx")
                value = np.asarray(getattr(value, "values", value))
                if outcome.inputs is not None and value.size == outcome.inputs.size:
                    value = value.reshape(outcome.inputs.shape)
            setattr(outcome, name, value)
        return outcome

    def _segmentation(self, outcome: Outcome, n_domains):
        """Labels, boundaries and their length (cached per number of domains)."""
        if n_domains not in outcome.segmentations:
            labels = pvd.segment(outcome.result, n_domains=n_domains)
            outcome.segmentations[n_domains] = (labels, pvd.boundary_map(labels),
                                                pvd.boundary_length(labels), None, None)
        labels, boundaries, length, baseline, baseline_length = outcome.segmentations[n_domains]
        if baseline is None and outcome.baseline is not None:
            # The weight-0 fit may come later than the first segmentation (the comparison
            # switched on afterwards). Same number of domains: the boundary lengths compare.
            baseline = pvd.segment(outcome.baseline, n_domains=int(labels.max()) + 1)
            # Same domain, same number: the two maps are then drawn in the same colours.
            baseline = pvd.metrics.match_labels(baseline, labels)
            baseline_length = pvd.boundary_length(baseline)
            outcome.segmentations[n_domains] = (labels, boundaries, length, baseline, baseline_length)
        return outcome.segmentations[n_domains]

    def _segment_in_background(self, outcome: Outcome):
        n_domains = self.n_domains
        marker = self._job = Job(next(self._ids), (), {}, self.image, False, n_domains)

        def work():
            try:
                segmentation = self._segmentation(outcome, n_domains)
            except Exception as error:
                log.exception("segmentation failed")
                self._dispatch(marker, self._failed, f"Segmentation failed: {error}")
            else:
                self._dispatch(marker, self._show, outcome, segmentation, False)

        marker.thread = threading.Thread(target=work, name="phyvae-dash-segment", daemon=True)
        marker.thread.start()

    def _on_progress(self, job: Job, phase: str, progress):
        """Training callback (runs in the training thread): send a throttled UI update."""
        try:
            self._send_progress(job, phase, progress)
        except Exception:  # a display problem must not stop the training
            log.exception("progress update of job %s failed", job.id)

    def _on_waiting(self, job: Job, fits_ahead: int):
        """A pool's fit waits for a worker (runs in the training thread)."""
        status = (f"waiting for the pool: {fits_ahead} fit{'s' if fits_ahead != 1 else ''} ahead of yours"
                  if fits_ahead else "training")
        self._dispatch(job, lambda: self.param.update(status=status))

    def _send_progress(self, job: Job, phase: str, progress):
        for name, value in progress.losses.items():
            job.losses.setdefault(name, []).append(float(value))
        now = time.perf_counter()
        last = progress.epoch >= progress.epochs
        if not last and now - job.last_update < PROGRESS_INTERVAL_S and progress.epoch > 1:
            return
        job.last_update = now
        z_maps = None
        if (progress.z_mean is not None and phase == "training"
                and (now - job.last_maps >= MAPS_INTERVAL_S or last)):
            job.last_maps = now
            z_maps = self._as_maps(job, np.asarray(progress.z_mean))
        losses = {k: list(v) for k, v in job.losses.items()}
        self._dispatch(job, self._progress, phase, progress.epoch, progress.epochs,
                       progress.eta_s, progress.elapsed_s, losses, z_maps)

    def _as_maps(self, job: Job, z_mean: np.ndarray):
        """Label a callback's bare latent maps with the patch-centre coordinates."""
        grid = getattr(job, "grid", None)
        if grid is None:
            centres = patch_centres(job.image, job.settings["patch_size"], job.settings["stride"])
            grid = job.grid = tuple(xr.DataArray(values, dims=dim, attrs=attrs, name=dim)
                                    for dim, values, attrs in (centres["y"], centres["x"]))
        if z_mean.shape[1:] != (grid[0].size, grid[1].size):
            return None
        return xr.DataArray(z_mean, dims=("latent", "y", "x"),
                            coords={"latent": np.arange(z_mean.shape[0]), "y": grid[0], "x": grid[1]},
                            name="z_mean")

    # ------------------------------------------------------------------ applied on the UI side
    def _dispatch(self, job: Job | None, function, *args):
        """Run ``function(*args)`` where it may touch the UI, if `job` is still current."""
        def apply():
            if job is not None and job is not self._job:
                return  # a newer job replaced this one: its updates are stale
            try:
                with self._lock:
                    function(*args)
            except Exception as error:
                # A view that fails to draw must not leave the dashboard stuck or stop a job.
                log.exception("updating the dashboard failed")
                if function is not self.notify:
                    self.notify(f"A view could not be updated: {type(error).__name__}: {error}",
                                "warning")

        if self._doc is not None:
            from panel.io.state import set_curdoc
            with set_curdoc(self._doc):
                pn.state.execute(apply, schedule=True)
        elif self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(apply)
        else:
            self._pending.put(apply)

    def _progress(self, phase, epoch, epochs, eta_s, elapsed_s, losses, z_maps):
        updates = dict(epoch=epoch, epochs_total=epochs, eta_s=eta_s, elapsed_s=elapsed_s,
                       losses=losses, status=phase)
        if z_maps is not None:
            updates.update(self._maps_update(z_maps))
        self.param.update(**updates)

    def _maps_update(self, z_maps: xr.DataArray) -> dict:
        """New latent maps; a new grid (and no selection) when the positions changed."""
        updates = {"z_maps": z_maps}
        grid = self.grid
        same = (grid is not None and grid.shape == z_maps.shape[1:]
                and np.array_equal(grid["x"].values, z_maps["x"].values)
                and np.array_equal(grid["y"].values, z_maps["y"].values))
        if not same:
            updates.update(grid=xr.zeros_like(z_maps.isel(latent=0, drop=True)), selection=None, point=None)
        return updates

    def _show(self, outcome: Outcome, segmentation, finished_training: bool):
        self._job = None  # first: a view failing below must not leave the job "running"
        labels, boundaries, length, baseline_labels, baseline_length = segmentation
        result = outcome.result
        transform = result.attrs.get("transform", "")
        reason = result.attrs.get("transform_reason", "")
        if transform == self.auto_settings.get("transform") == self.transform:
            # `fit` only saw an explicit choice: the dashboard's automatic one
            reason = next((r.split(": ", 1)[1] for r in self.auto_reasons
                           if r.startswith("transform ") and ": " in r), "chosen automatically")
        self.param.update(
            result=result, outcome=outcome, labels=labels,
            boundaries=boundaries, boundary_len=length, baseline_labels=baseline_labels,
            baseline_len=baseline_length,
            running=False, status="done", eta_s=0.0,
            elapsed_s=result.attrs.get("elapsed_s", self.elapsed_s),
            transform_info=f"{transform}: {reason}" if reason else str(transform),
            losses={name.removeprefix("loss_"): result[name].values.tolist()
                    for name in result.data_vars if name.startswith("loss_")} or self.losses,
            **self._maps_update(result["z_mean"]),
        )

    def _failed(self, text: str):
        self._job = None
        self.param.update(running=False, status="failed")
        self.notify(text, "error")

    # ------------------------------------------------------------------ selections
    def _latents(self) -> xr.DataArray | None:
        """The finished result's latent maps (what the scatter shows)."""
        return None if self.result is None else self.result["z_mean"]

    def select_indices(self, indices):
        """Brush scan positions by flat index into the (n_y, n_x) grid (from the scatter)."""
        if self._latents() is None:
            return
        shape = self._latents().shape[1:]
        mask = np.zeros(shape, dtype=bool)
        mask.flat[np.asarray(indices, dtype=int)] = True
        self.selection = mask if mask.any() else None

    def select_bounds(self, bounds):
        """Brush scan positions inside a real-space box ``(x0, y0, x1, y1)``."""
        if self.z_maps is None or bounds is None:
            return
        x0, y0, x1, y1 = bounds
        y, x = self.z_maps["y"].values, self.z_maps["x"].values
        inside_y = (y >= min(y0, y1)) & (y <= max(y0, y1))
        inside_x = (x >= min(x0, x1)) & (x <= max(x0, x1))
        mask = inside_y[:, None] & inside_x[None, :]
        self.selection = mask if mask.any() else None

    def select_latent_box(self, bounds, latents):
        """Brush the positions whose latents ``latents=(i, j)`` fall inside ``bounds``."""
        if self._latents() is None or bounds is None:
            return
        x0, y0, x1, y1 = bounds
        zi, zj = (self._latents().values[i] for i in latents)
        mask = ((zi >= min(x0, x1)) & (zi <= max(x0, x1)) &
                (zj >= min(y0, y1)) & (zj <= max(y0, y1)))
        self.selection = mask if mask.any() else None

    def select_position(self, x: float, y: float):
        """Pick the scan position nearest to physical ``(x, y)``."""
        if self.z_maps is None or x is None or y is None:
            return
        row = int(np.abs(self.z_maps["y"].values - y).argmin())
        column = int(np.abs(self.z_maps["x"].values - x).argmin())
        self.point = (row, column)

    def select_nearest_latent(self, zx: float, zy: float, latents):
        """Pick the scan position whose latent pair is nearest to ``(zx, zy)``."""
        if self._latents() is None or zx is None:
            return
        zi, zj = (self._latents().values[i] for i in latents)
        flat = int(np.nanargmin((zi - zx) ** 2 + (zj - zy) ** 2))
        self.point = tuple(int(v) for v in np.unravel_index(flat, zi.shape))

    def clear_selection(self):
        self.param.update(selection=None, point=None)

