"""The browser harness itself: JupyterLab renders ipywidgets and a plotly FigureWidget (anywidget front-end) that a
kernel thread updates. Independent of tl_lab's widgets, so a failure here means the harness or the front-ends."""

from __future__ import annotations

import pytest

from .conftest import write_notebook

pytestmark = pytest.mark.browser

SMOKE_CELLS = [
    """\
import threading, time
import ipywidgets as widgets
import plotly.graph_objects as go

fig = go.FigureWidget(go.Scatter(x=[0], y=[0], mode="lines+markers"))
fig.layout.height = 300
stop = threading.Event()

def feed():
    i = 0
    while not stop.is_set() and i < 200:
        i += 1
        with fig.batch_update():
            fig.data[0].x = tuple(fig.data[0].x) + (i,)
            fig.data[0].y = tuple(fig.data[0].y) + (i * i,)
        time.sleep(0.1)

go_button = widgets.Button(description="Go")
go_button.add_class("smoke-go")
go_button.on_click(lambda _: threading.Thread(target=feed, daemon=True).start())
stop_button = widgets.Button(description="Halt")
stop_button.add_class("smoke-stop")
stop_button.on_click(lambda _: stop.set())
box = widgets.VBox([widgets.HBox([go_button, stop_button]), fig])
box.add_class("smoke-box")
box""",
]


@pytest.mark.parametrize("ui", ["lab", "notebook"])
def test_widgets_and_live_plotly_render(lab, ui):
    write_notebook(lab.server.root / "smoke.ipynb", SMOKE_CELLS)
    lab.open_notebook("smoke.ipynb", ui=ui)
    state = lab.run_all_cells(timeout=120)
    assert state["executed"] == state["cells"] == 1
    assert lab.error_outputs() == []

    box = lab.page.locator(".smoke-box")
    lab.visible_box(box, min_width=300, min_height=200)
    chart = box.locator(".js-plotly-plot")
    lab.visible_box(chart.locator(".main-svg"), min_width=300, min_height=200)

    count = "() => document.querySelector('.smoke-box .js-plotly-plot').data[0].x.length"
    at_least = "(n) => document.querySelector('.smoke-box .js-plotly-plot').data[0].x.length >= n"
    lab.wait_for_plot(".smoke-box .js-plotly-plot")
    assert lab.js(count) == 1
    box.locator(".smoke-go").click()
    lab.page.wait_for_function(at_least, arg=6)  # the kernel thread's points reach the page while it runs
    lab.screenshot("live-chart", box)
    box.locator(".smoke-stop").click()
    assert lab.js(count) >= 6
    assert box.locator(".js-plotly-plot .scatterlayer .trace path.js-line").count() == 1
    lab.assert_clean_console()


def test_console_check_catches_a_widget_error(lab):
    """The console check is not vacuous: a widget whose front-end throws is reported by assert_clean_console."""
    write_notebook(lab.server.root / "broken_widget.ipynb", [
        "import anywidget, traitlets\n"
        "class Broken(anywidget.AnyWidget):\n"
        "    _esm = \"function render({ el }) { el.textContent = 'about to fail'; throw new Error('tl-test-boom'); }"
        " export default { render };\"\n"
        "Broken()",
    ])  # fmt: skip
    lab.open_notebook("broken_widget.ipynb")
    lab.run_all_cells(timeout=120)
    lab.page.wait_for_function(
        "() => document.body.innerText.includes('about to fail') || document.body.innerText.includes('tl-test-boom')"
    )
    with pytest.raises(AssertionError, match="tl-test-boom"):
        lab.assert_clean_console()
