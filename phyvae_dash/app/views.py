"""Views of the dashboard: Panel `Viewer` components that read the :class:`Store`.

Every view takes the store and draws from its parameters; the plots are HoloViews
``DynamicMap``s whose streams are the store's parameters, so that a new result
updates the existing Bokeh plot instead of rebuilding the page. User gestures
(box/lasso selections, clicks) go back to the store through HoloViews streams and
the store's ``select_*`` methods; the other views then redraw their highlights.

Widgets are created in ``__init__`` (never as class attributes), so that each
browser session gets its own.
"""
from __future__ import annotations

import io
import json
import tempfile
from functools import partial
from pathlib import Path

import numpy as np
import holoviews as hv
import panel as pn
import param
import xarray as xr
from holoviews import streams
from panel.viewable import Viewer

from phyvae_dash.data import fourd
from phyvae_dash.data.attrs import as_list

from . import offline  # noqa: F401  (first: it chooses the notebook resources)
from .offline import ICONS, Markdown
from .store import Store

# inline: HoloViews otherwise links the notebook to cdn.bokeh.org, whatever Panel's setting.
hv.extension("bokeh", logo=False, inline=pn.config.inline)


def _sized_by_frame(plot, element):
    """HoloViews marks a plot sized by ``frame_width``/``frame_height`` as ``fixed`` but
    leaves its width and height unset, which Bokeh's validation reports (W-1005) on every
    page load. Without a sizing mode Bokeh sizes the plot from its frame all the same."""
    state = plot.state
    if getattr(state, "sizing_mode", None) == "fixed" and (state.width is None or state.height is None):
        state.sizing_mode = None


hv.opts.defaults(*(getattr(hv.opts, element)(hooks=[_sized_by_frame])
                   for element in ("Image", "Points", "Curve", "Path", "Histogram", "Contours",
                                   "Overlay", "NdOverlay")))

#: Above this many scan positions the latent scatter is rasterized (datashader).
RASTERIZE_POINTS = 40_000
#: Colours of the highlight of brushed positions and of domain walls.
HIGHLIGHT = "#ff2d55"
WALL = "#ffffff"
MAP_CMAP = "viridis"
IMAGE_CMAP = "gray"
DOMAIN_CMAP = "Category10"
PLOT_WIDTH = 330
MAP_WIDTH = 220
LOSS_COLOURS = {"reconstruction": "#1f77b4", "kl": "#ff7f0e", "boundary": "#2ca02c"}
CARD = dict(sizing_mode="stretch_width", margin=(5, 5), collapsible=False)


def card(*objects, title: str, width: int | None = None, **kwargs) -> pn.Card:
    """A titled card: fixed `width` in pixels, or sharing what is left of the row.

    The app lays cards out in wrapping FlexBoxes; a card without a width grows from its
    ``min_width`` into the space its row leaves (rather than taking a row of its own).
    """
    stretch = {"styles": {"flex": f"1 1 {kwargs.get('min_width', 300)}px"}}
    # A fixed width, not sizing_mode="fixed": Bokeh's "fixed" wants a height too (W-1005),
    # and the card's height follows its content.
    options = {**CARD, **({"sizing_mode": None, "width": width} if width else stretch), **kwargs}
    return pn.Card(*objects, title=title, **options)


def _dim(name: str, coord: xr.DataArray | None = None, label: str | None = None) -> hv.Dimension:
    """A HoloViews dimension with the coordinate's units (physical axes)."""
    units = (coord.attrs.get("units") if coord is not None else None) or None
    return hv.Dimension(name, label=label or name, unit=units)


def _grid_image(values: np.ndarray, grid: xr.DataArray, name: str = "value", **kw) -> hv.Image:
    """An image of `values` (n_y, n_x) on the coordinates of `grid` (a (.., y, x) array)."""
    x, y = grid["x"].values, grid["y"].values
    return hv.Image((x, y, values), kdims=[_dim("x", grid["x"]), _dim("y", grid["y"])],
                    vdims=[name], **kw)


def _empty_image(name="value", like: xr.DataArray | None = None) -> hv.Image:
    """A placeholder image; on `like`'s grid, so that it does not change a plot's axes."""
    if like is None:
        return hv.Image((np.arange(2), np.arange(2), np.zeros((2, 2))), vdims=[name])
    zeros = np.zeros((like.sizes["y"], like.sizes["x"]))
    return _grid_image(zeros, like, name)


def _mask_image(mask: np.ndarray | None, grid: xr.DataArray | None, name: str, colour: str,
                alpha: float = 0.6, like: xr.DataArray | None = None) -> hv.Image:
    """Positions where `mask` is True in `colour`; the others are NaN, i.e. transparent."""
    if grid is None or mask is None or mask.shape != grid.shape[-2:] or not mask.any():
        # Nothing to draw: an invisible image (an all-NaN one would warn on every redraw).
        return _empty_image(name, grid if grid is not None else like).opts(
            alpha=0, colorbar=False, tools=[])
    values = np.where(mask, 1.0, np.nan)
    return _grid_image(values, grid, name).opts(cmap=[colour, colour], clim=(0, 1), alpha=alpha,
                                                colorbar=False, tools=[])


def _format_length(length) -> str:
    if length is None:
        return "–"
    units = getattr(length, "units", None) or "px"
    return f"{float(length):.4g} {units}"


def display_image(store: Store) -> xr.DataArray | None:
    """The 2-D image drawn under the overlays: the chosen (or first) channel, or for a
    spectral map the mean spectrum intensity."""
    data = store.data
    if data is None:
        return None
    if store.kind == "channels":
        channel = store.channel if store.channel != "all channels" else data["channel"].values[0]
        return data.sel(channel=channel)
    if store.kind == "spectral":
        return data.mean(data.dims[2], keep_attrs=True)
    if store.kind == "diffraction":
        return fourd.virtual_image(data, detector=store.virtual_detector).compute()
    return data


class View(Viewer):
    """Base class: a view of the store."""

    store = param.ClassSelector(class_=Store)


# ============================================================================ controls
class Controls(View):
    """Sidebar: data, model settings, segmentation, training buttons, device."""

    def __init__(self, **params):
        super().__init__(**params)
        store = self.store
        self._syncing = False
        self._writing = False
        # ---- data
        self.dataset = pn.widgets.Select(name="Dataset", options=self._dataset_options(),
                                         value=store.source if store.source in self._dataset_options() else None)
        self.upload = pn.widgets.FileInput(
            accept=".npy,.npz,.tif,.tiff,.png,.jpg,.jpeg,.h5,.hf5,.hdf5,.nc,.dm3,.dm4,.emd,.hspy,.ibw,.mrc,.sxm",
            sizing_mode="stretch_width", css_classes=["pvd-upload"])
        self.channel = pn.widgets.Select.from_param(store.param.channel, name="Channel")
        self.detector = pn.widgets.RadioButtonGroup.from_param(
            store.param.virtual_detector, name="Virtual detector (4D-STEM)",
            visible=store.kind == "diffraction")
        store.param.watch(lambda *events: setattr(self.detector, "visible", store.kind == "diffraction"),
                          ["data"])
        # ---- model settings: sliders act on release (value_throttled), see _link_throttled
        # css_classes name the controls for the browser tests.
        self.patch_size = pn.widgets.IntSlider(name="Patch size (px)", start=2, end=64, value=store.patch_size,
                                               css_classes=["pvd-patch-size"])
        self.stride = pn.widgets.IntSlider(name="Stride (px)", start=1, end=32, value=store.stride)
        self.latent_dim = pn.widgets.IntSlider(name="Latent dimensions", start=1, end=6, value=store.latent_dim)
        self.log_weight = pn.widgets.FloatSlider(
            name="Boundary weight (log₁₀)", start=-3.0, end=3.0, step=0.1,
            value=float(np.log10(store.boundary_weight)) if store.boundary_weight > 0 else 1.0,
            format="0.0")
        self.weight_off = pn.widgets.Checkbox(name="Boundary loss off (weight 0)",
                                              value=store.boundary_weight == 0)
        self.weight_text = Markdown(self._weight_label(), margin=(-10, 10, 0, 10))
        self.epochs_auto = pn.widgets.Checkbox(name="Epochs: automatic", value=store.epochs is None)
        self.epochs = pn.widgets.IntSlider(name="Epochs", start=1, end=200, value=store.epochs or 30,
                                           disabled=store.epochs is None)
        self.model = pn.widgets.Select.from_param(store.param.model, name="Model variant")
        self.transform = pn.widgets.Select.from_param(store.param.transform, name="Input transform")
        self.transform_info = Markdown("", margin=(-10, 10, 0, 10), styles={"font-size": "0.85em"})
        # ---- the automatic choices, and a way back to them after moving a slider
        self.auto_reasons = Markdown(self._auto_text(), margin=(0, 10), styles={"font-size": "0.85em"})
        self.use_auto = pn.widgets.Button(name="Auto: settings chosen from the data",
                                          button_type="default", disabled=not store.auto_settings)
        # ---- segmentation
        self.domains_auto = pn.widgets.Checkbox(name="Number of domains: automatic",
                                                value=store.n_domains is None)
        self.n_domains = pn.widgets.IntSlider(name="Domains", start=1, end=8, value=store.n_domains or 2,
                                              disabled=store.n_domains is None)
        self.compare = pn.widgets.Toggle.from_param(
            store.param.compare, name="Compare with boundary weight 0", button_type="default")
        # ---- actions
        self.train = pn.widgets.Button(name="Train", button_type="primary", icon=ICONS["play"])
        self.cancel = pn.widgets.Button(name="Cancel", button_type="warning", icon=ICONS["stop"],
                                        disabled=not store.running)
        self.auto_train = pn.widgets.Checkbox.from_param(store.param.auto_train,
                                                         name="Retrain when a setting changes")
        self.device = Markdown(self._device_text(), margin=(0, 10))
        self.error = pn.pane.Alert("", alert_type="danger", visible=False, sizing_mode="stretch_width")

        self._link_throttled(self.patch_size, "patch_size")
        self._link_throttled(self.stride, "stride")
        self._link_throttled(self.latent_dim, "latent_dim")
        self.log_weight.param.watch(self._on_weight, "value_throttled")
        self.weight_off.param.watch(self._on_weight, "value")
        self.epochs.param.watch(self._on_epochs, "value_throttled")
        self.epochs_auto.param.watch(self._on_epochs, "value")
        self.n_domains.param.watch(self._on_domains, "value_throttled")
        self.domains_auto.param.watch(self._on_domains, "value")
        self.dataset.param.watch(self._on_dataset, "value")
        self.upload.param.watch(self._on_upload, "value")
        self.train.on_click(lambda event: store.train(force=True))
        self.use_auto.on_click(lambda event: store.use_automatic())
        store.param.watch(self._on_auto, ["auto_reasons", "auto_settings"])
        self.cancel.on_click(lambda event: store.cancel())
        store.param.watch(self._sync_from_store, ["patch_size", "stride", "latent_dim",
                                                  "boundary_weight", "epochs", "n_domains", "source"])
        store.param.watch(self._on_running, ["running"])
        store.param.watch(self._on_message, ["message"])
        store.param.watch(lambda *events: setattr(self.transform_info, "object", self._transform_text()),
                          ["transform_info"])

    # -- store -> widgets (a new dataset brings recommended settings)
    def _sync_from_store(self, *events):
        # A store change that a widget of this panel made is not shown back: the widget
        # shows it already, and an echo of an older value would move a widget the user
        # has moved again since (the last setting must win).
        if self._writing:
            return
        # The widget watchers must not write these values back while they are shown.
        self._syncing = True
        try:
            self._show_settings()
        finally:
            self._syncing = False

    def _write(self, **settings):
        """Set store settings from the widgets (see `_sync_from_store`)."""
        self._writing = True
        try:
            self.store.param.update(**settings)
        finally:
            self._writing = False

    def _show_settings(self):
        store = self.store
        self.patch_size.value = store.patch_size
        self.stride.value = store.stride
        self.latent_dim.value = store.latent_dim
        if store.boundary_weight > 0:
            self.log_weight.value = float(np.log10(store.boundary_weight))
        self.weight_off.value = store.boundary_weight == 0
        self.weight_text.object = self._weight_label()
        if store.epochs is not None:
            self.epochs.value = store.epochs
        self.epochs_auto.value = store.epochs is None
        self.epochs.disabled = store.epochs is None
        if store.n_domains is not None:
            self.n_domains.value = store.n_domains
        self.domains_auto.value = store.n_domains is None
        self.n_domains.disabled = store.n_domains is None
        self.log_weight.disabled = store.boundary_weight == 0
        self.dataset.options = self._dataset_options()
        if store.source in self.dataset.options:
            self.dataset.value = store.source

    def _link_throttled(self, widget, name):
        # Slider work happens on release only: dragging would start a fit per pixel.
        def update(event):
            if not self._syncing and event.new is not None:
                self._write(**{name: event.new})
        widget.param.watch(update, "value_throttled")

    def _on_weight(self, event):
        if self._syncing:
            return
        weight = 0.0 if self.weight_off.value else round(10 ** self.log_weight.value, 4)
        self.log_weight.disabled = self.weight_off.value
        self._write(boundary_weight=weight)
        self.weight_text.object = self._weight_label()

    def _on_epochs(self, event):
        if self._syncing:
            return
        self.epochs.disabled = self.epochs_auto.value
        self._write(epochs=None if self.epochs_auto.value else self.epochs.value)

    def _on_domains(self, event):
        if self._syncing:
            return
        self.n_domains.disabled = self.domains_auto.value
        self._write(n_domains=None if self.domains_auto.value else self.n_domains.value)

    def _on_dataset(self, event):
        if not self._syncing and event.new and event.new != self.store.source:
            self.store.load_dataset(event.new)

    def _on_upload(self, event):
        if event.new is not None:
            self.store.upload(event.new, self.upload.filename or "upload.npy")

    def _on_running(self, event):
        self.cancel.disabled = not event.new

    def _on_message(self, event):
        message = event.new or {}
        if message.get("level") == "error":
            self.error.object = message["text"]
            self.error.visible = True
        elif message.get("level") == "success":
            self.error.visible = False

    def _dataset_options(self):
        from .store import dataset_names
        names = dataset_names()
        if self.store.source and self.store.source not in names:
            names = [self.store.source, *names]
        return names

    def _auto_text(self):
        reasons = self.store.auto_reasons
        if not reasons:
            return "Settings: as set (no automatic choice for this data)."
        return "**Chosen from the data** (every slider overrides):\n\n" + "\n".join(
            f"* {line}" for line in reasons)

    def _on_auto(self, *events):
        self.auto_reasons.object = self._auto_text()
        self.use_auto.disabled = not self.store.auto_settings

    def _weight_label(self):
        weight = self.store.boundary_weight
        return f"boundary weight = **{weight:.4g}**" + (" (physics prior off)" if weight == 0 else "")

    def _device_text(self):
        return f"Device: **{self.store.device}**"

    def _transform_text(self):
        info = self.store.transform_info
        return f"Input used: *{info}*" if info else ""

    def __panel__(self):
        return pn.Column(
            pn.Card(self.dataset, Markdown("Or upload a file (.npy, .tif, .h5, .dm3, …):",
                                                   margin=(0, 10)),
                    self.upload, self.channel, self.detector, title="Data", **CARD),
            pn.Card(self.use_auto, self.auto_reasons, self.patch_size, self.stride, self.latent_dim,
                    self.log_weight,
                    self.weight_text, self.weight_off, self.epochs_auto, self.epochs, self.model,
                    self.transform, self.transform_info, title="Model", **CARD),
            pn.Card(self.domains_auto, self.n_domains, self.compare, title="Domains", **CARD),
            pn.Row(self.train, self.cancel, sizing_mode="stretch_width"),
            self.auto_train, self.device, self.error,
            sizing_mode="stretch_width",
        )


# ============================================================================ real space
class ImageView(View):
    """The input image with the segmentation, the domain walls and the brushed positions."""

    def __init__(self, **params):
        super().__init__(**params)
        store = self.store
        self.show_domains = pn.widgets.Checkbox(name="Domains", value=True, width=90)
        self.show_walls = pn.widgets.Checkbox(name="Walls", value=True, width=80, css_classes=["pvd-walls"])
        base = hv.DynamicMap(self._image, streams={"data": store.param.data, "channel": store.param.channel,
                                                   "detector": store.param.virtual_detector})
        domains = hv.DynamicMap(self._domains, streams={"labels": store.param.labels,
                                                        "show": self.show_domains.param.value})
        walls = hv.DynamicMap(self._walls, streams={"labels": store.param.labels,
                                                    "show": self.show_walls.param.value})
        # Only `selection`: a new grid (each new patch size) comes with no selection, and
        # redrawing an empty overlay would cost the server's loop while training runs.
        highlight = hv.DynamicMap(self._highlight, streams={"selection": store.param.selection})
        self.bounds = streams.BoundsXY(source=base)
        self.tap = streams.Tap(source=base)
        self.bounds.add_subscriber(lambda bounds: store.select_bounds(bounds))
        self.tap.add_subscriber(lambda x, y: store.select_position(x, y))
        # framewise: a new image (another file, other units) brings its own axis ranges.
        self.plot = (base * domains * walls * highlight).opts(
            hv.opts.Image(tools=["box_select", "tap"], active_tools=["box_select"], framewise=True),
            hv.opts.Overlay(framewise=True))
        self.summary = Markdown(self._summary(), margin=(0, 10))
        store.param.watch(lambda *events: setattr(self.summary, "object", self._summary()),
                          ["boundary_len", "labels", "source"])

    def _image(self, data=None, channel=None, detector=None):
        image = display_image(self.store)
        if image is None:
            return _empty_image("intensity")
        name = str(image.name or image.attrs.get("long_name") or "intensity")
        units = image.attrs.get("units")
        element = hv.Image(image.transpose("y", "x"),
                           kdims=[_dim("x", image["x"]), _dim("y", image["y"])],
                           vdims=[hv.Dimension("value", label=name, unit=units)])
        return element.opts(cmap=IMAGE_CMAP, colorbar=True, frame_width=PLOT_WIDTH + 60,
                            data_aspect=1, title=f"{self.store.source}", tools=["hover"], framewise=True,
                            toolbar="above")

    def _domains(self, labels=None, show=True):
        if labels is None or not show:
            return _empty_image("domain", display_image(self.store)).opts(alpha=0, colorbar=False)
        values = labels.values.astype(float)
        values[values < 0] = np.nan
        return _grid_image(values, labels, "domain").opts(
            cmap=DOMAIN_CMAP, alpha=0.35, colorbar=False, clim=(0, 9))

    def _walls(self, labels=None, show=True):
        # Walls as thin lines: the outline of each domain (its indicator's 0.5 level line).
        # Neighbouring domains draw the same line, so each wall shows once; the store's
        # `boundaries` mask, which marks whole grid cells, would hide the image.
        if labels is None or not show or int(labels.max()) < 1:
            return hv.Contours([]).opts(line_width=0)
        cached = getattr(self, "_outlines", None)
        if cached is None or cached[0] is not labels:  # toggling the walls does not recompute
            outlines = []
            for label in range(int(labels.max()) + 1):
                indicator = _grid_image((labels.values == label).astype(float), labels, "inside")
                outline = hv.operation.contours(indicator, levels=[0.5], filled=False)
                outlines += [path.array([0, 1]) for path in outline.split()]
            self._outlines = cached = (labels, outlines)
        return hv.Contours(cached[1], kdims=[_dim("x", labels["x"]), _dim("y", labels["y"])]).opts(
            color=WALL, line_width=1.5)

    def _highlight(self, selection=None):
        return _mask_image(selection, self.store.grid, "selected", HIGHLIGHT, alpha=0.55,
                           like=display_image(self.store))

    def _summary(self):
        store = self.store
        if store.labels is None:
            return "*Domains appear when training has finished.*"
        n = int(store.labels.max()) + 1
        how = store.labels.attrs.get("n_domains_chosen_by", "")
        how = f" (counted by {how})" if how not in ("", "user") else ""
        return (f"**{n} domains**{how} · total boundary length **{_format_length(store.boundary_len)}**"
                " · box-select here to brush the scatter, click for a patch")

    def __panel__(self):
        return card(pn.Row(self.show_domains, self.show_walls), self.plot, self.summary,
                    title="Image, domains and walls", width=560)


def _axis_label(coord: xr.DataArray) -> str:
    units = coord.attrs.get("units")
    return f"{coord.name} ({units})" if units else str(coord.name)


def _image_frame(grid: xr.DataArray) -> dict:
    """Where a Bokeh image of ``grid`` (.., y, x) sits: cells centred on the coordinates."""
    frame = {}
    for name, origin, size in (("x", "x", "dw"), ("y", "y", "dh")):
        centres = grid[name].values.astype(float)
        step = float(np.abs(np.diff(centres)).mean()) if centres.size > 1 else 1.0
        frame[origin] = [float(centres.min()) - step / 2]
        frame[size] = [float(np.ptp(centres)) + step]
    return frame


def _rows_upward(values: np.ndarray, grid: xr.DataArray) -> np.ndarray:
    """Bokeh draws an image's first row at the bottom: flip descending y coordinates."""
    y = grid["y"].values
    return values[::-1] if y.size > 1 and y[0] > y[-1] else values


def _edit_bokeh(model, pane, edit):
    """Run ``edit()``, which changes Bokeh models in place, where the page will see it.

    In a served session a change must happen under the document's lock (a selection
    arriving through a HoloViews stream does not hold it): it runs on the next tick of
    the session's loop. In a notebook the page sees in-place changes once pushed.
    """
    document = model.document
    if document is not None and document.session_context is not None:
        document.add_next_tick_callback(edit)
        return
    edit()
    if document is not None:
        try:
            pn.io.push_notebook(pane)
        except Exception:  # shown somewhere that needs no push
            pass


class _LiveMap:
    """One latent map as a plain Bokeh figure whose data are replaced in place.

    A live map changes every second or so while a fit runs. Replacing a data source's
    arrays costs the server a few milliseconds; re-rendering a HoloViews plot costs
    it 100-300 ms of event-loop time, which every widget click then waits for.
    """

    def __init__(self, store: Store, index: int, x_range, y_range):
        from bokeh.events import SelectionGeometry, Tap
        from bokeh.models import ColorBar, ColumnDataSource, HoverTool, LinearColorMapper
        from bokeh.palettes import Viridis256
        from bokeh.plotting import figure

        self.store, self.index = store, index
        self.figure = figure(
            title=f"latent z{index}", x_range=x_range, y_range=y_range, match_aspect=True,
            frame_width=MAP_WIDTH, frame_height=MAP_WIDTH, toolbar_location="above",
            tools="box_select,tap,pan,wheel_zoom,reset,save", active_drag="box_select")
        self.mapper = LinearColorMapper(palette=Viridis256, low=0, high=1)
        empty = {"image": [np.zeros((1, 1))], "x": [0.0], "y": [0.0], "dw": [1.0], "dh": [1.0]}
        self.source = ColumnDataSource(dict(empty))
        self.mask_source = ColumnDataSource(dict(empty, image=[np.full((1, 1), np.nan)]))
        self.point_source = ColumnDataSource({"x": [], "y": []})
        image = self.figure.image(image="image", x="x", y="y", dw="dw", dh="dh", source=self.source,
                                  color_mapper=self.mapper)
        highlight = LinearColorMapper(palette=[HIGHLIGHT], low=0, high=1, nan_color=(0, 0, 0, 0))
        self.figure.image(image="image", x="x", y="y", dw="dw", dh="dh", source=self.mask_source,
                          color_mapper=highlight, global_alpha=0.6)
        self.figure.scatter("x", "y", source=self.point_source, marker="x", size=14, color="white",
                            line_width=3)
        self.figure.add_layout(ColorBar(color_mapper=self.mapper, width=10), "right")
        self.figure.add_tools(HoverTool(renderers=[image], tooltips=[
            ("x", "$x{0.[00]}"), ("y", "$y{0.[00]}"), (f"z{index}", "@image{0.000}")]))
        self.figure.on_event(SelectionGeometry, self._on_box)
        self.figure.on_event(Tap, lambda event: store.select_position(event.x, event.y))

    def _on_box(self, event):
        geometry = event.geometry
        if event.final and geometry.get("type") == "rect":
            self.store.select_bounds((geometry["x0"], geometry["y0"], geometry["x1"], geometry["y1"]))

    def show_map(self, z_maps: xr.DataArray, frame: dict):
        values = _rows_upward(z_maps.values[self.index].astype(np.float32), z_maps)
        finite = values[np.isfinite(values)]
        low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        self.source.data = {"image": [values], **frame}
        self.mapper.update(low=low, high=high if high > low else low + 1e-6)
        self.figure.xaxis.axis_label = _axis_label(z_maps["x"])
        self.figure.yaxis.axis_label = _axis_label(z_maps["y"])

    def show_selection(self, mask: np.ndarray | None, grid: xr.DataArray | None, frame: dict):
        if grid is None or mask is None or mask.shape != grid.shape:
            values = np.full((1, 1), np.nan)
        else:
            values = _rows_upward(np.where(mask, 0.5, np.nan), grid)
        self.mask_source.data = {"image": [values], **frame}

    def show_point(self, point, grid: xr.DataArray | None):
        if point is None or grid is None or point[0] >= grid.sizes["y"] or point[1] >= grid.sizes["x"]:
            self.point_source.data = {"x": [], "y": []}
        else:
            row, column = point
            self.point_source.data = {"x": [float(grid["x"][column])], "y": [float(grid["y"][row])]}


class LatentMaps(View):
    """One real-space map per latent variable, with colour bars and physical axes.

    Box-select on a map brushes those positions (the scatter highlights them); a click
    picks a position (its patch and reconstruction are shown). The maps share their axes.
    """

    def __init__(self, **params):
        from bokeh.models import Range1d

        super().__init__(**params)
        self._ranges = (Range1d(0, 1), Range1d(0, 1))
        self._maps: list[_LiveMap] = []
        self._frame = None
        self._row = pn.FlexBox(sizing_mode="stretch_width", css_classes=["pvd-latent-maps"])
        self.store.param.watch(self._on_maps, ["z_maps"])
        self.store.param.watch(self._on_marks, ["selection", "point", "grid"])
        self._on_maps()

    def _on_maps(self, *events):
        z_maps = self.store.z_maps
        n = 0 if z_maps is None else z_maps.sizes["latent"]
        if n != len(self._maps) or n == 0:
            self._maps = [_LiveMap(self.store, i, *self._ranges) for i in range(n)]
            self._row[:] = ([pn.pane.Bokeh(live.figure) for live in self._maps] if n else
                            [Markdown("*Latent maps appear after the first epoch.*")])
            self._frame = None
        if n == 0:
            return
        self._edit(partial(self._show_maps, z_maps, self.store.selection, self.store.point,
                           self.store.grid))

    def _show_maps(self, z_maps, selection, point, grid):
        frame = _image_frame(z_maps)
        if frame != self._frame:  # a new grid: fit the shared axes to it
            self._frame = frame
            x_range, y_range = self._ranges
            x_range.update(start=frame["x"][0], end=frame["x"][0] + frame["dw"][0])
            y_range.update(start=frame["y"][0], end=frame["y"][0] + frame["dh"][0])
            self._show_marks(selection, point, grid)
        for live in self._maps:
            live.show_map(z_maps, frame)

    def _show_marks(self, selection, point, grid):
        for live in self._maps:
            if self._frame is not None:
                live.show_selection(selection, grid, self._frame)
            live.show_point(point, grid)

    def _on_marks(self, *events):
        store = self.store
        self._edit(partial(self._show_marks, store.selection, store.point, store.grid))

    def _edit(self, edit):
        if self._maps:
            _edit_bokeh(self._maps[0].figure, self._row, edit)

    def __panel__(self):
        return card(self._row, title="Latent maps (real space)", min_width=320)


# ============================================================================ latent space
def _latents(result: xr.Dataset | None) -> xr.DataArray | None:
    return None if result is None else result["z_mean"]


class LatentScatter(View):
    """Scatter of a pair of latents, coloured by a third or by domain; brushing source.

    With a single latent there is no pair: it shows a histogram of z0, one colour per
    domain, where a box over a range of z0 brushes those positions.

    It draws finished results only (not the live maps of a running training): redrawing
    thousands of points every few epochs would keep the server busy and widgets waiting.
    """

    def __init__(self, **params):
        super().__init__(**params)
        store = self.store
        self.x_latent = pn.widgets.Select(name="x", options=[0, 1], value=0, width=70)
        self.y_latent = pn.widgets.Select(name="y", options=[0, 1], value=1, width=70)
        self.colour = pn.widgets.Select(name="Colour by", options=["domain"], value="domain", width=110)
        self.clear = pn.widgets.Button(name="Clear", button_type="light", width=70, align="end",
                                       description="Clear the brushed positions")
        self.clear.on_click(lambda event: store.clear_selection())
        store.param.watch(self._update_options, ["result"])
        self._update_options()
        self._holder = pn.pane.HoloViews(css_classes=["pvd-scatter"])
        self.hint = Markdown("", margin=(0, 10), styles={"font-size": "0.85em"})
        store.param.watch(self._maybe_rebuild, ["result"])
        self._mode = None
        self._maybe_rebuild()

    @property
    def _rasterized(self) -> bool:
        return self._mode == "rasterized"

    def _update_options(self, *events):
        z_maps = _latents(self.store.result)
        n = 2 if z_maps is None else z_maps.sizes["latent"]
        options = list(range(n))
        if self.x_latent.options != options:
            self.x_latent.options = options
            self.y_latent.options = options
            self.x_latent.value, self.y_latent.value = 0, min(1, n - 1)
            self.colour.options = ["domain"] + [f"z{i}" for i in options]

    def _maybe_rebuild(self, *events):
        # The plot is rebuilt only when its kind changes; otherwise its streams update it.
        z_maps = _latents(self.store.result)
        if z_maps is not None and z_maps.sizes["latent"] == 1:
            mode = "histogram"
        elif z_maps is not None and z_maps.sizes["y"] * z_maps.sizes["x"] > RASTERIZE_POINTS:
            mode = "rasterized"
        else:
            mode = "points"
        if mode != self._mode:
            self._mode = mode
            for widget in (self.x_latent, self.y_latent, self.colour):
                widget.visible = mode != "histogram"
            self.hint.object = ("Box a range of z0 to brush the maps." if mode == "histogram" else
                                "Box or lasso to brush the maps; click a point for its patch.")
            self._holder.object = (self._histogram_plot() if mode == "histogram"
                                   else self._plot(mode == "rasterized"))

    def _stream_kw(self):
        return {"result": self.store.param.result, "labels": self.store.param.labels,
                "xi": self.x_latent.param.value, "yi": self.y_latent.param.value,
                "colour": self.colour.param.value}

    def _plot(self, rasterize):
        store = self.store
        points = hv.DynamicMap(self._points, streams=self._stream_kw())
        highlight = hv.DynamicMap(self._highlight, streams={
            "selection": store.param.selection, **self._stream_kw()})
        point = hv.DynamicMap(self._point, streams={"point": store.param.point, **self._stream_kw()})
        if rasterize:
            from holoviews.operation.datashader import rasterize as _rasterize
            import datashader as ds
            shaded = _rasterize(points, aggregator=ds.count()).opts(
                cmap="blues", cnorm="eq_hist", tools=["box_select"], active_tools=["box_select"],
                frame_width=PLOT_WIDTH, frame_height=PLOT_WIDTH)
            bounds = streams.BoundsXY(source=shaded)
            bounds.add_subscriber(lambda bounds: store.select_latent_box(
                bounds, (self.x_latent.value, self.y_latent.value)))
            return shaded * highlight * point
        selection = streams.Selection1D(source=points)
        selection.add_subscriber(self._on_select)
        return points * highlight * point

    def _histogram_plot(self):
        store = self.store
        # The number of domains changes between results, hence NdOverlay (keyed by domain).
        bars = hv.DynamicMap(self._histograms, streams={"result": store.param.result,
                                                        "labels": store.param.labels,
                                                        "selection": store.param.selection})
        bounds = streams.BoundsX(source=bars)
        # A range of z0 brushes the positions inside it, whatever their second coordinate.
        bounds.add_subscriber(lambda boundsx: boundsx and store.select_latent_box(
            (boundsx[0], -np.inf, boundsx[1], np.inf), (0, 0)))
        return bars

    def _histograms(self, result=None, labels=None, selection=None):
        z_maps = _latents(result)
        opts = dict(frame_width=PLOT_WIDTH, frame_height=PLOT_WIDTH - 80, framewise=True, alpha=0.6,
                    tools=["xbox_select", "hover"], active_tools=["xbox_select"], line_width=0)
        if z_maps is None:
            return hv.NdOverlay({"all": hv.Histogram(([0, 1], [0]), kdims="z0", vdims="positions")}, kdims="domain")
        z0 = z_maps.values[0].ravel()
        edges = np.histogram_bin_edges(z0[np.isfinite(z0)], bins=40)
        groups, colours = {"all": np.ones(z0.shape, bool)}, {}
        if labels is not None and labels.size == z0.size:
            domains = labels.values.ravel()
            groups = {f"domain {k}": domains == k for k in np.unique(domains) if k >= 0}
            # The same colour per domain as on the image overlay (clim 0..9 there).
            palette = hv.plotting.util.process_cmap(DOMAIN_CMAP, 10)
            colours = {f"domain {k}": palette[int(k) % 10] for k in np.unique(domains) if k >= 0}
        if selection is not None and selection.size == z0.size:
            groups["brushed"] = selection.ravel()
        layers = {}
        for name, inside in groups.items():
            counts, _ = np.histogram(z0[inside], bins=edges)
            colour = HIGHLIGHT if name == "brushed" else colours.get(name, "#777777")
            layers[name] = hv.Histogram((edges, counts), kdims="z0", vdims="positions").opts(color=colour)
        return hv.NdOverlay(layers, kdims="domain").opts(
            hv.opts.Histogram(**opts),
            hv.opts.NdOverlay(title="Latent z0 by domain (one latent)", legend_position="top_right",
                              toolbar="above"))

    def _pairs(self, z_maps, xi, yi):
        values = z_maps.values
        return values[xi].ravel(), values[yi].ravel()

    def _points(self, result=None, labels=None, xi=0, yi=1, colour="domain"):
        z_maps = _latents(result)
        kdims = [f"z{xi}", f"z{yi}" if yi != xi else f"z{yi} "]
        opts = dict(frame_width=PLOT_WIDTH, frame_height=PLOT_WIDTH, size=3, alpha=0.6,
                    tools=["box_select", "lasso_select", "tap", "hover"], active_tools=["box_select"],
                    nonselection_alpha=0.25, selection_color=HIGHLIGHT, framewise=True,
                    title="Latent space", toolbar="above")
        if z_maps is None:
            return hv.Points([], kdims=kdims).opts(**opts)
        zx, zy = self._pairs(z_maps, xi, yi)
        if colour == "domain" and labels is not None and labels.size == zx.size:
            c, cmap, name = labels.values.ravel().astype(float), DOMAIN_CMAP, "domain"
            opts.update(clim=(0, 9))
        elif colour.startswith("z") and int(colour[1:]) < z_maps.sizes["latent"]:
            c, cmap, name = z_maps.values[int(colour[1:])].ravel(), MAP_CMAP, colour
            opts.update(colorbar=True)
        else:
            c, cmap, name = np.zeros_like(zx), MAP_CMAP, "none"
        return hv.Points((zx, zy, c), kdims=kdims, vdims=[name]).opts(color=name, cmap=cmap, **opts)

    def _highlight(self, selection=None, result=None, labels=None, xi=0, yi=1, colour="domain"):
        z_maps = _latents(result)
        if selection is None or z_maps is None or selection.shape != z_maps.shape[1:]:
            return hv.Points([]).opts(size=0)
        zx, zy = self._pairs(z_maps, xi, yi)
        mask = selection.ravel()
        return hv.Points((zx[mask], zy[mask])).opts(color=HIGHLIGHT, size=4, alpha=0.9)

    def _point(self, point=None, result=None, labels=None, xi=0, yi=1, colour="domain"):
        z_maps = _latents(result)
        if point is None or z_maps is None:
            return hv.Points([]).opts(size=0)
        row, column = point
        if row >= z_maps.sizes["y"] or column >= z_maps.sizes["x"]:
            return hv.Points([])
        values = z_maps.values
        return hv.Points([(values[xi, row, column], values[yi, row, column])]).opts(
            marker="x", size=14, color="black", line_width=3)

    def _on_select(self, index):
        if not index:
            return  # an empty selection also comes from redraws: clearing is a button
        if len(index) == 1:
            shape = self.store.result["z_mean"].shape[1:]
            self.store.point = tuple(int(v) for v in np.unravel_index(index[0], shape))
        self.store.select_indices(index)

    def __panel__(self):
        return card(pn.Row(self.x_latent, self.y_latent, self.colour, self.clear),
                       self._holder, self.hint,
                       title="Latent space", width=480)


# ============================================================================ patches / spectra
class PatchView(View):
    """The model input at the chosen position next to its reconstruction.

    For spectral data: the spectrum and its reconstruction, and the mean spectrum of
    the brushed positions.
    """

    def __init__(self, **params):
        super().__init__(**params)
        store = self.store
        # A function pane, not a DynamicMap: the plot is a Layout of patches or curves.
        self._pane = pn.panel(pn.bind(self._plot, point=store.param.point, outcome=store.param.outcome,
                                      selection=store.param.selection))
        self.caption = Markdown("", margin=(0, 10), styles={"font-size": "0.85em"})
        store.param.watch(self._caption, ["point", "outcome"])
        self._caption()

    def _position(self):
        outcome = self.store.outcome
        if outcome is None or outcome.inputs is None:
            return None
        ny, nx = outcome.inputs.shape[:2]
        point = self.store.point or (ny // 2, nx // 2)
        if point[0] >= ny or point[1] >= nx:
            return None
        return point

    def _caption(self, *events):
        point, z = self._position(), self.store.z_maps
        if point is None or z is None or point[0] >= z.sizes["y"] or point[1] >= z.sizes["x"]:
            self.caption.object = "*Click a position on a map or in the scatter.*"
            return
        y, x = float(z["y"][point[0]]), float(z["x"][point[1]])
        units = z["x"].attrs.get("units", "px")
        chosen = "" if self.store.point else " (centre; click to choose)"
        self.caption.object = f"Position x = {x:.4g} {units}, y = {y:.4g} {units}{chosen}"

    def _plot(self, point=None, outcome=None, selection=None):
        position = self._position()
        if position is None:
            return Markdown("*The input at a position and its reconstruction appear after "
                                    "training.*", width=360)
        if self.store.kind == "diffraction":
            return self._patterns(position, selection)
        inputs = outcome.inputs[position]
        recon = None
        if outcome.reconstruction is not None and outcome.reconstruction.shape == outcome.inputs.shape:
            recon = outcome.reconstruction[position]
        if inputs.ndim == 1:
            return self._spectra(inputs, recon, outcome, selection)
        return self._patches(inputs, recon, outcome.result.attrs.get("input_channels", ()))

    def _patterns(self, position, selection):
        """4D-STEM: the diffraction pattern at the position (log scale) and the mean
        pattern of the brushed positions. The model's inputs are features of the patterns
        (profiles, virtual detectors), so the pattern itself is what a microscopist reads."""
        z, data = self.store.z_maps, self.store.data
        at = fourd.value_at(data, float(z["y"][position[0]]), float(z["x"][position[1]]))
        tiles = [self._pattern_image(at, "pattern at the position")]
        if selection is not None and selection.shape == z.shape[1:] and selection.any():
            # The brushed grid cells, as a mask on the scan (nearest grid cell).
            iy = np.abs(data["y"].values[:, None] - z["y"].values[None, :]).argmin(1)
            ix = np.abs(data["x"].values[:, None] - z["x"].values[None, :]).argmin(1)
            mask = selection[iy[:, None], ix[None, :]]
            mean = fourd.selection_mean(data, mask)
            tiles.append(self._pattern_image(mean, f"mean of {mean.attrs.get('n_positions', '?')} brushed"))
        return hv.Layout(tiles).cols(2)

    @staticmethod
    def _pattern_image(pattern: xr.DataArray, title: str):
        values = np.log1p(np.clip(np.asarray(pattern.values, dtype=float), 0, None))
        ky, kx = pattern["ky"], pattern["kx"]
        return hv.Image((kx.values, ky.values, values), kdims=[_dim("kx", kx), _dim("ky", ky)],
                        vdims=[hv.Dimension("log_intensity", label="log(1 + counts)")]).opts(
            cmap=IMAGE_CMAP, frame_width=180, frame_height=180, title=title, toolbar=None)

    def _spectral_axis(self, n):
        data = self.store.data
        if data is not None and data.ndim == 3 and data.sizes[data.dims[2]] == n:
            coord = data[data.dims[2]]
            return coord.values.astype(float), _dim(str(data.dims[2]), coord)
        return np.arange(n), hv.Dimension("feature")

    def _spectra(self, inputs, recon, outcome, selection):
        axis, dim = self._spectral_axis(inputs.size)
        value = hv.Dimension("signal", label="signal (model input)")
        curves = [hv.Curve((axis, inputs), dim, value, label="spectrum").opts(color="black")]
        if recon is not None:
            curves.append(hv.Curve((axis, recon), dim, value, label="reconstruction").opts(
                color="#1f77b4", line_dash="dashed"))
        if selection is not None and selection.shape == outcome.inputs.shape[:2]:
            mean = outcome.inputs[selection].mean(axis=0)
            curves.append(hv.Curve((axis, mean), dim, value,
                                   label=f"mean of {int(selection.sum())} brushed").opts(color=HIGHLIGHT))
        return hv.Overlay(curves).opts(frame_width=PLOT_WIDTH, frame_height=220, legend_position="top_left",
                                       title="Spectrum at the position")

    def _patches(self, inputs, recon, channels=()):
        # Patch inputs are (C, p, p): one column per channel, input above reconstruction.
        inputs = inputs[None] if inputs.ndim == 2 else inputs
        recon = None if recon is None else (recon[None] if recon.ndim == 2 else recon)
        n_channels, p = inputs.shape[0], inputs.shape[-1]
        channels = as_list(channels)  # NetCDF gives a one-item list back as a str
        names = channels if len(channels) == n_channels else [f"ch{c}" for c in range(n_channels)]
        size = 150 if n_channels == 1 else max(70, 260 // n_channels)
        tiles = []
        for what, short, patches in (("input", "input", inputs), ("reconstruction", "recon.", recon)):
            if patches is None:
                continue
            for c in range(n_channels):
                # The input's range for both rows, so that a reconstruction that smooths
                # the noise away looks smooth, not stretched into a pattern.
                low, high = float(np.nanmin(inputs[c])), float(np.nanmax(inputs[c]))
                title = what if n_channels == 1 else f"{short} {names[c]}"
                tiles.append(hv.Image(patches[c][::-1], bounds=(0, 0, p, p)).opts(
                    cmap=IMAGE_CMAP, frame_width=size, frame_height=size, xaxis=None, yaxis=None,
                    clim=(low, high if high > low else low + 1), title=title, toolbar=None,
                    fontsize={"title": "8pt"}))
        return hv.Layout(tiles).cols(n_channels).opts(shared_axes=False)

    def __panel__(self):
        return card(self._pane, self.caption, title="Patch / spectrum at a position", width=420)


class ManifoldView(View):
    """Patches (or spectra) decoded on a grid over the z0–z1 latent plane."""

    def __init__(self, **params):
        super().__init__(**params)
        self._pane = pn.panel(pn.bind(self._plot, outcome=self.store.param.outcome))

    def _plot(self, outcome=None):
        manifold = None if outcome is None else outcome.manifold
        if manifold is None:
            return Markdown("*Patches decoded over the latent plane appear after training.*",
                                    width=300)
        if isinstance(manifold, xr.DataArray) and "channel" in manifold.dims:
            manifold = manifold.isel(channel=0)  # multi-channel patches: the first channel
        if isinstance(manifold, xr.DataArray) and manifold.dims[:2] == ("u", "v"):
            # Rows of the mosaic follow the second latent (v), columns the first (u).
            manifold = manifold.transpose("v", "u", ...)
        values = np.asarray(getattr(manifold, "values", manifold), dtype=float)
        if values.ndim == 5:  # (gy, gx, C, p, p): first channel
            values = values[:, :, 0]
        latents = list(getattr(manifold, "attrs", {}).get("latents", [0, 1]))
        one_latent = len(latents) == 2 and latents[0] == latents[1]
        if values.ndim == 4 and one_latent:
            # With one latent the plane is z0 against itself: only its diagonal is new.
            steps = np.arange(values.shape[0])
            values = values[steps, steps][None]
        if values.ndim == 4:  # (gy, gx, p, p): tile into one mosaic
            gy, gx, py, px = values.shape
            mosaic = values.transpose(0, 2, 1, 3).reshape(gy * py, gx * px)
            u, v = (f"z{latents[0]}", f"z{latents[1]}") if len(latents) == 2 else ("z0", "z1")
            if one_latent:
                return hv.Image(mosaic[::-1], bounds=(0, 0, gx, gy),
                                kdims=[f"{u} (grid step)", " "]).opts(
                    cmap=IMAGE_CMAP, frame_width=260, frame_height=max(40, 260 // gx),
                    toolbar=None, yaxis=None, title=f"Decoded patches along {u}")
            return hv.Image(mosaic[::-1], bounds=(0, 0, gx, gy),
                            kdims=[f"{u} (grid step)", f"{v} (grid step)"]).opts(
                cmap=IMAGE_CMAP, frame_width=260, frame_height=260, toolbar=None,
                title=f"Decoded latent manifold ({u}, {v})")
        if values.ndim == 3:  # (gy, gx, F): small spectra on a grid
            gy, gx, n = values.shape
            low, high = np.nanmin(values), np.nanmax(values)
            scaled = (values - low) / (high - low or 1.0)
            paths = [np.column_stack([j + 0.05 + 0.9 * np.arange(n) / (n - 1), i + 0.05 + 0.9 * scaled[i, j]])
                     for i in range(gy) for j in range(gx)]
            return hv.Path(paths, kdims=["z0 (grid step)", "z1 (grid step)"]).opts(
                color="#1f77b4", frame_width=260, frame_height=260,
                title="Decoded spectra over (z0, z1)")
        return Markdown(f"*No view for a manifold of shape {values.shape}.*")

    def __panel__(self):
        return card(self._pane, title="Latent manifold", min_width=340)


# ============================================================================ training
class TrainingView(View):
    """Progress bar with epoch and time left, and the loss curves as they stream in.

    The curves are a plain Bokeh figure: each progress update streams only the epochs
    the browser has not seen into its data source (a few milliseconds of the server's
    event loop; a HoloViews re-render costs it ~50 ms, which widgets would wait for).
    One y axis per term: they differ by orders of magnitude.
    """

    def __init__(self, **params):
        super().__init__(**params)
        store = self.store
        self.bar = pn.indicators.Progress(value=0, max=1, bar_color="primary", sizing_mode="stretch_width",
                                          height=14)
        self.text = Markdown(self._text(), margin=(0, 10))
        self._figure, self._source = self._loss_figure()
        self._sent: dict[str, list] = {}
        self._losses = pn.pane.Bokeh(self._figure)
        store.param.watch(self._stream_losses, ["losses"])
        store.param.watch(self._update, ["epoch", "epochs_total", "status", "running", "eta_s"])
        self._stream_losses()

    @staticmethod
    def _loss_figure():
        from bokeh.models import ColumnDataSource, DataRange1d, HoverTool, LinearAxis
        from bokeh.plotting import figure

        source = ColumnDataSource({"epoch": [], **{name: [] for name in LOSS_COLOURS}})
        plot = figure(title="Loss per epoch", frame_width=PLOT_WIDTH - 100, frame_height=170,
                      x_axis_label="epoch", tools="pan,wheel_zoom,reset,save", toolbar_location="above")
        for position, (name, colour) in enumerate(LOSS_COLOURS.items()):
            range_name = "default" if position == 0 else name
            line = plot.line("epoch", name, source=source, color=colour, line_width=2, legend_label=name,
                             **({} if position == 0 else {"y_range_name": name}))
            if position == 0:
                plot.y_range = DataRange1d(renderers=[line])
                plot.yaxis.axis_label = f"{name} loss"
                plot.yaxis.axis_label_text_color = colour
            else:
                plot.extra_y_ranges[range_name] = DataRange1d(renderers=[line])
                plot.add_layout(LinearAxis(y_range_name=range_name, axis_label=f"{name} loss",
                                           axis_label_text_color=colour), "right")
            plot.add_tools(HoverTool(renderers=[line], tooltips=[("epoch", "@epoch"), (name, f"@{name}")]))
        plot.legend.location = "top_right"
        return plot, source

    @staticmethod
    def _loss_rows(losses: dict, start: int) -> dict:
        """Epochs ``start + 1, ...`` of `losses`, one column per term (NaN where missing)."""
        losses = {name.removeprefix("loss_"): values for name, values in losses.items()}
        n = max([len(losses.get(name, [])) for name in LOSS_COLOURS] + [start]) - start
        columns = {"epoch": np.arange(start + 1, start + n + 1)}
        for name in LOSS_COLOURS:
            values = np.asarray(losses.get(name, [])[start:], dtype=float)
            columns[name] = np.pad(values, (0, n - values.size), constant_values=np.nan)
        return columns

    def _stream_losses(self, *events):
        losses = {name.removeprefix("loss_"): list(values) for name, values in self.store.losses.items()}
        n_sent = max((len(v) for v in self._sent.values()), default=0)
        continues = all(losses.get(name, [])[:len(values)] == values for name, values in self._sent.items())
        if not continues or n_sent == 0:
            # Another job's (or a cached result's) history: start the curves again.
            rows = self._loss_rows(losses, 0)
            _edit_bokeh(self._figure, self._losses, lambda: setattr(self._source, "data", rows))
        else:
            rows = self._loss_rows(losses, n_sent)
            if len(rows["epoch"]):
                _edit_bokeh(self._figure, self._losses, lambda: self._source.stream(rows))
        self._sent = losses

    def _update(self, *events):
        store = self.store
        total = max(store.epochs_total, 1)
        self.bar.max = total
        self.bar.value = min(store.epoch, total) if store.status != "done" else total
        self.bar.active = store.running and store.epoch == 0
        self.text.object = self._text()

    def _text(self):
        store = self.store
        if store.status in ("training", "comparison"):
            what = "Training" if store.status == "training" else "Training the weight-0 comparison"
            left = f", about {store.eta_s:.0f} s left" if store.eta_s is not None else ""
            return f"{what}: epoch **{store.epoch} / {store.epochs_total or '…'}**{left}"
        if store.status == "done" and store.elapsed_s is not None:
            return f"Done in {store.elapsed_s:.1f} s ({store.epochs_total} epochs)"
        return store.status.capitalize()

    def __panel__(self):
        return card(self.bar, self.text, self._losses, title="Training", width=480)


class ComparisonView(View):
    """Side by side: the current boundary weight and weight 0 (the physics prior's effect)."""

    def __init__(self, **params):
        super().__init__(**params)
        self._pane = pn.panel(pn.bind(self._plot, outcome=self.store.param.outcome,
                                      labels=self.store.param.baseline_labels))

    def _plot(self, outcome=None, labels=None):
        store = self.store
        if outcome is None or outcome.baseline is None or labels is None or store.labels is None:
            return Markdown(
                "Switch **Compare with boundary weight 0** on to train the same settings without "
                "the boundary loss and see its effect side by side." if not store.compare else
                "*The weight-0 comparison appears when both trainings have finished.*")
        weight = outcome.result.attrs.get("boundary_weight", store.boundary_weight)
        panels = []
        for name, result, domains, length in (
                (f"weight {weight:g}", outcome.result, store.labels, store.boundary_len),
                ("weight 0", outcome.baseline, labels, store.baseline_len)):
            z = result["z_mean"]
            # A value dimension per weight, so each map gets its own colour range (the
            # prior shrinks the latents; on a shared range its map would look flat).
            panels.append(_grid_image(z.values[0], z, f"z0 ({name})").opts(
                cmap=MAP_CMAP, frame_width=MAP_WIDTH - 30, data_aspect=1, title=f"z0, {name}",
                colorbar=True))
            values = domains.values.astype(float)
            values[values < 0] = np.nan
            panels.append(_grid_image(values, domains, "domain").opts(
                cmap=DOMAIN_CMAP, clim=(0, 9), frame_width=MAP_WIDTH - 30, data_aspect=1,
                title=f"walls {_format_length(length)}"))
        # One row per weight: the latent map, then its domains and wall length.
        return hv.Layout(panels).cols(2).opts(shared_axes=True)

    def __panel__(self):
        return card(self._pane, title="Physics prior on / off", min_width=500)


# ============================================================================ export
class ExportView(View):
    """Downloads: the result (NetCDF), labels (TIFF/PNG), model weights, settings (JSON)."""

    def __init__(self, **params):
        super().__init__(**params)
        kw = dict(color="light", sizing_mode="stretch_width", disabled=True)
        self.netcdf = pn.widgets.FileDownload(callback=self._netcdf, filename="phyvae_result.nc",
                                              label="Result (NetCDF)", **kw)
        self.weights = pn.widgets.FileDownload(callback=self._weights, filename="phyvae_model.safetensors",
                                               label="Model weights", **kw)
        self.tiff = pn.widgets.FileDownload(callback=partial(self._labels, "tiff"),
                                            filename="phyvae_labels.tif", label="Labels (TIFF)", **kw)
        self.png = pn.widgets.FileDownload(callback=partial(self._labels, "png"),
                                           filename="phyvae_labels.png", label="Labels (PNG)", **kw)
        self.settings = pn.widgets.FileDownload(callback=self._settings, filename="phyvae_settings.json",
                                                label="Settings (JSON)", **kw)
        self.store.param.watch(self._enable, ["result", "labels"])
        self._enable()

    def _enable(self, *events):
        has_result, has_labels = self.store.result is not None, self.store.labels is not None
        self.netcdf.disabled = self.weights.disabled = self.settings.disabled = not has_result
        self.tiff.disabled = self.png.disabled = not has_labels

    def _saved(self) -> dict[str, bytes]:
        """The result as the model layer saves it (NetCDF + weights file), as bytes by
        suffix; written to a temporary folder that is removed at once."""
        from phyvae_dash.models import persist
        with tempfile.TemporaryDirectory(prefix="phyvae-dash-export-") as folder:
            path = Path(folder) / "result.nc"
            persist.save(self.store.result, path)
            return {file.suffix: file.read_bytes() for file in Path(folder).iterdir() if file.is_file()}

    def _netcdf(self):
        return io.BytesIO(self._saved()[".nc"])

    def _weights(self):
        others = {suffix: data for suffix, data in self._saved().items() if suffix != ".nc"}
        if not others:
            self.store.notify("This result has no weights file to export.", "error")
            return io.BytesIO()
        suffix, data = next(iter(others.items()))
        self.weights.filename = f"phyvae_model{suffix}"
        return io.BytesIO(data)

    def _labels(self, fmt):
        labels = np.asarray(self.store.labels.values)
        # Raw label values (0..n-1, 255 for positions without a label), one pixel per position.
        data = np.where(labels < 0, 255, labels).astype(np.uint8)
        buffer = io.BytesIO()
        if fmt == "tiff":
            import tifffile
            tifffile.imwrite(buffer, data)
        else:
            import imageio.v3 as iio
            buffer.write(iio.imwrite("<bytes>", data, extension=".png"))
        buffer.seek(0)
        return buffer

    def _settings(self):
        store = self.store
        record = {"settings": store.settings(),
                  "result_attrs": {k: v for k, v in (store.result.attrs if store.result is not None else {}).items()
                                   if isinstance(v, (str, int, float, bool, list))},
                  "n_domains_found": None if store.labels is None else int(store.labels.max()) + 1,
                  "boundary_length": None if store.boundary_len is None else float(store.boundary_len),
                  "boundary_length_units": getattr(store.boundary_len, "units", None)}
        return io.BytesIO(json.dumps(record, indent=2, default=str).encode())

    def __panel__(self):
        return pn.Card(self.netcdf, self.weights, self.tiff, self.png, self.settings,
                       title="Export", collapsed=True, **{k: v for k, v in CARD.items() if k != "collapsible"})
