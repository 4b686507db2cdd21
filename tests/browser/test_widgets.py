"""tl_lab's widgets in a real JupyterLab: training with live curves and Stop, the stage freezer's counts, the
feature and attribution views, the dashboard's tabs. Each test writes its own small notebook into the server's root, runs it, clicks
like a learner and checks what the page shows (and, for training, the checkpoint on disk)."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

# The live chart's plotly div: its .data is what plotly.js draws (the traces' points after every update).
CHART = ".tl-train-panel .tl-train-chart .js-plotly-plot"
MOST_POINTS = f"""() => {{
  const gd = document.querySelector('{CHART}');
  if (!gd || !gd.data) return -1;
  return Math.max(0, ...gd.data.map(t => (t.x || []).length));
}}"""


def test_train_live_curve_and_stop(lab):
    """Scenario 2: Train draws points live; Stop ends the run within seconds, with a table row and a checkpoint."""
    runs_root = lab.server.root / "tl_lab_runs"
    before = set(runs_root.glob("*/best.safetensors"))
    lab.run_new_notebook("browser_train.ipynb", [
        "from tl_lab import FreezePlan\n"
        "from tl_lab.widgets import TrainPanel\n"
        "# fine-tuning every stage (64 px, as in lesson 00) takes about a second per epoch on a CPU:\n"
        "# 60 epochs is a run long enough to watch and stop\n"
        "panel = TrainPanel(dataset='clipart', shots=10, image_size=64, plan=FreezePlan.fine_tune(), epochs=60,"
        " run_dir='tl_lab_runs')\n"
        "panel",
    ], timeout=180)  # fmt: skip

    panel = lab.page.locator(".tl-train-panel")
    lab.visible_box(panel, min_width=400, min_height=300)
    status = panel.locator(".tl-train-status")
    # the chosen data loads (and its raw-pixel baseline is measured) in the background: Ready once done
    lab.page.wait_for_function("(s) => document.querySelector(s).innerText.trim().startsWith('Ready')",
                               arg=".tl-train-panel .tl-train-status", timeout=60_000)  # fmt: skip
    assert "raw pixels score" in status.inner_text(), status.inner_text()
    lab.wait_for_plot(CHART, min_traces=4)  # one run's four traces (train/val loss and accuracy)
    assert lab.js(MOST_POINTS) == 0  # the placeholder figure: traces with no points yet
    assert_title_fits(lab, CHART)  # drawn by the widget's first render, before it was on screen
    assert lab.truncated_texts(".tl-train-panel") == []

    panel.locator("button.tl-train").click()
    lab.page.wait_for_function("(s) => document.querySelector(s).innerText.trim().startsWith('Training')",
                               arg=".tl-train-panel .tl-train-status")  # fmt: skip
    # The curve gains points while training runs: one, then another, with Training still in the status.
    lab.page.wait_for_function(f"() => ({MOST_POINTS})() >= 1", timeout=120_000)
    first = lab.js(MOST_POINTS)
    lab.page.wait_for_function(f"(n) => ({MOST_POINTS})() > n", arg=first, timeout=120_000)
    assert status.inner_text().strip().startswith("Training"), status.inner_text()
    lab.visible_box(panel.locator(".tl-train-chart .main-svg"), min_width=300, min_height=200)
    lab.screenshot("training", panel.locator(".tl-train-chart"))

    clicked = time.monotonic()
    panel.locator("button.tl-stop").click()
    lab.page.wait_for_function("(s) => document.querySelector(s).innerText.trim().startsWith('Stopped')",
                               arg=".tl-train-panel .tl-train-status", timeout=30_000)  # fmt: skip
    stop_s = time.monotonic() - clicked
    lab.page.wait_for_function("() => document.querySelectorAll('table.tl-run-table tbody tr').length >= 1",
                               timeout=30_000)  # fmt: skip
    row_s = time.monotonic() - clicked
    print(f"stop took {stop_s:.1f} s from the click to 'Stopped' on the page, {row_s:.1f} s to the run's row")
    assert stop_s < 20, f"the run took {stop_s:.1f} s to stop"
    text = status.inner_text()
    assert "stopped" in text.lower()

    rows = panel.locator("table.tl-run-table tbody tr")
    assert rows.count() >= 1
    assert "fine-tune" in rows.first.inner_text(), rows.first.inner_text()
    epochs_drawn = lab.js(MOST_POINTS)
    assert 2 <= epochs_drawn < 60

    # The best checkpoint is on disk under the server root's tl_lab_runs/, and the status names it.
    new = set(runs_root.glob("*/best.safetensors")) - before
    assert len(new) == 1, f"expected one new best checkpoint under {runs_root}, found {sorted(new)}"
    ckpt = new.pop()
    assert ckpt.stat().st_size > 1000
    named = re.search(r"Best checkpoint: (\S+\.safetensors)", text)
    assert named, text
    shown = Path(named.group(1))  # relative paths are relative to the kernel's folder: the server root
    assert (shown if shown.is_absolute() else lab.server.root / shown).resolve() == ckpt.resolve(), text
    lab.screenshot("stopped", panel.locator("table.tl-run-table"))
    lab.assert_clean_console()


def test_keep_old_task_control_and_imagenet_kept_column(lab):
    """The remedy menu reads whole for every choice; a fine-tune run with LwF shows its remedy and its "ImageNet
    kept" numbers in the runs table, and the frozen-head run 1.000."""
    lab.run_new_notebook("browser_keep_old_task.ipynb", [
        "import tl_lab\nfrom tl_lab.widgets import TrainPanel\n"
        "panel = TrainPanel(dataset='digits', shots=2, image_size=32, epochs=2, run_dir='tl_lab_runs/keep')\n"
        "panel.add_run(tl_lab.fit('efficientnet_lite0', panel.state.data(), epochs=2, progress=False,"
        " save_checkpoints=False))\n"
        "panel",
    ], timeout=180)  # fmt: skip
    panel = lab.page.locator(".tl-train-panel")
    lab.page.wait_for_function("(s) => document.querySelector(s).innerText.trim().startsWith('Ready')",
                               arg=".tl-train-panel .tl-train-status", timeout=60_000)  # fmt: skip
    from tl_lab.widgets.keep_old_task import REMEDY_CHOICES
    from tl_lab.widgets.train_panel import PLAN_CHOICES

    menu = panel.locator(".tl-keep-old-task select")
    for label, _ in REMEDY_CHOICES:  # every choice reads whole when chosen
        menu.select_option(label=label)
        assert lab.truncated_texts(".tl-train-panel") == [], label
    menu.select_option(label="LwF: learning without forgetting")
    fine_tune = next(label for label, value in PLAN_CHOICES if value == "fine_tune")
    panel.locator(".tl-plan-choice select").select_option(label=fine_tune)
    lab.screenshot("controls", panel.locator(".tl-keep-old-task-box"))
    lab.page.wait_for_function("(s) => document.querySelector(s).value == '1'", arg=".tl-remedy-strength input",
                               timeout=10_000)  # fmt: skip
    panel.locator("button.tl-train").click()
    lab.page.wait_for_function("(s) => document.querySelector(s).innerText.trim().startsWith('Finished')",
                               arg=".tl-train-panel .tl-train-status", timeout=120_000)  # fmt: skip
    # the row comes first; what the run kept of ImageNet is measured in the background and fills in after
    lab.page.wait_for_function("() => !document.querySelector('.tl-train-panel').innerText.includes('measuring')",
                               timeout=60_000)  # fmt: skip
    table = panel.locator("table.tl-run-table")
    headers = [h.strip() for h in table.locator("th").all_inner_texts()]
    assert headers[4:7] == ["keep old task", "ImageNet kept (photos)", "ImageNet kept (test images)"], headers
    rows = [r.split("\t") for r in table.locator("tbody tr").all_inner_texts()]
    assert [r[4:7] for r in rows][0] == ["none", "1.000", "1.000"], rows
    assert rows[1][4] == "LwF 1" and all(re.fullmatch(r"[01]\.\d{3}", v) for v in rows[1][5:7]), rows
    assert "ImageNet kept:" in panel.locator(".tl-kept-note").inner_text()
    lab.visible_box(table, min_width=600, min_height=60)
    lab.screenshot("table", table)
    lab.assert_clean_console()


def _trainable(stage: str | None) -> int:
    """The number the freezer must show: FreezePlan.summary on the same (1000-class, random-init) architecture."""
    from tl_lab import FreezePlan, load_backbone

    bb = load_backbone("efficientnet_lite0", pretrained=False)
    count = FreezePlan(trainable_from=stage).summary(bb).trainable
    params = bb.stage_parameters()
    start = bb.stages.index(stage) if stage else 0
    assert count == sum(params[s] for s in bb.stages[start:])  # the same number counted stage by stage
    return count


def _shown_count(lab) -> int:
    return int(lab.page.locator(".tl-stage-freezer .tl-trainable-value").inner_text().replace(",", ""))


def test_freezer_count_follows_the_stage(lab):
    """Scenario 3: clicking another stage changes the trainable-parameter count on the page to the right number."""
    lab.run_new_notebook("browser_freezer.ipynb", [
        "from tl_lab.widgets import StageFreezer\nfreezer = StageFreezer('efficientnet_lite0')\nfreezer",
    ], timeout=120)  # fmt: skip
    freezer = lab.page.locator(".tl-stage-freezer")
    lab.visible_box(freezer, min_width=300, min_height=100)
    toggles = freezer.locator(".tl-stage-toggle")
    names = [t.strip() for t in toggles.all_inner_texts()]
    assert names[0] == "stem" and names[-1] == "head" and "stage6" in names, names
    assert lab.truncated_texts(".tl-stage-freezer") == []  # the BatchNorm dropdown's option text included
    from tl_lab.widgets.freezer import BN_CHOICES

    for label, _policy in BN_CHOICES[1:]:  # every BatchNorm choice reads whole when chosen
        freezer.locator(".tl-bn-policy select").select_option(label=label)
        lab.page.wait_for_function("(t) => [...document.querySelectorAll('.tl-stage-freezer select')].some("
                                   "s => s.options[s.selectedIndex] && s.options[s.selectedIndex].text.replace(/\\u00a0/g, ' ') === t)",
                                   arg=label)  # fmt: skip
        assert lab.truncated_texts(".tl-stage-freezer") == [], label

    assert _shown_count(lab) == _trainable("head")  # the default plan: only the new head trains
    expected = {stage: _trainable(stage) for stage in ("stage6", "stage3")}
    for stage, count in expected.items():
        toggles.filter(has_text=re.compile(rf"^\s*{stage}\s*$")).click()
        lab.page.wait_for_function(
            "(n) => document.querySelector('.tl-stage-freezer .tl-trainable-value').innerText.replace(/,/g, '') == n",
            arg=str(count),
        )
        assert _shown_count(lab) == count
    lab.screenshot("stage3", freezer)
    lab.assert_clean_console()


# A drawn image inside a plotly figure: heatmaps and go.Image traces are <image> elements in the SVG; some
# renderers use a <canvas>. Either must have a real size.
DRAWN = """(sel) => {
  const root = document.querySelector(sel);
  if (!root) return false;
  return [...root.querySelectorAll('.js-plotly-plot image, .js-plotly-plot canvas')].some(el => {
    const r = el.getBoundingClientRect();
    return r.width > 20 && r.height > 20;
  });
}"""


def test_feature_and_attribution_views_draw_images(lab):
    """Scenario 4: Show in the feature explorer and the attribution explorer draws image/heatmap figures."""
    lab.run_new_notebook("browser_views.ipynb", [
        "from tl_lab.widgets import FeatureExplorer\nexplorer = FeatureExplorer(dataset='clipart')\nexplorer",
        "from tl_lab.widgets import AttributionExplorer\n"
        "attributions = AttributionExplorer(dataset='clipart', methods=('saliency', 'integrated_gradients',"
        " 'grad_cam'))\nattributions",
    ], timeout=180)  # fmt: skip

    for box, figure in ((".tl-feature-explorer", ".tl-feature-figure"),
                        (".tl-attribution-explorer", ".tl-attribution-figure")):  # fmt: skip
        view = lab.page.locator(box)
        lab.visible_box(view, min_width=300, min_height=100)
        assert lab.truncated_texts(box) == []  # every label and button readable
        view.locator("button.tl-show").click()
        lab.page.wait_for_function(DRAWN, arg=f"{box} {figure}", timeout=120_000)
        plot = view.locator(f"{figure} .js-plotly-plot").first
        lab.visible_box(plot, min_width=200, min_height=150)
        lab.screenshot(box.strip(".").replace("tl-", ""), plot)
        assert lab.overflowing_figures(box) == []  # the feature maps' fifth column was cut at 1000 px
        assert lab.overlapping_texts(box) == []  # "Saliency (gradient)" ran into "Integrated Gradients"
    lab.assert_clean_console()


# The title block (question + grey subtitle lines) lies inside the figure and above the plotting area. plotly.js
# lays text out by measuring it, which gives zero sizes for a chart drawn while not on screen (a FigureWidget's
# first render, a hidden tab): plotly's own subtitle was then drawn above the title, so base_layout writes one block.
TITLE_FITS = """(sel) => {
  const gd = document.querySelector(sel);
  const t = gd && gd.querySelector('.gtitle'), drag = gd ? [...gd.querySelectorAll('.nsewdrag')] : [];
  if (!t || !drag.length) return null;
  const a = t.getBoundingClientRect(), g = gd.getBoundingClientRect();
  const plotTop = Math.min(...drag.map(d => d.getBoundingClientRect().top));
  const lines = t.querySelectorAll('tspan.line').length;
  return {title_top: a.top - g.top, title_bottom: a.bottom - g.top, plot_top: plotTop - g.top, lines,
          ok: a.height > 0 && a.top >= g.top && a.bottom <= plotTop};
}"""


def assert_title_fits(lab, chart: str) -> None:
    try:
        lab.page.wait_for_function(f"(s) => {{ const r = ({TITLE_FITS})(s); return r && r.ok; }}", arg=chart,
                                   timeout=20_000)
    finally:
        lab.screenshot("chart-title", lab.page.locator(chart))
    box = lab.js(f"() => ({TITLE_FITS})('{chart}')")
    assert box["ok"] and box["lines"] >= 2, box  # the question and its subtitle, both readable


def test_dashboard_chart_in_a_tab_is_laid_out_when_shown(lab):
    """TransferLab's Train chart is created while its tab is hidden; opening the tab shows it with a readable title."""
    lab.run_new_notebook("browser_dashboard.ipynb", [
        "from tl_lab.widgets import TransferLab\n"
        "lab = TransferLab(dataset='digits', shots=5, image_size=64)\n"
        "lab",
    ], timeout=180)  # fmt: skip
    dashboard = lab.page.locator(".tl-transfer-lab")
    lab.visible_box(dashboard, min_width=400, min_height=200)
    assert lab.truncated_texts(".tl-transfer-lab") == []  # the Backbone tab's labels
    dashboard.locator(".lm-TabBar-tab", has_text="Train").click()
    chart = ".tl-transfer-lab .tl-train-chart .js-plotly-plot"
    lab.visible_box(lab.page.locator(chart + " .main-svg"), min_width=300, min_height=200)
    assert lab.truncated_texts(".tl-transfer-lab") == []  # and the Train tab's
    lab.wait_for_plot(chart, min_traces=4)
    assert_title_fits(lab, chart)
    for title, box in (("Freeze", ".tl-stage-freezer"), ("Inside", ".tl-feature-explorer"),
                       ("Attributions", ".tl-attribution-explorer"), ("Compare", ".tl-compare-runs")):  # fmt: skip
        dashboard.locator(".lm-TabBar-tab", has_text=title).click()
        lab.visible_box(dashboard.locator(box), min_width=300, min_height=60)
        assert lab.truncated_texts(".tl-transfer-lab") == [], title
    # the Inside tab's feature maps fit its box (1000 px in a 932 px box cut the fifth column)
    dashboard.locator(".lm-TabBar-tab", has_text="Inside").click()
    dashboard.locator(".tl-feature-explorer button.tl-show").click()
    lab.page.wait_for_function(DRAWN, arg=".tl-transfer-lab .tl-feature-explorer .tl-feature-figure",
                               timeout=120_000)  # fmt: skip
    lab.screenshot("inside-tab", dashboard.locator(".tl-feature-explorer .tl-feature-figure").first)
    assert lab.overflowing_figures(".tl-transfer-lab .tl-feature-explorer") == []
    lab.assert_clean_console()


def test_train_chart_comes_back_with_its_runs_after_a_reload(lab):
    """A reloaded page draws the Train chart from the widget's saved state: it must hold the epochs drawn since."""
    lab.run_new_notebook("browser_reload.ipynb", [
        "import tl_lab\nfrom tl_lab.widgets import TrainPanel\n"
        "panel = TrainPanel(dataset='digits', shots=2)\npanel",
        "run = tl_lab.fit('efficientnet_lite0', tl_lab.load_dataset('digits', shots=2), epochs=3, progress=False,"
        " run_dir='tl_lab_runs/reload')\npanel.add_run(run)",
    ], timeout=180)  # fmt: skip
    lab.page.wait_for_function(f"() => ({MOST_POINTS})() == 3", timeout=60_000)
    rows = lab.page.locator(".tl-train-panel table.tl-run-table tbody tr").count()
    lab.command("docmanager:save")  # the outputs (the widget views) must be in the file to come back
    lab.page.wait_for_function("() => !window.jupyterapp.shell.currentWidget.context.model.dirty")
    lab.assert_clean_console()
    log = lab.page.console_log
    lab.page.reload()
    # requests the old page still had open (the file browser's polling) are aborted by the reload itself
    log.failed_requests[:] = [r for r in log.failed_requests if "net::ERR_ABORTED" not in r]
    lab.page.wait_for_function(
        "() => { const app = window.jupyterapp; const w = app && app.shell.currentWidget;"
        " return !!(w && w.content && w.context && w.context.isReady); }", timeout=60_000)  # fmt: skip
    lab.visible_box(lab.page.locator(".tl-train-panel"), min_width=400, min_height=300)
    assert lab.page.locator(".tl-train-panel table.tl-run-table tbody tr").count() == rows == 2
    lab.page.wait_for_function(f"() => ({MOST_POINTS})() == 3", timeout=60_000)  # the run's three epochs
    lab.screenshot("reloaded", lab.page.locator(".tl-train-chart"))
    lab.assert_clean_console()
