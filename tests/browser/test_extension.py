"""The JupyterLab extension in a real JupyterLab: the Launcher card opens the first lesson, the Lessons panel lists
the lessons and opens one (and marks one run to the end), the palette has the commands, the doctor command shows
its report, and the dashboard command opens a notebook running ``TransferLab()``.

The server (``lab_server``) is rooted in a copy of the packaged lessons, so the card opens them in place; copying
into ``tl_lab_lessons/`` and the bad inputs are covered by tests/test_server_extension.py.
"""

from __future__ import annotations

import json

import pytest

from tests.browser.conftest import write_notebook
from tl_lab.app import lessons

pytestmark = pytest.mark.browser

COMMANDS = ("tl-lab:open-first-lesson", "tl-lab:open-lesson", "tl-lab:show-lessons", "tl-lab:new-dashboard",
            "tl-lab:doctor")

_OPENED = ("(name) => { const w = window.jupyterapp.shell.currentWidget;"
           " return !!(w && w.title.label === name && w.context && w.context.isReady); }")


@pytest.fixture
def catalog(lab_server):
    listing = lessons.catalog(lessons.Workspace(lab_server.root))
    assert listing["lessons"], "no lesson notebooks in notebooks/: the extension has nothing to open"
    return listing


def _open_lab(lab):
    lab.page.goto(lab.server.url("lab", reset=""))
    lab.page.wait_for_function("() => !!(window.jupyterapp && window.jupyterapp.commands.hasCommand('tl-lab:doctor'))",
                               timeout=90_000)


def test_launcher_card_opens_the_first_lesson(lab, catalog):
    _open_lab(lab)
    card = lab.page.locator(".jp-LauncherCard", has_text="Transfer Learning Lab")
    lab.visible_box(card, min_width=50, min_height=50)
    lab.screenshot("launcher", card)
    assert all(lab.js("(c) => window.jupyterapp.commands.hasCommand(c)", c) for c in COMMANDS)

    card.click()
    lab.page.wait_for_function(_OPENED, arg=catalog["first"], timeout=60_000)
    assert catalog["folder"] == ""  # the server's root holds the lessons, so nothing was copied
    assert not (lab.server.root / lessons.LESSONS_FOLDER).exists()
    lab.assert_clean_console()


def test_lessons_panel_lists_the_lessons_and_opens_one(lab, catalog):
    first = lab.server.root / catalog["first"]
    original = first.read_text(encoding="utf-8")
    nb = json.loads(original)
    for i, cell in enumerate(c for c in nb["cells"] if c["cell_type"] == "code"):
        cell["execution_count"] = i + 1  # as if the learner ran it to the end and saved
    try:
        _open_lab(lab)
        lab.page.locator(".jp-SideBar [data-id='tl-lab-lessons']").click()
        items = lab.page.locator(".tl-lab-lesson")
        items.first.wait_for(state="visible")
        assert items.count() == len(catalog["lessons"])
        titles = lab.page.locator(".tl-lab-lesson-title").all_inner_texts()
        assert titles == [r["title"] for r in catalog["lessons"]]
        assert lab.page.locator(".tl-lab-lesson-completed").count() == 0

        first.write_text(json.dumps(nb), encoding="utf-8")
        lab.page.locator(".tl-lab-refresh").click()
        done = lab.page.locator(f".tl-lab-lesson-completed[data-name='{catalog['first']}']")
        done.wait_for(state="visible")
        assert "1 of" in lab.page.locator(".tl-lab-LessonsPanel-where").inner_text()
        lab.screenshot("lessons-panel", lab.page.locator(".tl-lab-LessonsPanel"))

        last = catalog["lessons"][-1]
        lab.page.locator(f".tl-lab-lesson[data-name='{last['name']}'] .tl-lab-lesson-open").click()
        lab.page.wait_for_function(_OPENED, arg=last["name"], timeout=60_000)
        lab.assert_clean_console()
    finally:
        first.write_text(original, encoding="utf-8")


def test_lessons_panel_shows_checked_questions_from_a_check_run_in_a_kernel(lab, catalog):
    """A learner checks a question in a notebook; the panel then says "1 of 4 checked" for that lesson (the kernel
    and the server read the same local progress file, in the Jupyter data folder)."""
    from tl_lab.exercises import totals

    name03 = next(r["name"] for r in catalog["lessons"] if r["number"] == 3)
    total03 = totals()["03"]
    write_notebook(lab.server.root / "check_one.ipynb", [
        "from tl_lab import exercises\nex = exercises.lesson('03')\nr = ex.q4.check(0)\nassert r.correct is True, r",
        "assert ex.q4.check(1).correct is False  # a later miss keeps the pass",
    ])
    lab.open_notebook("check_one.ipynb")  # one page for the whole test: navigating away aborts the page's polls
    lab.page.locator(".jp-SideBar [data-id='tl-lab-lessons']").click()
    checks = lab.page.locator(f".tl-lab-lesson[data-name='{name03}'] .tl-lab-lesson-checks")
    checks.wait_for(state="visible")
    assert checks.inner_text() == f"0 of {total03} checked"
    with_checks = [r["name"] for r in catalog["lessons"] if f"{r['number']:02d}" in totals()]
    assert with_checks and lab.page.locator(".tl-lab-lesson .tl-lab-lesson-checks").count() == len(with_checks)

    lab.run_all_cells(timeout=120)
    assert lab.error_outputs() == [], lab.error_outputs()
    lab.page.locator(".tl-lab-refresh").click()
    lab.page.wait_for_function(
        "([sel, text]) => { const e = document.querySelector(sel); return !!e && e.textContent === text; }",
        arg=[f".tl-lab-lesson[data-name='{name03}'] .tl-lab-lesson-checks", f"1 of {total03} checked"],
        timeout=30_000)
    lab.screenshot("lessons-panel-checks", lab.page.locator(".tl-lab-LessonsPanel"))
    lab.assert_clean_console()


def test_doctor_command_shows_the_report(lab):
    _open_lab(lab)
    lab.page.evaluate("() => { window.jupyterapp.commands.execute('tl-lab:doctor'); }")
    checks = lab.page.locator(".tl-lab-Doctor-checks")
    checks.first.wait_for(state="visible", timeout=180_000)
    text = lab.page.locator(".tl-lab-Doctor").inner_text()
    assert "torch" in text and "embedded weights" in text and "Checked the Python that runs JupyterLab" in text
    assert lab.page.locator(".tl-lab-check").count() >= 10
    lab.visible_box(lab.page.locator("#tl-lab-doctor"), min_width=300, min_height=200)  # a main-area tab
    current_tab = lab.page.locator("#jp-main-dock-panel .lm-TabBar-tab.lm-mod-current")
    assert current_tab.inner_text().strip() == "tl_lab doctor"
    lab.screenshot("doctor")
    lab.assert_clean_console()


def test_dashboard_command_opens_a_notebook_running_transfer_lab(lab):
    created = lab.server.root / "TransferLab.ipynb"
    assert not created.exists()
    try:
        _open_lab(lab)
        lab.page.evaluate("() => { window.jupyterapp.commands.execute('tl-lab:new-dashboard'); }")
        lab.page.wait_for_function(_OPENED, arg="TransferLab.ipynb", timeout=60_000)
        lab.wait_until_idle(timeout=300)  # the command runs the cell once the kernel is up
        assert lab.error_outputs() == []
        lab.visible_box(lab.page.locator(".tl-transfer-lab"), min_width=300, min_height=100, timeout=120)
        lab.screenshot("dashboard")
        saved = json.loads(created.read_text(encoding="utf-8"))
        sources = ["".join(c["source"]) for c in saved["cells"] if c["cell_type"] == "code"]
        assert sources == ["from tl_lab.widgets import TransferLab\n\nlab = TransferLab()\nlab"]
        lab.assert_clean_console()
    finally:
        created.unlink(missing_ok=True)
