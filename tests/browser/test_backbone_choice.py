"""'Which one for my data?' in a real JupyterLab and Notebook 7: the Backbone tab's chooser scores the offline
backbones and draws the score bars; the picker above it lists the three embedded networks with their cost."""

from __future__ import annotations

import time

import pytest

from tests.browser.conftest import write_notebook

pytestmark = pytest.mark.browser

BARS = ".tl-backbone-chooser .tl-ranking-figure .js-plotly-plot"
STATUS = ".tl-backbone-chooser .tl-score-status"


@pytest.mark.parametrize("ui", ["lab", "notebook"])
def test_backbone_tab_scores_and_shows_the_chart(lab, ui):
    name = f"browser_backbone_choice_{ui}.ipynb"
    write_notebook(lab.server.root / name, [
        "from tl_lab.widgets import TransferLab\n"
        "lab = TransferLab(dataset='clipart', shots=10)\n"
        "lab.chooser.backbones = ['efficientnet_lite0', 'efficientnet_lite1']  # two networks keep the test short\n"
        "lab.chooser.image_size = 32\n"
        "lab",
    ])  # fmt: skip
    lab.open_notebook(name, ui=ui)
    lab.run_all_cells(timeout=180)
    assert lab.error_outputs() == [], lab.error_outputs()
    chooser = lab.page.locator(".tl-backbone-chooser")
    lab.visible_box(chooser, min_width=400, min_height=60)
    # the picker's cost table: the three embedded networks with parameters, ImageNet top-1 and measured images/s
    lab.page.wait_for_function("() => document.querySelectorAll('table.tl-cost-table tbody tr').length === 3",
                               timeout=120_000)  # fmt: skip
    costs = lab.page.locator("table.tl-cost-table").inner_text()
    assert "efficientnet_lite2" in costs and "77.6%" in costs and "6,092,072" in costs, costs

    chooser.locator("button.tl-score-backbones").click()
    lab.page.wait_for_function("() => document.querySelector('.tl-backbone-chooser').innerText.includes('Scored')",
                               timeout=180_000)  # fmt: skip
    lab.wait_for_plot(BARS, min_traces=2)  # LogME and LEEP panels
    bars = lab.js(f"""() => document.querySelector('{BARS}').data
        .filter(t => t.type === 'bar').map(t => t.y.length)""")
    assert bars == [4, 4], bars  # two networks, each pretrained and at random init
    lab.visible_box(chooser.locator(".tl-ranking-figure .main-svg"), min_width=300, min_height=150)
    assert not chooser.locator("button.tl-verify-backbones").is_disabled()
    assert lab.truncated_texts(".tl-backbone-chooser") == []
    lab.screenshot(f"scores-{ui}", chooser.locator(".tl-ranking-figure"))
    lab.assert_clean_console()


CHECK_CHART = """() => {
  const slot = document.querySelectorAll('.tl-backbone-chooser .tl-ranking-figure')[1];  // scores, check, cost
  if (!slot) return null;
  const gd = slot.querySelector('.js-plotly-plot');
  const box = slot.getBoundingClientRect();
  return {shown: box.height > 100 && box.width > 300,
          points: gd && gd.data ? gd.data.filter(t => t.type === 'scatter' && (t.x || []).length > 1)
                                          .map(t => t.x.length) : [], traces: gd && gd.data ? gd.data.length : -1,
          box: [box.width, box.height], display: getComputedStyle(slot).display};
}"""


def test_verification_charts_come_back_after_a_second_score(lab):
    """Score, verify, score again, verify again: the second verification's charts are drawn on the page (a second
    scoring once emptied the slots' children for good, so they never came back)."""
    write_notebook(lab.server.root / "browser_backbone_rescore.ipynb", [
        "from tl_lab.widgets import BackboneChooser\n"
        "chooser = BackboneChooser(dataset='clipart', shots=5, backbones=['efficientnet_lite0'], image_size=32)\n"
        "chooser",
    ])  # fmt: skip
    lab.open_notebook("browser_backbone_rescore.ipynb")
    lab.run_all_cells(timeout=180)
    chooser = lab.page.locator(".tl-backbone-chooser")
    status = "() => document.querySelector('.tl-backbone-chooser .tl-score-status').innerText.trim()"
    for attempt in (1, 2):
        chooser.locator("button.tl-score-backbones").click()
        lab.page.wait_for_function(f"() => ({status})().startsWith('Scored')", timeout=180_000)
        assert lab.js(CHECK_CHART)["shown"] is False, f"score {attempt}: the last verification is hidden"
        chooser.locator("button.tl-verify-backbones").click()
        lab.page.wait_for_function(f"() => ({status})().startsWith('Trained')", timeout=300_000)
        deadline = time.monotonic() + 60  # plotly.js applies the figure a moment after the kernel sent it
        while not ((chart := lab.js(CHECK_CHART)) and chart["shown"] and chart["points"]) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert chart["shown"] and chart["points"], (attempt, chart)
        assert all(n == 2 for n in chart["points"]), (attempt, chart)  # pretrained + random init
    lab.screenshot("verified-twice", chooser.locator(".tl-ranking-figure").nth(1))
    lab.assert_clean_console()
