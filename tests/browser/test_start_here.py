"""Scenarios 1 and 5: the first lesson, run top to bottom (TL_LAB_FAST=1) in JupyterLab and in Notebook 7, shows
no error and renders its widgets and plotly charts."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.browser

LESSON = "00_start_here.ipynb"

# Every widget output (JupyterLab puts a widget view's root, class jupyter-widgets, straight in the output node)
# and every plotly chart that the page lays out: width and height, and whether a plotly chart has drawn its SVG.
# Charts inside a hidden parent (an unselected tab) have no layout box and are reported as hidden, not as broken.
RENDERED = """() => {
  const size = el => { const r = el.getBoundingClientRect(); return [Math.round(r.width), Math.round(r.height)]; };
  const shown = el => el.offsetParent !== null || getComputedStyle(el).position === 'fixed';
  const widgets = [...document.querySelectorAll(
      '.jp-OutputArea-output:has(> .jupyter-widgets)')]
    .map(el => ({size: size(el), shown: shown(el), text: el.innerText.slice(0, 80)}));
  const plots = [...document.querySelectorAll('.js-plotly-plot')]
    .map(el => ({size: size(el), shown: shown(el), svg: el.querySelectorAll('.main-svg').length}));
  return {widgets, plots};
}"""


def _check_rendered(lab) -> dict:
    """The widgets and charts the lesson displayed are on the page with a real size; returns what was found."""
    expected = lab.js("""() => window.jupyterapp.shell.currentWidget.content.widgets
        .filter(c => c.model.type === 'code')
        .flatMap(c => c.model.outputs.toJSON())
        .filter(o => o.data && o.data['application/vnd.jupyter.widget-view+json']).length""")
    # plotly.js loads in the background: wait until every widget output has content and the charts have drawn.
    ready = """(n) => {
          const outs = [...document.querySelectorAll(
            '.jp-OutputArea-output:has(> .jupyter-widgets)')];
          if (outs.length < n || outs.some(o => o.innerText.includes('Loading widget'))) return false;
          const plots = [...document.querySelectorAll('.js-plotly-plot')].filter(p => p.offsetParent !== null);
          return plots.every(p => p.querySelector('.main-svg'));
        }"""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        lab.page.wait_for_function(ready, arg=expected, timeout=60_000)
    except PlaywrightTimeout:
        pytest.fail(f"widgets/charts not rendered after 60 s; expected {expected} widget outputs, page has "
                    f"{lab.js(RENDERED)}")
    found = lab.js(RENDERED)
    assert expected >= 1, "the lesson displays no widget"
    assert len(found["widgets"]) == expected, found
    for w in found["widgets"]:
        assert w["shown"] and w["size"][0] > 100 and w["size"][1] > 20, f"widget output without a size: {w}"
    shown = [p for p in found["plots"] if p["shown"]]
    assert shown, f"no plotly chart is visible: {found['plots']}"
    for p in shown:
        assert p["svg"] >= 1 and p["size"][0] > 200 and p["size"][1] > 150, f"chart not drawn: {p}"
    return found


@pytest.mark.parametrize("ui", ["lab", "notebook"])
def test_start_here_runs_and_renders(lab, ui):
    """Scenario 1 (``lab``: JupyterLab) and 5 (``notebook``: Notebook 7 at /notebooks/<path>)."""
    assert (lab.server.root / LESSON).exists(), f"{LESSON} is missing from the lessons"
    lab.open_notebook(LESSON, ui=ui)
    state = lab.run_all_cells(timeout=400)
    assert state["executed"] == state["cells"] > 0
    assert lab.error_outputs() == [], lab.error_outputs()
    stderr = lab.stderr_outputs()
    assert not [t for t in stderr if "Traceback" in t], stderr  # a traceback printed by a callback or thread
    found = _check_rendered(lab)
    print(f"{ui}: {len(found['widgets'])} widget outputs, {len(found['plots'])} plotly charts "
          f"({sum(p['shown'] for p in found['plots'])} visible), {len(stderr)} stderr outputs {stderr}")
    first = lab.page.locator(".js-plotly-plot:visible").first
    lab.screenshot("first-chart", first)
    dashboard = lab.page.locator(".tl-transfer-lab")
    lab.visible_box(dashboard, min_width=400, min_height=200)
    lab.screenshot("dashboard", dashboard)
    if ui == "lab":
        _visit_tabs(lab, dashboard)
    lab.assert_clean_console()


# The dashboard's tabs, and the class of the widget each one shows (the contract's DOM classes).
TABS = {"Backbone": ".tl-backbone-picker", "Freeze": ".tl-stage-freezer", "Train": ".tl-train-panel",
        "Inside": ".tl-feature-explorer", "Attributions": ".tl-attribution-explorer", "Compare": ".tl-compare-runs",
        "Few-shot": ".tl-few-shot", "Shift": ".tl-shift-lab", "Mistakes": ".tl-mistakes"}


def _visit_tabs(lab, dashboard) -> None:
    """Every tab of TransferLab shows its widget with a size; the Train tab's chart holds the lesson's two runs."""
    tabs = dashboard.locator(".lm-TabBar-tab")
    assert tabs.count() == len(TABS), tabs.all_inner_texts()
    for title, box in TABS.items():
        dashboard.locator(".lm-TabBar-tab", has_text=title).click()
        lab.visible_box(dashboard.locator(box), min_width=300, min_height=60)
        if title == "Train":
            chart = dashboard.locator(".tl-train-chart .js-plotly-plot")
            lab.visible_box(chart.locator(".main-svg"), min_width=300, min_height=200)
            lab.wait_for_plot(".tl-transfer-lab .tl-train-chart .js-plotly-plot", min_traces=8)  # 2 runs x 4
            runs = lab.js("""() => new Set(document.querySelector('.tl-transfer-lab .tl-train-chart .js-plotly-plot')
                               .data.filter(t => (t.x || []).length > 0).map(t => t.legendgroup || t.name)).size""")
            assert runs >= 2, f"the Train tab's chart should show the lesson's two runs, shows {runs}"
            assert dashboard.locator("table.tl-run-table tbody tr").count() >= 2
            lab.screenshot("dashboard-train", chart)
