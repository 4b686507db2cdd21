"""The FewShot widget in a real browser: pick one image per class, read the accuracy beside zero-shot and raw pixels,
add a second example per class with quick clicks and see the update land in well under a second, with the raw-pixel
number of the picks shown (not of earlier ones); reload the page and see the matrix of the last picks; in JupyterLab
and Notebook 7 (clip art's zero-shot row a number from its default terms), and as TransferLab's Few-shot tab."""

from __future__ import annotations

import re
from dataclasses import replace

import numpy as np
import pytest

from .conftest import write_notebook

pytestmark = pytest.mark.browser

WIDGET = ".tl-few-shot"
STATUS = f"{WIDGET} .tl-fewshot-status"
TITLE = f"{WIDGET} .tl-fewshot-figure .gtitle"
PER_CLASS = 6  # FewShot's gallery_per_class default
# no class_map: clip art's default terms give electronics its ImageNet classes (lesson 10 gives the same by hand)
CELL = ("from tl_lab.widgets import FewShot\n"
        "few = FewShot(dataset='clipart')\n"
        "few")


def _status(lab) -> str:
    return lab.page.locator(STATUS).inner_text().strip()


def _wait_status(lab, pattern: str, timeout: float = 30) -> str:
    lab.page.wait_for_function("([s, p]) => new RegExp(p).test(document.querySelector(s).innerText)",
                               arg=[STATUS, pattern], timeout=timeout * 1000)
    return _status(lab)


def _raw_pixels_on(per_class: list[int]) -> float:
    """The raw-pixel baseline computed here, apart from the kernel, on the first ``per_class[k]`` gallery images of
    each clip-art class (the gallery shows the first training images of each class, in class order)."""
    from tl_lab.data.baseline import baseline
    from tl_lab.data.datasets import load_dataset

    full = load_dataset("clipart")
    labels = full.train.labels.numpy()
    rows = [int(i) for k, n in enumerate(per_class) for i in np.flatnonzero(labels == k)[:n]]
    return baseline(replace(full, train=full.train.subset(rows)))["test_acc"]


@pytest.mark.parametrize("ui", ["lab", "notebook"])
def test_pick_one_image_per_class_then_a_second(lab, ui):
    write_notebook(lab.server.root / f"browser_few_shot_{ui}.ipynb", [CELL])
    lab.open_notebook(f"browser_few_shot_{ui}.ipynb", ui=ui)
    lab.run_all_cells(timeout=180)
    assert lab.error_outputs() == [], lab.error_outputs()
    widget = lab.page.locator(WIDGET)
    lab.visible_box(widget, min_width=400, min_height=100)
    # the gallery appears once the features are computed: 7 classes x 6 images, each with its pick button
    lab.page.wait_for_function("(n) => document.querySelectorAll('.tl-few-shot .tl-fewshot-pick').length === n",
                               arg=7 * PER_CLASS, timeout=180_000)
    assert "Pick at least one image of every class" in _status(lab)
    picks = widget.locator(".tl-fewshot-pick")
    for k in range(7):
        picks.nth(k * PER_CLASS).click()
    text = _wait_status(lab, r"Raw pixels on the same images: \d")
    # the first gallery image of each class is the 1-shot training image: lesson 10 measures 0.340 for it, and
    # 0.176 for raw pixels on it (section 2)
    assert re.search(r"Prototypes from 7 examples: test accuracy 0\.340", text), text
    assert f"Raw pixels on the same images: {_raw_pixels_on([1] * 7):.3f}." in text, text
    table = widget.locator(".tl-fewshot-table").inner_text()
    assert re.search(r"zero-shot \(no examples\)\s+0\.575", table), table
    lab.wait_for_plot(f"{WIDGET} .tl-fewshot-figure .js-plotly-plot", min_traces=1)

    for k in range(5):  # quick clicks, a second example for five classes, while the raw-pixel fits run
        picks.nth(k * PER_CLASS + 1).click()
    text = _wait_status(lab, r"Prototypes from 12 examples.*Raw pixels on the same images: \d")
    ms = int(re.search(r"updated in (\d+) ms", text).group(1))
    assert ms < 1000, text  # features are cached: the kernel's update is a mean per class and one distance matrix
    # issue 23: quick clicks left the raw-pixel number of earlier picks (0.190 where the 12 picks shown give 0.209)
    raw = f"{_raw_pixels_on([2] * 5 + [1] * 2):.3f}"
    assert text.endswith(f"Raw pixels on the same images: {raw}."), text
    table = widget.locator(".tl-fewshot-table").inner_text()
    assert re.search(rf"raw pixels \(same examples\)\s+{re.escape(raw)}", table), table
    lab.page.wait_for_function("([s, t]) => (document.querySelector(s) || {}).textContent?.includes(t)",
                               arg=[TITLE, "Prototypes from 12 picked images"], timeout=10_000)
    assert lab.truncated_texts(WIDGET) == []
    lab.screenshot("two-per-class", widget)
    lab.assert_clean_console()
    if ui != "lab":
        return
    # issue 23: a reloaded page showed the first picks' matrix; it draws from the widget's saved state
    lab.command("docmanager:save")
    lab.page.wait_for_function("() => !window.jupyterapp.shell.currentWidget.context.model.dirty")
    log = lab.page.console_log
    lab.page.reload()
    log.failed_requests[:] = [r for r in log.failed_requests if "net::ERR_ABORTED" not in r]
    lab.page.wait_for_function(
        "() => { const app = window.jupyterapp; const w = app && app.shell.currentWidget;"
        " return !!(w && w.content && w.context && w.context.isReady); }", timeout=60_000)  # fmt: skip
    lab.wait_for_plot(f"{WIDGET} .tl-fewshot-figure .js-plotly-plot", min_traces=1)
    title = lab.page.locator(TITLE).text_content()
    assert "Prototypes from 12 picked images" in title, title
    assert re.search(r"Prototypes from 12 examples", _status(lab))
    lab.assert_clean_console()


def test_few_shot_is_a_tab_of_the_dashboard(lab):
    lab.run_new_notebook("browser_few_shot_tab.ipynb", [
        "from tl_lab.widgets import TransferLab\n"
        "lab = TransferLab(dataset='digits', shots=5)\n"
        "lab",
    ], timeout=180)  # fmt: skip
    dashboard = lab.page.locator(".tl-transfer-lab")
    dashboard.locator(".lm-TabBar-tab", has_text="Few-shot").click()
    lab.visible_box(dashboard.locator(WIDGET), min_width=300, min_height=60)
    lab.page.wait_for_function("() => document.querySelectorAll('.tl-few-shot .tl-fewshot-pick').length === 60",
                               timeout=180_000)  # 10 digits x 6
    # the table is filled in the same kernel step as the gallery, but its widget may render a moment later
    lab.page.wait_for_function("(t) => document.querySelector('.tl-few-shot .tl-fewshot-table').innerText.includes(t)",
                               arg="ImageNet has no class that is a digit", timeout=10_000)
    table = dashboard.locator(".tl-fewshot-table").inner_text()
    assert "chance" in table, table
    assert lab.truncated_texts(".tl-transfer-lab") == []
    lab.assert_clean_console()
