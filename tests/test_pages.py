"""Offline pages: figures' static forms and text alternatives, widget snapshots, FigureSlot, the nbconvert
preprocessor and its shipped configuration (``jupyter nbconvert`` and JupyterLab's export through the server).

The lessons themselves, executed and opened in Chromium with the network refused, are in tests/browser/test_pages.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import ipywidgets as W
import nbformat
import plotly.graph_objects as go
import plotly.io as pio
import pytest
from nbformat.v4 import new_code_cell, new_notebook, new_output

from tl_lab.app import pages
from tl_lab.plots.static import FIGURE_CLASS, PLOTLY_MIME, PageRenderer, describe, static_figure_html
from tl_lab.widgets.common import FigureSlot, StatusLine
from tl_lab.widgets.light_figure import LOADER_ESM, REPLY, REQUEST, LightFigureWidget, plotly_widget_bundle
from tl_lab.widgets.snapshot import SNAPSHOT_CLASS, WIDGET_VIEW_MIME, snapshot_html, widget_bundle

REPO = Path(__file__).resolve().parents[1]
NBCONVERT_CONFIG_FILE = REPO / "jupyter-config" / "nbconvert" / "jupyter_nbconvert_config.json"
KERNEL = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}


def _bars() -> go.Figure:
    return go.Figure(go.Bar(x=["raw pixels", "scratch", "frozen head"], y=[0.412, 0.3, 0.8333]),
                     layout=dict(title="Which start wins?<br><span style='font-size:13px'>test accuracy</span>",
                                 yaxis_title="test accuracy"))


# ---- FigureSlot -------------------------------------------------------------------------------------------------


def test_figure_slot_shows_its_chart_again_after_a_caller_emptied_it():
    """BackboneChooser empties ``children`` before each new score; the next ``show`` must bring the chart back."""
    slot = FigureSlot(placeholder="the scores appear here")
    assert slot.children == (slot.placeholder,) and slot.widget is None
    slot.show(_bars())
    widget = slot.widget
    slot.children = ()                                   # what BackboneChooser.score() does to the verify charts
    slot.show(go.Figure(go.Scatter(y=[1, 3, 2])))        # the second "verify"
    assert slot.widget is widget, "the slot must refill its one widget, not make another"
    assert slot.children == (widget,), "the chart stayed hidden: children empty while .widget is set"
    assert slot.showing and [t.type for t in widget.data] == ["scatter"]


def test_figure_slot_clear_keeps_the_widget_for_the_next_show():
    slot = FigureSlot(_bars(), placeholder="nothing yet")
    widget = slot.widget
    slot.clear()
    assert slot.children == (slot.placeholder,) and not slot.showing
    slot.show(_bars())
    assert slot.children == (widget,) and slot.showing


def test_png_thumbnail_is_at_most_the_size_shown():
    import io

    import torch
    from PIL import Image

    from tl_lab.widgets.common import png_thumbnail

    image = torch.randint(0, 255, (3, 128, 96), dtype=torch.uint8)
    small = Image.open(io.BytesIO(png_thumbnail(image, 56)))
    assert small.size == (42, 56)                          # aspect kept, longest side 56
    same = Image.open(io.BytesIO(png_thumbnail(image, 200)))
    assert same.size == (96, 128)


def test_snapshot_stores_images_at_the_size_shown():
    import io

    import numpy as np
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (128, 128, 3), dtype=np.uint8)).save(buf, "PNG")
    image = W.Image(value=buf.getvalue(), format="png", width=56, height=56)
    html_form = snapshot_html(W.VBox([image]))
    data = html_form.split("base64,", 1)[1].split('"', 1)[0]
    import base64

    assert Image.open(io.BytesIO(base64.b64decode(data))).size == (56, 56)
    assert len(data) < len(buf.getvalue()) / 3


# ---- LightFigureWidget ----------------------------------------------------------------------------------------------


def test_light_figure_widget_state_has_no_plotly_bundle():
    fw = LightFigureWidget(_bars())
    state = fw.get_state()
    assert state["_esm"] == LOADER_ESM and len(LOADER_ESM) < 4_000
    assert len(json.dumps(state, default=str)) < 20_000      # plotly's own FigureWidget: ~5 MB
    plain = go.FigureWidget(_bars()).get_state()
    assert len(plain["_esm"]) > 4_000_000                    # the reason for this class (plotly 6/7)


def test_light_figure_widget_sends_plotly_bundle_when_the_page_asks(monkeypatch):
    fw = LightFigureWidget(_bars())
    sent = []
    monkeypatch.setattr(fw, "send", lambda content, buffers=None: sent.append(content))
    fw._handle_custom_msg({"type": "something else"}, [])
    assert sent == []
    fw._handle_custom_msg({"type": REQUEST}, [])
    assert [m["type"] for m in sent] == [REPLY]
    assert sent[0]["code"] == plotly_widget_bundle() and "FigureModel" in sent[0]["code"]


# ---- figures: text alternative and static form --------------------------------------------------------------------


def test_describe_lists_bar_values_title_and_axes():
    assert describe(_bars()) == ("Which start wins? test accuracy: bar chart. Axes: test accuracy. "
                                 "bar: raw pixels 0.412, scratch 0.3, frozen head 0.833.")


def test_describe_summarises_long_series_and_heatmaps():
    fig = go.Figure(go.Scatter(x=list(range(1, 31)), y=[0.1 + 0.02 * i for i in range(30)], name="val acc"))
    fig.add_trace(go.Heatmap(z=[[0.0, 0.5], [0.25, 1.0]], name="CKA"))
    text = describe(fig)
    assert ("val acc: 30 points from 1 to 30; first 0.1, last 0.68, highest 0.68 at 30, lowest 0.1 at 1" in text)
    assert "CKA: 2 x 2 cells, values from 0 to 1" in text


def test_describe_reads_plotly_typed_arrays():
    """Figures that went through plotly's JSON carry numpy data as base64 typed arrays."""
    import numpy as np

    d = json.loads(pio.to_json(go.Figure(go.Bar(x=["a", "b"], y=np.array([0.25, 0.5])))))
    assert isinstance(d["data"][0]["y"], dict) and "bdata" in d["data"][0]["y"]
    assert describe(d).endswith("bar: a 0.25, b 0.5.")


def test_page_renderer_bundle_has_live_static_and_text_forms():
    bundle = PageRenderer().to_mimebundle(_bars().to_dict())
    assert set(bundle) == {PLOTLY_MIME, "text/html", "text/plain"}
    assert bundle["text/plain"] == describe(_bars())
    html_form = bundle["text/html"]
    assert f'class="{FIGURE_CLASS}"' in html_form and 'role="img"' in html_form
    assert "frozen head" in html_form and len(html_form) < 20_000      # the figure, never plotly.js (4.8 MB)
    assert "Text description" in html_form


def test_static_figure_json_cannot_end_its_script_early():
    fig = go.Figure(go.Bar(x=["</script><b>x"], y=[1]))
    html_form = static_figure_html(fig)
    assert html_form.count("</script") == 2, "only the two script elements of the block may close"
    data = html_form.split('-json">', 1)[1].split("</script>", 1)[0]
    assert json.loads(data)["data"][0]["x"] == ["</script><b>x"]


def test_importing_plots_makes_tl_lab_the_renderer_in_a_kernel_only(monkeypatch):
    from tl_lab.plots.static import use_page_renderer

    monkeypatch.setattr(pio.renderers, "default", "browser")
    assert use_page_renderer() is False and pio.renderers.default == "browser"
    monkeypatch.setattr(pio.renderers, "default", "plotly_mimetype")
    assert use_page_renderer() is True and pio.renderers.default == "tl_lab"


def test_save_html_pages_describe_every_figure(tmp_path):
    from tl_lab.plots import save_html

    page = save_html([_bars(), go.Figure(go.Scatter(y=[1, 2]))], tmp_path / "p.html").read_text()
    assert page.count('role="img" aria-label="') == 2 and page.count("<summary>Text description</summary>") == 2
    assert "bar: raw pixels 0.412, scratch 0.3, frozen head 0.833." in page


# ---- widget snapshots ---------------------------------------------------------------------------------------------


def test_snapshot_shows_what_the_widget_shows_and_skips_hidden_parts():
    status = StatusLine("Scored 3 candidates")
    hidden = W.HTML("<p>secret</p>", layout=W.Layout(display="none"))
    slot = FigureSlot(_bars())
    empty = FigureSlot(placeholder="the curves appear here")
    tabs = W.Tab(children=[W.HTML("<p>first tab</p>"), W.HTML("<p>second tab</p>")], titles=("One", "Two"))
    tabs.selected_index = 1
    box = W.VBox([status, hidden, slot, empty, tabs, W.Dropdown(options=["clipart", "digits"], value="digits",
                                                                  description="dataset")])
    html_form = snapshot_html(box)
    assert SNAPSHOT_CLASS in html_form and "Scored 3 candidates" in html_form
    assert "secret" not in html_form
    assert html_form.count(f'class="{FIGURE_CLASS}"') == 1 and "frozen head" in html_form
    assert "the curves appear here" in html_form
    selected, other = html_form.index("second tab"), html_form.index("first tab")
    assert selected < other and "<summary>One (another tab)</summary><div><p>first tab" in html_form
    assert "dataset: <b>digits</b>" in html_form
    assert snapshot_html(box) == html_form, "a snapshot must be stable, or every cell would update it"


def test_widget_bundle_puts_snapshot_beside_the_live_view():
    slot = FigureSlot(_bars())
    bundle = widget_bundle(slot)
    assert bundle[WIDGET_VIEW_MIME]["model_id"] == slot.model_id
    assert SNAPSHOT_CLASS in bundle["text/html"]
    assert bundle["text/plain"] == "FigureSlot widget (run the notebook to use it)"  # never the children's repr


def test_a_widget_whose_snapshot_fails_still_shows_live(monkeypatch):
    from tl_lab.widgets import snapshot

    shown = []
    monkeypatch.setattr("IPython.display.display", lambda data, **kw: shown.append((data, kw)))
    monkeypatch.setattr(snapshot, "snapshot_html", lambda w: 1 / 0)
    slot = FigureSlot(_bars())
    snapshot._display(slot)
    (data, kw), = shown
    assert data[WIDGET_VIEW_MIME]["model_id"] == slot.model_id and "text/html" not in data
    assert "display_id" not in kw


# ---- the nbconvert preprocessor -------------------------------------------------------------------------------------


def _executed_like() -> nbformat.NotebookNode:
    """A notebook as a kernel leaves it: a plotly-only figure (plotly's own renderer), a tl_lab widget with its
    snapshot, a bare plotly FigureWidget (no snapshot) and the saved widget state."""
    plain = json.loads(pio.to_json(_bars()))
    slot = FigureSlot(go.Figure(go.Scatter(y=[1, 2, 4])))
    fw_state = {"_model_name": "AnyModel", "_esm": "x" * 200_000,
                "_widget_data": [{"type": "bar", "y": [3, 1]}], "_widget_layout": {"title": {"text": "bare"}}}
    cells = [
        new_code_cell("fig.show()", outputs=[new_output("display_data", data={PLOTLY_MIME: plain})]),
        new_code_cell("slot", outputs=[new_output("display_data", data=widget_bundle(slot))]),
        new_code_cell("fw", outputs=[new_output("display_data", data={
            "text/plain": "FigureWidget(...)", WIDGET_VIEW_MIME: {"model_id": "fw1", "version_major": 2,
                                                                   "version_minor": 0}})]),
    ]
    nb = new_notebook(cells=cells, metadata=dict(KERNEL))
    nb.metadata["widgets"] = {pages.WIDGET_STATE_MIME: {"state": {
        slot.model_id: {"model_name": "BoxModel", "state": {}},
        "fw1": {"model_name": "AnyModel", "state": fw_state}}, "version_major": 2, "version_minor": 0}}
    return nb


def test_preprocessor_gives_every_figure_and_widget_a_static_form_and_plotly_js_once():
    nb, _ = pages.OfflinePagePreprocessor().preprocess(_executed_like(), {})
    outs = [o for c in nb.cells for o in c.outputs]
    assert outs[0].metadata == {"tl_lab": "plotly.js"} and pages.PLOTLY_JS_MARK in outs[0].data["text/html"]
    assert sum(pages.PLOTLY_JS_MARK in str(o.get("data", {})) for o in outs) == 1
    assert len(outs[0].data["text/html"]) > 4_000_000                 # plotly.js from the plotly wheel, inlined
    assert FIGURE_CLASS in outs[1].data["text/html"]                   # plotly-only output got a static form
    assert WIDGET_VIEW_MIME not in outs[2].data and SNAPSHOT_CLASS in outs[2].data["text/html"]
    assert WIDGET_VIEW_MIME not in outs[3].data and "bare" in outs[3].data["text/html"]
    assert "widgets" not in nb.metadata                                 # nothing uses it: no CDN widget manager
    again, _ = pages.OfflinePagePreprocessor().preprocess(nb, {})
    assert sum(pages.PLOTLY_JS_MARK in str(o.get("data", {})) for c in again.cells for o in c.outputs) == 1


def test_preprocessor_keeps_state_for_other_widgets_without_plotly_bundles():
    nb = _executed_like()
    nb.cells.append(new_code_cell("slider", outputs=[new_output("display_data", data={
        "text/plain": "IntSlider(value=3)", WIDGET_VIEW_MIME: {"model_id": "s1", "version_major": 2,
                                                                "version_minor": 0}})]))
    nb.metadata["widgets"][pages.WIDGET_STATE_MIME]["state"]["s1"] = {"model_name": "IntSliderModel",
                                                                       "state": {"value": 3}}
    nb, _ = pages.OfflinePagePreprocessor().preprocess(nb, {})
    state = nb.metadata["widgets"][pages.WIDGET_STATE_MIME]["state"]
    assert state["s1"]["state"] == {"value": 3} and state["fw1"]["state"]["_esm"] == ""


def test_stock_html_exporter_with_the_shipped_config_shows_snapshots(tmp_path):
    from nbconvert import HTMLExporter
    from traitlets.config import Config

    shipped = json.loads(NBCONVERT_CONFIG_FILE.read_text())
    body, _ = HTMLExporter(config=Config(shipped)).from_notebook_node(_executed_like())
    assert body.count(f'class="{FIGURE_CLASS}"') == 3 and body.count(f'id="{pages.PLOTLY_JS_MARK}"') == 1
    assert "html-manager" not in body and 'type="application/vnd.jupyter.widget-view+json"' not in body


def test_shipped_configuration_files_turn_on_the_preprocessor():
    assert json.loads(NBCONVERT_CONFIG_FILE.read_text()) == pages.NBCONVERT_CONFIG
    server = json.loads((REPO / "jupyter-config" / "server-config" / "tl_lab_pages.json").read_text())
    assert server == {"ServerApp": {"jpserver_extensions": {"tl_lab.app.pages": True}}}
    assert pages._jupyter_server_extension_points() == [{"module": "tl_lab.app.pages"}]
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    shared = project["tool"]["hatch"]["build"]["targets"]["wheel"]["shared-data"]
    assert (shared["jupyter-config/nbconvert/jupyter_nbconvert_config.json"]
            == "etc/jupyter/jupyter_nbconvert_config.json")             # nbconvert reads no .d folder
    assert shared["jupyter-config/server-config"] == "etc/jupyter/jupyter_server_config.d"
    assert any(d.startswith("myst-nb") for d in project["project"]["optional-dependencies"]["test"])


def test_enable_in_server_keeps_other_preprocessors():
    from traitlets.config import Config

    class App:
        config = Config({"HTMLExporter": {"preprocessors": ["x.Other"]}})

    app = App()
    pages.enable_in_server(app)
    pages.enable_in_server(app)
    assert app.config.HTMLExporter.preprocessors == ["x.Other", pages.PREPROCESSOR]


def test_export_page_is_self_contained(tmp_path):
    path = tmp_path / "lesson.ipynb"
    nbformat.write(_executed_like(), path)
    body = pages.export_page(path)
    assert body.startswith("<!DOCTYPE html>") and body.count(f'class="{FIGURE_CLASS}"') == 3
    assert "cdnjs.cloudflare.com/ajax/libs/require.js" not in body
    assert pages.export_page(nbformat.read(path, as_version=4)) .count(pages.PLOTLY_JS_MARK) == 1
    with pytest.raises(FileNotFoundError, match="give an executed .ipynb"):
        pages.export_page(tmp_path / "missing.ipynb")


@pytest.mark.slow
def test_jupyter_nbconvert_finds_the_shipped_config(tmp_path):
    """``jupyter nbconvert --to html`` reads ``jupyter_nbconvert_config.json`` on the Jupyter config path, where the
    wheel installs it (``{sys.prefix}/etc/jupyter``)."""
    conf = tmp_path / "config"
    conf.mkdir()
    (conf / "jupyter_nbconvert_config.json").write_text(NBCONVERT_CONFIG_FILE.read_text())
    nbformat.write(_executed_like(), tmp_path / "lesson.ipynb")
    env = dict(os.environ, JUPYTER_CONFIG_PATH=str(conf), PYTHONPATH=str(REPO))
    done = subprocess.run([sys.executable, "-m", "jupyter", "nbconvert", "--to", "html", "lesson.ipynb"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    body = (tmp_path / "lesson.html").read_text()
    assert body.count(f'class="{FIGURE_CLASS}"') == 3 and body.count(f'id="{pages.PLOTLY_JS_MARK}"') == 1
    assert "is not able to be represented" not in done.stderr


@pytest.mark.slow
def test_executed_widget_leaves_small_state_and_an_up_to_date_snapshot(tmp_path):
    """In a kernel (nbclient, as ``jupyter nbconvert --execute``): a displayed tl_lab widget goes out with its
    snapshot, the snapshot follows the widget when a later cell changes it, and the saved state stays small."""
    from nbclient import NotebookClient

    nb = new_notebook(cells=[new_code_cell(src) for src in (
        "import plotly.graph_objects as go\nimport tl_lab.plots\n"
        "go.Figure(go.Bar(x=['a', 'b'], y=[0.25, 0.75])).show()",
        "from tl_lab.widgets.common import FigureSlot\nslot = FigureSlot(placeholder='nothing yet')\nslot",
        "slot.show(go.Figure(go.Scatter(x=[1, 2, 3], y=[0.5, 0.625, 0.875], name='val acc')))",
    )], metadata=dict(KERNEL))
    env_path = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = str(REPO) + (os.pathsep + env_path if env_path else "")
    try:
        NotebookClient(nb, timeout=300, kernel_name="python3").execute()
    finally:
        if env_path is None:
            os.environ.pop("PYTHONPATH")
        else:
            os.environ["PYTHONPATH"] = env_path
    fig_out, = nb.cells[0].outputs
    assert set(fig_out.data) == {PLOTLY_MIME, "text/html", "text/plain"}
    assert fig_out.data["text/plain"] == "Figure: bar chart. bar: a 0.25, b 0.75."
    widget_out, = nb.cells[1].outputs
    assert WIDGET_VIEW_MIME in widget_out.data
    assert "val acc: 1 0.5, 2 0.625, 3 0.875" in widget_out.data["text/html"], "snapshot not updated after cell 3"
    assert "nothing yet" not in widget_out.data["text/html"]
    assert 0 < pages.widget_state_bytes(nb) < 50_000
