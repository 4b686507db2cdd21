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

ASK_AGAIN_MS = 4000  # a chart still waiting asks the kernel again after this long

LOADER_ESM = """
// tl_lab: fetch plotly's widget bundle from the kernel once per page (it is not kept in the widget's state).
// Every chart of the page waits on one shared promise. A chart asks the kernel through its own widget when nobody
// has asked for %(again_s)s s: a widget closed before its kernel answered (a chart replaced while the kernel was busy)
// must not leave the page's other charts waiting for ever.
const KEY = "__tl_lab_plotly_widget__";
function shared() {
  let s = globalThis[KEY];
  if (!s) {
    s = { done: false, asked: 0 };
    s.promise = new Promise((resolve, reject) => { s.resolve = resolve; s.reject = reject; });
    s.promise.catch(() => { if (globalThis[KEY] === s) delete globalThis[KEY]; });
    globalThis[KEY] = s;
  }
  return s;
}
function load(model) {
  const s = shared();
  if (s.done || Date.now() - s.asked < %(again_ms)d) return s.promise;
  s.asked = Date.now();
  function onMsg(msg) {
    if (!msg || msg.type !== "%(reply)s") return;
    model.off("msg:custom", onMsg);
    if (s.done) return;
    s.done = true;
    const url = URL.createObjectURL(new Blob([msg.code], { type: "text/javascript" }));
    import(url).then((mod) => s.resolve(mod.default), s.reject).finally(() => URL.revokeObjectURL(url));
  }
  model.on("msg:custom", onMsg);
  model.send({ type: "%(request)s" });
  return s.promise;
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
      const again = setInterval(() => load(model), %(again_ms)d);  // ask again while no answer has come
      try {
        await ready;
      } catch (e) {
        note.textContent = "This chart needs its kernel: run the cell again.";
        return;
      } finally {
        clearInterval(again);
      }
      note.remove();
      return real.render ? real.render({ model, el, experimental }) : undefined;
    },
  };
};
""" % {"reply": REPLY, "request": REQUEST, "again_ms": ASK_AGAIN_MS, "again_s": ASK_AGAIN_MS // 1000}


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
