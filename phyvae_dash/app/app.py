"""The dashboard: lays the views out around one :class:`~phyvae_dash.app.store.Store`.

Use it inline in JupyterLab::

    from phyvae_dash import Dashboard
    Dashboard()            # the built-in demo
    Dashboard(image)       # any DataArray the data layer reads

or serve it: ``phyvae-dash serve [FILE]`` or ``panel serve phyvae_dash/app/app.py``
(add ``--websocket-max-message-size 268435456`` there to upload files over 20 MB).
Each browser session builds its own Dashboard, hence its own store and state.
"""
from __future__ import annotations

import panel as pn
import param
import xarray as xr
from panel.viewable import Viewer

# Absolute imports: `panel serve phyvae_dash/app/app.py` runs this file as a script.
from phyvae_dash.app import offline  # first: it chooses the notebook resources
from phyvae_dash.app.pool import FitPool
from phyvae_dash.app.store import Store
from phyvae_dash.app.views import (ComparisonView, Controls, ExportView, ImageView, LatentMaps,
                                   LatentScatter, ManifoldView, PatchView, TrainingView)

TITLE = "phyVAE-dash · domains and walls"
ACCENT = "#0f6e8c"
#: Uploads travel over the websocket; Bokeh's default 20 MB limit is too small for scans.
WEBSOCKET_MAX_MESSAGE_SIZE = 256 * 1024**2

pn.extension(notifications=True)


class Dashboard(Viewer):
    """The phyVAE dashboard: controls, real-space and latent-space views, training, export.

    Parameters
    ----------
    image : xarray.DataArray, optional
        What to open on; without it the built-in demo phantom. The data layer's
        :func:`phyvae_dash.load` reads files into such arrays.
    store : Store, optional
        An existing store to show (for tests and scripts); one is created otherwise.
    auto_train : bool
        Train at once and whenever a setting changes (default True).

    Examples
    --------
    >>> from phyvae_dash import Dashboard
    >>> dashboard = Dashboard()        # opens on the demo and trains in the background
    >>> dashboard.store.wait()
    True
    >>> dashboard.store.labels.dims
    ('y', 'x')
    """

    store = param.ClassSelector(class_=Store)

    def __init__(self, image: xr.DataArray | None = None, *, auto_train: bool = True, **params):
        if params.get("store") is None:
            params["store"] = Store(image, auto_train=auto_train)
        super().__init__(**params)
        store = self.store
        self.controls = Controls(store=store)
        self.image_view = ImageView(store=store)
        self.latent_maps = LatentMaps(store=store)
        self.scatter = LatentScatter(store=store)
        self.patch = PatchView(store=store)
        self.manifold = ManifoldView(store=store)
        self.training = TrainingView(store=store)
        self.comparison = ComparisonView(store=store)
        self.export = ExportView(store=store)
        # FlexBoxes, not Rows: on a laptop screen the cards wrap instead of running off
        # the right edge.
        self._main = pn.Column(
            *(pn.FlexBox(*cards, flex_wrap="wrap", align_items="flex-start", sizing_mode="stretch_width")
              for cards in ((self.image_view, self.latent_maps),
                            (self.scatter, self.patch, self.manifold),
                            (self.training, self.comparison))),
            sizing_mode="stretch_width",
        )
        self._sidebar = pn.Column(self.controls, self.export, sizing_mode="stretch_width")

    @property
    def template(self) -> pn.template.FastListTemplate:
        """The page for a served session (one per session: build a Dashboard per session)."""
        if getattr(self, "_template", None) is None:
            self._template = pn.template.FastListTemplate(
                title=TITLE, sidebar=[self._sidebar], main=[self._main], accent=ACCENT,
                sidebar_width=330, main_layout=None, theme_toggle=False,
                design=offline.OfflineFast, font=offline.SYSTEM_FONT,
            )
        return self._template

    def servable(self, title: str | None = None, **kwargs):
        """Add the page to the served document; in a notebook, return the Dashboard itself.

        Works from any script given to ``panel serve`` (``Dashboard().servable()``).
        """
        # Not `pn.state.served`: it asks whether the *calling module* is the served
        # script, which, called from here, it never is.
        if _in_server_session():
            if title:
                self.template.title = title
            return self.template.servable(title=title or TITLE, **kwargs)
        return self

    def __panel__(self):
        # Without a server or notebook loop, training updates wait for this thread: show them.
        self.store.apply_updates()
        return pn.Row(pn.Column(self._sidebar, width=330), self._main, sizing_mode="stretch_width",
                      hooks=[offline.inline_stylesheets])


def _in_server_session() -> bool:
    """True while a Bokeh server session builds its page (`panel serve`, `pn.serve`)."""
    doc = pn.state.curdoc
    return bool(doc is not None and doc.session_context is not None)


def create_app(path: str | None = None, channel: str | None = None,
               pool: FitPool | None = None) -> pn.template.FastListTemplate:
    """Build a fresh page for one browser session (the function `serve` hands to Panel).

    Parameters
    ----------
    path : str, optional
        A file to open on; the built-in demo when None.
    channel : str, optional
        Which channel of a multi-channel file to use.
    pool : FitPool, optional
        The server's shared pool, which runs this session's fits.
    """
    image = None
    if path:
        from phyvae_dash import load
        image = load(path, channel=channel)
        image.attrs.setdefault("source", str(path))
    if pool is None:
        return Dashboard(image).template
    return Dashboard(store=Store(image, pool=pool)).template


def serve(path: str | None = None, *, port: int = 5006, address: str | None = None, show: bool = True,
          allow_websocket_origin: list[str] | None = None, channel: str | None = None,
          scheduler: str | None = None, pool: FitPool | None = None, **kwargs):
    """Serve the dashboard (blocking), one independent state per browser session.

    Parameters
    ----------
    path : str, optional
        A file to open on; the built-in demo when None.
    port, address : int, str
        Where to listen (``port=0`` picks a free port).
    show : bool
        Open a browser tab.
    allow_websocket_origin : list of str, optional
        Hosts allowed to connect (needed behind a proxy or on a remote machine).
    scheduler : str, optional
        A dask scheduler (``tcp://host:8786``) whose workers run the fits. Without it
        the server starts a local pool sized to the machine
        (:class:`~phyvae_dash.app.pool.FitPool`). Either way one pool serves all
        sessions: an idle session holds no process.
    pool : FitPool, optional
        An existing pool to use instead (the caller closes it).
    **kwargs
        Passed to :func:`panel.serve` (e.g. ``threaded=True`` to return at once).
    """
    if path:  # fail here, with the data layer's message, rather than in every session
        from phyvae_dash import load
        load(path, channel=channel)
    own_pool = pool is None
    if own_pool:
        pool = FitPool(scheduler)
    try:
        return pn.serve(
            lambda: create_app(path, channel, pool),  # called once per browser session
            port=port, address=address, show=show, title=TITLE,
            websocket_origin=allow_websocket_origin,
            websocket_max_message_size=WEBSOCKET_MAX_MESSAGE_SIZE, **kwargs,
        )
    finally:
        if own_pool and not kwargs.get("threaded"):
            pool.close()  # the server has stopped (a threaded server's pool lives with the process)


# `panel serve phyvae_dash/app/app.py` runs this module once per session. Here
# `pn.state.served` is right: it asks whether this module is the served script (not
# merely imported by one, such as binder/dashboard.py).
if pn.state.served:
    Dashboard().servable()
