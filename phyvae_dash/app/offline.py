"""Pages that load nothing from the internet: every script, style and icon comes from
the server (or, in a notebook, inline in the output).

Instrument PCs and beamline networks are often offline; a page that waits for a CDN
there shows nothing. Three things would leave the machine with Panel's defaults:

* in a notebook, Bokeh's and Panel's scripts come from ``cdn.bokeh.org`` and
  ``cdn.holoviz.org``: :func:`use_inline_resources` has Panel put them into the
  output itself (served pages get them from the server anyway);
* the Fast design asks ``fonts.googleapis.com`` for Open Sans: :class:`OfflineFast`
  uses the system's sans-serif font instead;
* Bokeh loads its icon font (tabler icons) from ``cdn.jsdelivr.net`` for any widget
  given an icon *name*: the dashboard's buttons carry their icons as inline SVG
  (:data:`ICONS`).

Import this module before any other that calls ``pn.extension`` or
``hv.extension``: the notebook resources are chosen at that call.
"""
from __future__ import annotations

import os
from functools import lru_cache, partial

import panel as pn
from panel.io.resources import CDN_DIST
from panel.theme.fast import Fast

#: The font stack used in place of the design's web font.
SYSTEM_FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, 'Helvetica Neue', Arial, sans-serif"

#: Button icons as inline SVG (Tabler's outline icons, MIT licence): nothing to fetch.
_SVG = ('<svg xmlns="http://www.w3.org/2000/svg" width="24" height="24" viewBox="0 0 24 24" '
        'fill="none" stroke="currentColor" stroke-width="2" stroke-linecap="round" '
        'stroke-linejoin="round">{}</svg>')
ICONS = {
    "play": _SVG.format('<path d="M7 4v16l13 -8z"/>'),
    "stop": _SVG.format('<path d="M5 5m0 2a2 2 0 0 1 2 -2h10a2 2 0 0 1 2 2v10a2 2 0 0 1 -2 2h-10'
                        'a2 2 0 0 1 -2 -2z"/>'),
}


class OfflineFast(Fast):
    """Panel's Fast design without its web font (the system's sans-serif instead)."""

    # The design's own script is named relative to the class ("fast/js/..."): name it in
    # full, or it would be looked for under this subclass's name.
    _resources = {**Fast._resources, "font": {},
                  "js_modules": {**Fast._resources["js_modules"],
                                 "fast-design": f"{CDN_DIST}bundled/fast/js/fast_design.js"}}


def inline_stylesheets(viewable, root, changed=None, old_models=None):
    """A preprocessing hook (``hooks=[inline_stylesheets]`` on a notebook's root layout):
    keep every Panel stylesheet in the page itself, none linked from the CDN.

    Panel inlines them when it first renders a cell's output, but a pane whose text
    changes later (a Markdown status line) sends its CDN links again: the hook also
    inlines each model's stylesheets again whenever they change.
    """
    if not pn.config.inline:
        return
    from bokeh.models import UIElement
    from panel.io.notebook import patch_inline_stylesheets

    for model in root.select({"type": UIElement}):
        patch_inline_stylesheets(model)
        if not getattr(model, "_pvd_inlines_stylesheets", False):
            model._pvd_inlines_stylesheets = True
            model.on_change("stylesheets", partial(_inline_again, model))


def _inline_again(model, attr, old, new):
    from panel.io.notebook import patch_inline_stylesheets

    patch_inline_stylesheets(model)  # a no-op once they are inline


@lru_cache(maxsize=None)
def _inline_copy(url: str):
    from bokeh.models import ImportedStyleSheet
    from panel.io.notebook import replace_inline_css

    return replace_inline_css(ImportedStyleSheet(url=url))


class Markdown(pn.pane.Markdown):
    """Panel's Markdown pane, whose updates in a notebook carry their styles inline.

    A Markdown pane sends its stylesheets again with every new text; Panel links them
    from the CDN then, even with inline resources. Served pages are left alone (the
    server hands out the same files itself).
    """

    def _get_properties(self, doc):
        properties = super()._get_properties(doc)
        served = doc is not None and doc.session_context is not None
        if pn.config.inline and not served and "stylesheets" in properties:
            properties["stylesheets"] = [_inline_copy(sheet.url) if hasattr(sheet, "url") else sheet
                                         for sheet in properties["stylesheets"]]
        return properties


def use_inline_resources():
    """Have notebooks embed Bokeh's and Panel's scripts and styles instead of linking a CDN.

    A user's own ``PANEL_INLINE=false`` is respected (a notebook meant to be small on disk).
    """
    if os.environ.get("PANEL_INLINE") is None:
        pn.config.inline = True


use_inline_resources()
