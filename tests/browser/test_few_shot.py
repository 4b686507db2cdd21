"""The FewShot widget in a real browser: pick one image per class, read the accuracy beside zero-shot and raw pixels,
add a second example per class and see the update land in well under a second; in JupyterLab and Notebook 7, and as
TransferLab's Few-shot tab."""

from __future__ import annotations

import re

import pytest

from .conftest import write_notebook

pytestmark = pytest.mark.browser

WIDGET = ".tl-few-shot"
STATUS = f"{WIDGET} .tl-fewshot-status"
PER_CLASS = 6  # FewShot's gallery_per_class default
CELL = ("from tl_lab.widgets import FewShot\n"
        "few = FewShot(dataset='clipart', class_map={'electronics': ['electronic equipment', 'computer']})\n"
        "few")


def _status(lab) -> str:
    return lab.page.locator(STATUS).inner_text().strip()


def _wait_status(lab, pattern: str, timeout: float = 30) -> str:
    lab.page.wait_for_function("([s, p]) => new RegExp(p).test(document.querySelector(s).innerText)",
                               arg=[STATUS, pattern], timeout=timeout * 1000)
    return _status(lab)


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
    # the first gallery image of each class is the 1-shot training image: lesson 10 measures 0.340 for it
    assert re.search(r"Prototypes from 7 examples: test accuracy 0\.340", text), text
    table = widget.locator(".tl-fewshot-table").inner_text()
    assert re.search(r"zero-shot \(no examples\)\s+0\.575", table), table
    lab.wait_for_plot(f"{WIDGET} .tl-fewshot-figure .js-plotly-plot", min_traces=1)

    for k in range(7):  # a second example per class
        picks.nth(k * PER_CLASS + 1).click()
    text = _wait_status(lab, r"Prototypes from 14 examples")
    ms = int(re.search(r"updated in (\d+) ms", text).group(1))
    assert ms < 1000, text  # features are cached: the kernel's update is a mean per class and one distance matrix
    assert lab.truncated_texts(WIDGET) == []
    lab.screenshot("two-per-class", widget)
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
