"""LightFigureWidget: plotly's FigureWidget without its 5 MB script in every widget's saved state.

Why: plotly's ``FigureWidget`` is an anywidget whose ``_esm`` trait is plotly's whole widget bundle (plotly.js
included, ~5 MB). The trait is part of the widget's state, so every FigureWidget sent 5 MB to the browser, and a
lesson executed headless (nbclient, ``jupyter nbconvert --execute``) or saved with "Save Widget State" stored
5 MB per chart: lesson 10 was a 6.6 MB page, 6.2 MB of it widget state.

Here ``_esm`` is a 2 KB loader. In a browser, the first chart of a page asks the kernel for plotly's bundle with a
custom widget message (custom messages are never saved with the notebook), imports it once, and every chart of
the page uses it; until the kernel answers (it answers between cells) the chart says it is waiting. The Python
side is plotly's FigureWidget unchanged: ``batch_update``, ``add_traces``, ``layout`` and the rest.

Example::

    >>> from tl_lab.widgets.light_figure import LightFigureWidget
    >>> fw = LightFigureWidget(go.Figure(go.Bar(y=[1, 2])))
    >>> len(fw._esm) < 4000
    True
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import plotly
import plotly.graph_objects as go

__all__ = ["LightFigureWidget", "LOADER_ESM", "REQUEST", "REPLY", "plotly_widget_bundle"]

REQUEST = "tl-lab-plotly-esm?"
REPLY = "tl-lab-plotly-esm"

LOADER_ESM = """
// tl_lab: fetch plotly's widget bundle from the kernel once per page (it is not kept in the widget's state).
const KEY = "__tl_lab_plotly_widget__";
function load(model) {
  let p = globalThis[KEY];
  if (!p) {
    p = new Promise((resolve, reject) => {
      function onMsg(msg) {
        if (!msg || msg.type !== "%(reply)s") return;
        model.off("msg:custom", onMsg);
        const url = URL.createObjectURL(new Blob([msg.code], { type: "text/javascript" }));
        import(url).then((mod) => resolve(mod.default), reject).finally(() => URL.revokeObjectURL(url));
      }
      model.on("msg:custom", onMsg);
      model.send({ type: "%(request)s" });
    });
    p.catch(() => { if (globalThis[KEY] === p) delete globalThis[KEY]; });
    globalThis[KEY] = p;
  }
  return p;
}
export default () => {
  let real = null;
  let ready = null;
  return {
    initialize({ model, experimental }) {
      ready = load(model).then((factory) => {
        real = typeof factory === "function" ? factory() : factory;
        return real.initialize ? real.initialize({ model, experimental }) : undefined;
      });
      ready.catch((e) => console.error("tl_lab: could not load plotly's widget bundle", e));
    },
    async render({ model, el, experimental }) {
      const note = document.createElement("div");
      note.className = "tl-chart-waiting";
      note.style.cssText = "color:#777;padding:8px 4px";
      note.textContent = "drawing the chart (waiting for the kernel)…";
      el.appendChild(note);
      try {
        await ready;
      } catch (e) {
        note.textContent = "This chart needs its kernel: run the cell again.";
        return;
      }
      note.remove();
      return real.render ? real.render({ model, el, experimental }) : undefined;
    },
  };
};
""" % {"reply": REPLY, "request": REQUEST}


@lru_cache(maxsize=1)
def plotly_widget_bundle() -> str:
    """plotly's own widget bundle (``plotly/package_data/widgetbundle.js``), read once from the installed wheel."""
    path = Path(plotly.__file__).parent / "package_data" / "widgetbundle.js"
    if not path.is_file():
        raise FileNotFoundError(f"plotly's widget bundle is missing at {path}; reinstall plotly "
                                "(`pip install --force-reinstall plotly`)")
    return path.read_text(encoding="utf-8")


class LightFigureWidget(go.FigureWidget):
    """plotly's ``FigureWidget`` whose browser script comes from the kernel once per page, not with every widget."""

    _esm = LOADER_ESM

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.on_msg(_answer)


def _answer(widget: LightFigureWidget, content: Any, buffers: Any) -> None:
    if isinstance(content, dict) and content.get("type") == REQUEST:
        widget.send({"type": REPLY, "code": plotly_widget_bundle()})
