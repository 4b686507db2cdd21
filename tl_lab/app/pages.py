"""Offline pages of executed lessons: nbconvert, JupyterLab's "Export as HTML", MyST-NB, and :func:`export_page`.

Why: an instructor exports an executed lesson and opens it with no network. Stock nbconvert showed none of its
figures or widgets: plotly 6/7 figures go out as ``application/vnd.plotly.v1+json`` only (nbconvert cannot
represent it), and saved widgets need widget-manager JavaScript that the page loads from a CDN. tl_lab's outputs
now carry static forms (:mod:`tl_lab.plots.static`, :mod:`tl_lab.widgets.snapshot`); this module puts them on
pages:

- :class:`OfflinePagePreprocessor`, an nbconvert preprocessor: gives any plotly output that lacks one a static
  form, shows each widget's snapshot instead of its live view (which cannot run offline), drops the saved widget
  state nothing on the page uses any more, and puts plotly.js (from the installed plotly wheel, never fetched) into
  the page once, before its first figure. ``pip install tl-lab`` installs two configuration files that turn it on
  for ``HTMLExporter`` (and the exporters built on it, e.g. ``webpdf``):
  ``{sys.prefix}/etc/jupyter/jupyter_nbconvert_config.json`` (``jupyter nbconvert``; nbconvert reads no
  ``jupyter_nbconvert_config.d`` folder) and ``{sys.prefix}/etc/jupyter/jupyter_server_config.d/tl_lab_pages.json``,
  which enables this module as a Jupyter server extension: JupyterLab's export runs nbconvert inside the server with
  the server's configuration (a ``.d`` file there only enables extensions), and :func:`enable_in_server` adds the
  preprocessor to it.
- :func:`export_page`: one self-contained offline HTML string for an executed notebook (what ``tl-lab site``
  builds on).
- A Sphinx extension (``extensions = ["myst_nb", "tl_lab.app.pages"]``): plotly.js copied into ``_static`` once
  and loaded by every page, snapshots preferred to live widgets, no widget-manager scripts from a CDN.

Example::

    >>> nb = execute_notebook("notebooks/00_start_here.ipynb", fast=True)   # nbclient, a minute  # doctest: +SKIP
    >>> Path("00.html").write_text(export_page(nb))       # open it anywhere, offline  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import json
import os
import shutil
from pathlib import Path
from typing import Any

import nbformat
from nbconvert.preprocessors import Preprocessor

__all__ = ["OfflinePagePreprocessor", "export_page", "enable_in_server", "execute_notebook", "page_config", "plotly_js_path",
           "page_figure_count", "widget_state_bytes", "setup", "PREPROCESSOR", "NBCONVERT_CONFIG"]

PREPROCESSOR = "tl_lab.app.pages.OfflinePagePreprocessor"
NBCONVERT_CONFIG = {"HTMLExporter": {"preprocessors": [PREPROCESSOR]}}
"""What the shipped ``jupyter_nbconvert_config.json`` holds (and what :func:`enable_in_server` adds to a server)."""

PLOTLY_MIME = "application/vnd.plotly.v1+json"
WIDGET_VIEW_MIME = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE_MIME = "application/vnd.jupyter.widget-state+json"
FIGURE_CLASS = "tl-plotly"  # tl_lab.plots.static.FIGURE_CLASS (not imported here: nbconvert loads this module)
PLOTLY_JS_MARK = "tl-lab-plotly-js"
EMPTY_SCRIPT_URL = "data:text/javascript,"


def plotly_js_path() -> Path:
    """plotly.min.js as the installed plotly wheel ships it (the version its figures were made for)."""
    import plotly

    path = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    if not path.is_file():
        raise FileNotFoundError(f"plotly.js is missing at {path}; reinstall plotly (`pip install --force-reinstall "
                                "plotly`)")
    return path


def _plotly_script() -> str:
    js = plotly_js_path().read_text(encoding="utf-8").replace("</script", "<\\/script")
    return f'<script id="{PLOTLY_JS_MARK}" type="text/javascript">{js}</script>'


def _figure_from_state(state: dict) -> dict | None:
    """A plotly FigureWidget's figure from its saved widget state (``_widget_data`` / ``_widget_layout``)."""
    if "_widget_data" not in state and "_widget_layout" not in state:
        return None
    return {"data": state.get("_widget_data") or [], "layout": state.get("_widget_layout") or {}}


class OfflinePagePreprocessor(Preprocessor):
    """Make an executed notebook's HTML page show every figure and widget with no kernel and no network.

    For each output: a plotly figure without an HTML form gets one (:func:`tl_lab.plots.static.static_figure_html`);
    a widget with a ``text/html`` snapshot is shown as the snapshot (a bare plotly FigureWidget as its saved figure).
    Saved widget state that no output uses any more is dropped, so the page loads no widget manager from a CDN.
    plotly.js is inserted once, just before the first figure. Running it twice changes nothing more.
    """

    def preprocess(self, nb: nbformat.NotebookNode, resources: dict) -> tuple[nbformat.NotebookNode, dict]:
        from tl_lab.plots.static import static_figure_html

        widgets = nb.metadata.get("widgets", {}).get(WIDGET_STATE_MIME, {})
        state = widgets.get("state", {}) if isinstance(widgets, dict) else {}
        first: tuple[int, int] | None = None
        has_plotly_js = False
        views_left = 0
        for ci, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            for oi, out in enumerate(cell.get("outputs", [])):
                data = out.get("data")
                if not data:
                    continue
                html_form = data.get("text/html")
                if isinstance(html_form, list):
                    html_form = "".join(html_form)
                if PLOTLY_MIME in data and not html_form:
                    html_form = data["text/html"] = static_figure_html(data[PLOTLY_MIME])
                if WIDGET_VIEW_MIME in data:
                    model = (state.get(data[WIDGET_VIEW_MIME].get("model_id"), {}) or {}).get("state", {})
                    if not html_form and _figure_from_state(model) is not None:
                        html_form = data["text/html"] = static_figure_html(_figure_from_state(model))
                    if html_form:
                        del data[WIDGET_VIEW_MIME]
                    else:
                        views_left += 1
                if html_form and PLOTLY_JS_MARK in html_form:
                    has_plotly_js = True
                if html_form and FIGURE_CLASS in html_form and first is None:
                    first = (ci, oi)
        if "widgets" in nb.metadata:
            if views_left == 0:
                del nb.metadata["widgets"]
            else:  # what remains cannot run offline anyway; do not carry plotly's 5 MB script per chart
                for model in state.values():
                    if isinstance(model.get("state", {}).get("_esm"), str) and len(model["state"]["_esm"]) > 100_000:
                        model["state"]["_esm"] = ""
        if first is not None and not has_plotly_js:
            ci, oi = first
            nb.cells[ci].outputs.insert(oi, nbformat.v4.new_output(
                "display_data", data={"text/html": _plotly_script()}, metadata={"tl_lab": "plotly.js"}))
        return nb, resources


def page_config(*, self_contained: bool = True) -> Any:
    """The traitlets ``Config`` for nbconvert's ``HTMLExporter`` that the shipped configuration files hold.

    ``self_contained`` adds what :func:`export_page` wants on top: local images embedded, and neither require.js nor
    MathJax from a CDN (tl_lab's pages use neither: no lesson writes formulas; a formula in a learner's own markdown
    then stays as TeX, and the page makes no request at all).
    """
    from traitlets.config import Config

    config = Config(copy.deepcopy(NBCONVERT_CONFIG))
    if self_contained:
        config.HTMLExporter.embed_images = True
        config.HTMLExporter.require_js_url = EMPTY_SCRIPT_URL
        config.HTMLExporter.mathjax_url = EMPTY_SCRIPT_URL
    return config


def _read(notebook: nbformat.NotebookNode | str | os.PathLike) -> tuple[nbformat.NotebookNode, dict]:
    if isinstance(notebook, nbformat.NotebookNode):
        return notebook, {}
    path = Path(notebook)
    if not path.is_file():
        raise FileNotFoundError(f"no notebook at {path}; give an executed .ipynb or an nbformat.NotebookNode")
    return nbformat.read(path, as_version=4), {"metadata": {"name": path.stem, "path": str(path.parent)}}


def export_page(notebook: nbformat.NotebookNode | str | os.PathLike) -> str:
    """A self-contained offline HTML page (one string) for an executed notebook.

    nbconvert's own ``HTMLExporter`` (the lab template) with :class:`OfflinePagePreprocessor`: plotly.js inlined
    once, widget snapshots instead of live widgets, images embedded, nothing fetched from the network (formulas in
    markdown cells stay as TeX). The notebook is not changed.
    """
    from nbconvert import HTMLExporter

    nb, resources = _read(notebook)
    exporter = HTMLExporter(config=page_config())
    body, _ = exporter.from_notebook_node(copy.deepcopy(nb), resources=resources or None)
    return body


def execute_notebook(path: str | os.PathLike, *, fast: bool = True, timeout: int = 900,
                     workdir: str | os.PathLike | None = None) -> nbformat.NotebookNode:
    """Run a lesson top to bottom with nbclient (as ``jupyter nbconvert --execute`` does) and return it executed.

    ``fast`` sets ``TL_LAB_FAST=1`` for the kernel; the kernel runs in ``workdir`` (default: the notebook's folder),
    where the lesson's runs and checkpoints land. Widget state is saved as nbclient saves it by default.
    """
    from nbclient import NotebookClient

    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    cwd = Path(workdir) if workdir is not None else path.parent
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(cwd)}})
    old = os.environ.get("TL_LAB_FAST")
    os.environ["TL_LAB_FAST"] = "1" if fast else ""  # the kernel inherits this process's environment
    try:
        client.execute()
    finally:
        if old is None:
            os.environ.pop("TL_LAB_FAST", None)
        else:
            os.environ["TL_LAB_FAST"] = old
    return nb


# ---- measuring a notebook -------------------------------------------------------------------------------------


def widget_state_bytes(nb: nbformat.NotebookNode) -> int:
    """Size of the saved widget state (``metadata.widgets``) as JSON, in bytes (0 when there is none)."""
    widgets = nb.metadata.get("widgets")
    return len(json.dumps(widgets).encode("utf-8")) if widgets else 0


def page_figure_count(nb: nbformat.NotebookNode) -> dict[str, int]:
    """What an executed notebook produced: ``{"figures": plain plotly figures, "widgets": displayed widgets,
    "widget_figures": charts inside widget snapshots}``."""
    counts = {"figures": 0, "widgets": 0, "widget_figures": 0}
    for cell in nb.cells:
        for out in cell.get("outputs", []) if cell.cell_type == "code" else []:
            data = out.get("data") or {}
            if PLOTLY_MIME in data:
                counts["figures"] += 1
            elif WIDGET_VIEW_MIME in data:
                counts["widgets"] += 1
                html_form = data.get("text/html") or ""
                html_form = "".join(html_form) if isinstance(html_form, list) else html_form
                counts["widget_figures"] += html_form.count(f'class="{FIGURE_CLASS}"')
    return counts


# ---- JupyterLab's "Export as HTML" ------------------------------------------------------------------------------


def enable_in_server(serverapp: Any) -> None:
    """Add :class:`OfflinePagePreprocessor` to the ``HTMLExporter`` configuration of a running Jupyter server.

    The server's nbconvert handler builds its exporter from the server's own configuration object, which this
    changes in place; preprocessors configured already are kept.
    """
    section = serverapp.config.HTMLExporter
    current = list(section.get("preprocessors", []) or [])
    if PREPROCESSOR not in current:
        section.preprocessors = [*current, PREPROCESSOR]


def _jupyter_server_extension_points() -> list[dict]:
    return [{"module": "tl_lab.app.pages"}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    enable_in_server(serverapp)
    serverapp.log.info("tl_lab: JupyterLab's HTML export shows figures and widget snapshots offline")


# ---- Sphinx + MyST-NB ---------------------------------------------------------------------------------------------

SPHINX_JS = "tl_lab_plotly.min.js"


def _sphinx_config_inited(app: Any, config: Any) -> None:
    overrides = list(getattr(config, "nb_mime_priority_overrides", None) or [])
    for builder in ("html", "dirhtml", "singlehtml"):
        overrides.append((builder, WIDGET_VIEW_MIME, None))  # the snapshot (text/html) instead of the live view
    config.nb_mime_priority_overrides = overrides
    config.nb_ipywidgets_js = {}  # no require.js / html-manager from a CDN: snapshots need none
    # MyST-NB parses every mimetype of an output before it picks one, and warns about plotly's, which sits beside
    # its static form (text/html): the page is right, the warning would only fail a `sphinx-build -W`.
    suppress = list(getattr(config, "suppress_warnings", None) or [])
    if "mystnb.unknown_mime_type" not in suppress:
        config.suppress_warnings = [*suppress, "mystnb.unknown_mime_type"]


def _sphinx_copy_plotly(app: Any, exception: BaseException | None) -> None:
    if exception is None and app.builder.format == "html":
        static = Path(app.outdir) / "_static"
        static.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(plotly_js_path(), static / SPHINX_JS)


def setup(app: Any) -> dict:
    """Sphinx extension: ``extensions = ["myst_nb", "tl_lab.app.pages"]`` in ``conf.py``."""
    app.connect("config-inited", _sphinx_config_inited)
    app.connect("build-finished", _sphinx_copy_plotly)
    app.add_js_file(SPHINX_JS)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
