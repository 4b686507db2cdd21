"""Executed lessons as offline pages, opened in headless Chromium with every http(s) request refused.

Each lesson runs in fast mode (``TL_LAB_FAST=1``) with nbclient, keeping the widget state nbclient saves by default:
tests/executed_lessons.py executes it once for this file and tests/test_lessons.py. Its page is made three ways: nbconvert's stock ``HTMLExporter`` with the
configuration tl_lab ships (what ``jupyter nbconvert --to html`` and JupyterLab's export load),
:func:`tl_lab.app.pages.export_page`, and (lesson 00) a Sphinx + MyST-NB build. On each page every figure the
notebook produced (plain figures and the charts inside widget snapshots) must be drawn by plotly.js (an SVG in a
``.js-plotly-plot``) and every widget must show its snapshot, never its Python repr.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from executed_lessons import executed_lesson

from tl_lab.app import pages

pytestmark = [pytest.mark.slow, pytest.mark.browser]

ROOT = Path(__file__).resolve().parents[2]
LESSONS = ["00_start_here", "10_zero_and_few_shot"]
STATE_LIMIT = 1_000_000

COUNT_JS = """() => {
  const figs = [...document.querySelectorAll('.tl-plotly')];
  const drawn = figs.filter(e => e.classList.contains('js-plotly-plot') && e.querySelector('svg.main-svg'));
  const visible = drawn.filter(e => e.getBoundingClientRect().height > 50);
  const snaps = [...document.querySelectorAll('.tl-snapshot')].filter(e => e.getBoundingClientRect().height > 0);
  return {figures: figs.length, drawn: drawn.length, visible: visible.length, snapshots: snaps.length,
          labelled: figs.filter(e => (e.getAttribute('aria-label') || '').length > 20).length,
          text: document.body.innerText};
}"""


@pytest.fixture(scope="module", params=LESSONS)
def lesson(request, tmp_path_factory):
    run = executed_lesson(request.param, tmp_path_factory)  # shared with tests/test_lessons.py
    if run.error:
        pytest.fail(run.error, pytrace=False)
    return request.param, run.nb, run.folder, run.seconds


def _open_offline(browser, path: Path) -> dict:
    context = browser.new_context()
    refused: list[str] = []

    def route(r):
        if r.request.url.startswith(("http://", "https://")):
            refused.append(r.request.url)
            r.abort()
        else:
            r.continue_()

    context.route("**/*", route)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto(path.as_uri(), wait_until="load")
        page.wait_for_function("() => document.readyState === 'complete'")
        page.wait_for_timeout(500)  # plotly draws synchronously in newPlot; this lets the last frame settle
        found = page.evaluate(COUNT_JS)
    finally:
        context.close()
    found["errors"], found["refused"] = errors, refused
    return found


def _check_page(found: dict, produced: dict, where: str) -> None:
    expected = produced["figures"] + produced["widget_figures"]
    assert found["figures"] == expected, f"{where}: {found['figures']} figure blocks on the page, {expected} produced"
    assert found["drawn"] == expected, f"{where}: {found['drawn']} of {expected} figures drawn offline"
    assert found["labelled"] == expected, f"{where}: a figure lacks its text alternative"
    assert found["snapshots"] == produced["widgets"], f"{where}: {found['snapshots']} of {produced['widgets']} widgets"
    assert "(children=(" not in found["text"], f"{where}: a widget shows as its Python repr"
    assert not found["errors"], f"{where}: page errors {found['errors']}"


def _record(name: str, **numbers) -> None:
    print(f"\n{name}: " + json.dumps(numbers))


def test_saved_widget_state_is_small(lesson):
    name, nb, _, seconds = lesson
    produced = pages.page_figure_count(nb)
    size = pages.widget_state_bytes(nb)
    _record(name, seconds=round(seconds), widget_state_bytes=size, **produced)
    assert produced["widgets"] >= 1, f"{name} displays a widget; none found in its outputs"
    assert 0 < size < STATE_LIMIT, f"{name}: saved widget state is {size:,} bytes"


def test_stock_nbconvert_page_shows_every_figure_and_widget_offline(lesson, browser, tmp_path):
    from nbconvert import HTMLExporter
    from traitlets.config import Config

    name, nb, _, _ = lesson
    shipped = json.loads((ROOT / "jupyter-config" / "nbconvert" / "jupyter_nbconvert_config.json").read_text())
    body, _ = HTMLExporter(config=Config(shipped)).from_notebook_node(nb)
    path = tmp_path / f"{name}.html"
    path.write_text(body, encoding="utf-8")
    found = _open_offline(browser, path)
    produced = pages.page_figure_count(nb)
    _record(name, exporter="HTMLExporter", page_bytes=path.stat().st_size, drawn=found["drawn"],
            visible=found["visible"], snapshots=found["snapshots"], **produced)
    _check_page(found, produced, f"{name} (HTMLExporter)")


def test_export_page_shows_every_figure_and_widget_offline(lesson, browser, tmp_path):
    name, nb, _, _ = lesson
    path = tmp_path / f"{name}.html"
    path.write_text(pages.export_page(nb), encoding="utf-8")
    found = _open_offline(browser, path)
    produced = pages.page_figure_count(nb)
    _record(name, exporter="export_page", page_bytes=path.stat().st_size, drawn=found["drawn"],
            visible=found["visible"], snapshots=found["snapshots"], refused=found["refused"])
    _check_page(found, produced, f"{name} (export_page)")
    assert all("mathjax" in url for url in found["refused"]), found["refused"]


CONF_PY = '''
project = "tl_lab lessons"
extensions = ["myst_nb", "tl_lab.app.pages"]
nb_execution_mode = "off"          # pages from notebooks executed beforehand
html_theme = "alabaster"           # ships with Sphinx: nothing to fetch
exclude_patterns = ["_build"]
'''


def test_sphinx_myst_nb_build_shows_the_lesson_figures_offline(lesson, browser, tmp_path):
    name, nb, _, _ = lesson
    if name != "00_start_here":
        pytest.skip("one lesson is enough for the Sphinx build")
    pytest.importorskip("myst_nb")
    src = tmp_path / "src"
    src.mkdir()
    (src / "conf.py").write_text(CONF_PY)
    (src / "index.md").write_text(f"# Lessons\n\n```{{toctree}}\n{name}\n```\n")
    nbformat.write(nb, src / f"{name}.ipynb")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p))
    done = subprocess.run([sys.executable, "-m", "sphinx", "-b", "html", "-q", str(src), str(tmp_path / "out")],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    page = tmp_path / "out" / f"{name}.html"
    body = page.read_text(encoding="utf-8")
    assert (tmp_path / "out" / "_static" / pages.SPHINX_JS).stat().st_size > 4_000_000
    assert "html-manager" not in body and 'type="application/vnd.jupyter.widget-view+json"' not in body
    found = _open_offline(browser, page)
    produced = pages.page_figure_count(nb)
    _record(name, builder="sphinx+myst-nb", page_bytes=page.stat().st_size, drawn=found["drawn"],
            snapshots=found["snapshots"], refused=found["refused"])
    _check_page(found, produced, f"{name} (Sphinx + MyST-NB)")


def test_jupyterlab_shows_each_figure_and_widget_once(lab):
    """In JupyterLab the live forms win: plotly's mimetype for a figure, the widget view for a widget (whose chart
    draws from plotly's bundle fetched from the kernel once). The static forms beside them are never shown."""
    lab.run_new_notebook("pages_once.ipynb", [
        "import plotly.graph_objects as go\nimport tl_lab.plots\n"
        "go.Figure(go.Bar(x=['a', 'b'], y=[1, 2])).show()",
        "from tl_lab.widgets.common import FigureSlot\n"
        "slot = FigureSlot(go.Figure(go.Scatter(y=[1, 3, 2])), css_class='pages-slot')\nslot",
        "slot2 = FigureSlot(go.Figure(go.Scatter(y=[2, 1])), css_class='pages-slot2')\nslot2",
    ], timeout=120)  # fmt: skip
    lab.wait_for_plot(".pages-slot .js-plotly-plot")
    lab.wait_for_plot(".pages-slot2 .js-plotly-plot")
    assert lab.js("() => document.querySelectorAll('.jp-OutputArea .js-plotly-plot').length") == 3
    assert lab.js("() => document.querySelectorAll('.tl-snapshot, .tl-plotly, .tl-alt').length") == 0
    assert lab.error_outputs() == []
    lab.assert_clean_console()


def test_a_chart_closed_before_the_kernel_answered_does_not_leave_the_next_one_waiting(lab):
    """The first chart of a page fetches plotly's bundle from the kernel through its own widget. When that widget is
    closed while the kernel is busy (a chart replaced by a newer one, as BackboneChooser does on a second score), its
    question is never answered; the next chart asks again through its own widget instead of waiting for ever."""
    lab.run_new_notebook("closed_first.ipynb", [
        "import time\nimport plotly.graph_objects as go\nfrom IPython.display import display\n"
        "from tl_lab.widgets.light_figure import LightFigureWidget\n"
        "first = LightFigureWidget(go.Figure(go.Bar(y=[1, 2])))\ndisplay(first)\n"
        "time.sleep(2)  # the page asks through `first` while the kernel is busy here\nfirst.close()",
        "from ipywidgets import Box\nsecond = LightFigureWidget(go.Figure(go.Scatter(y=[3, 1, 2])))\n"
        "box = Box([second])\nbox.add_class('closed-first-second')\nbox",
    ], timeout=120)  # fmt: skip
    lab.wait_for_plot(".closed-first-second .js-plotly-plot", timeout=30)
    assert lab.js("() => document.querySelector('.closed-first-second .js-plotly-plot').data[0].y.length") == 3
    assert lab.error_outputs() == []


def test_jupyterlab_shows_the_snapshot_of_an_untrusted_executed_notebook_not_the_repr(lab):
    """A notebook executed headless is not trusted when opened: JupyterLab renders no widget view and no script,
    and picks the first safe form. That is the (sanitised) snapshot with its figures' text descriptions, not the
    widget's Python repr."""
    from nbclient import NotebookClient
    from nbformat.v4 import new_code_cell, new_notebook

    nb = new_notebook(cells=[new_code_cell(
        "import plotly.graph_objects as go\nfrom tl_lab.widgets.common import FigureSlot, StatusLine\n"
        "import ipywidgets as W\n"
        "slot = FigureSlot(go.Figure(go.Bar(x=['raw pixels', 'frozen head'], y=[0.41, 0.83])))\nslot")],
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), old) if p)
    try:
        NotebookClient(nb, timeout=300, kernel_name="python3").execute()
    finally:
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old
    nbformat.write(nb, lab.server.root / "executed_elsewhere.ipynb")
    lab.open_notebook("executed_elsewhere.ipynb")
    output = lab.page.locator(".jp-OutputArea-output").first
    output.wait_for()
    lab.page.wait_for_function("() => document.querySelector('.jp-OutputArea-output .tl-snapshot') !== null")
    text = output.inner_text()
    assert "FigureSlot: a static snapshot" in text and "raw pixels 0.41, frozen head 0.83" in text
    assert "children=" not in text and "LightFigureWidget(" not in text
