"""The course site (``tl-lab site``) opened from file:// in Chromium with every http(s) request refused: the index
lists the lessons with their times and launch links, each lesson page draws every figure its executed notebook
holds, and a recorded run's replay page draws its curves.

The site (lesson 00 under TL_LAB_FAST=1 and a tiny lesson that records a run) is the one tests/test_site.py builds
with ``tl-lab site``'s code in a subprocess, once per session.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

LOCAL = ("file:", "data:", "blob:", "about:")


@pytest.fixture(scope="module")
def course_site(tmp_path_factory) -> Path:
    from test_site import (
        shared_real_site,  # tests/test_site.py builds it once per session and checks the build
    )

    return shared_real_site(tmp_path_factory) / "site"


def _offline(page) -> list[str]:
    """Refuse and count every request that is not for a local file."""
    attempted: list[str] = []

    def only_files(route):
        if route.request.url.startswith(LOCAL):
            route.continue_()
        else:
            attempted.append(route.request.url)
            route.abort("internetdisconnected")

    page.context.route("**/*", only_files)
    return attempted


def _drawn(page) -> int:
    """plotly figures drawn: a .js-plotly-plot holding an SVG with a visible size and at least one trace."""
    return page.evaluate("""() => [...document.querySelectorAll('.js-plotly-plot')].filter(gd => {
        const svg = gd.querySelector('svg.main-svg'); const box = svg && svg.getBoundingClientRect();
        return box && box.width > 100 && box.height > 100 && gd.data && gd.data.length > 0; }).length""")


def test_course_site_offline(course_site, page, screenshot_dir):
    import json

    import nbformat

    attempted = _offline(page)
    manifest = json.loads((course_site / "manifest.json").read_text())["lessons"]
    page.goto((course_site / "index.html").as_uri())
    rows = page.locator("tr.lesson")
    assert rows.count() == 2
    assert "Start here" in rows.nth(0).inner_text()
    seconds = manifest["00_start_here.ipynb"]["seconds"]
    assert rows.nth(0).locator("td.time").get_attribute("data-seconds") == str(seconds)
    assert rows.nth(0).locator("a.launch").count() == 2  # hub and Binder
    page.screenshot(path=str(screenshot_dir / "test_course_site_index.png"), full_page=True)

    # lesson 00: every figure of the executed notebook is drawn
    executed = nbformat.read(course_site / manifest["00_start_here.ipynb"]["executed"], as_version=4)
    from tl_lab.app.pages import page_figure_count

    produced = page_figure_count(executed)  # plain figures, and charts inside widget snapshots (TransferLab's)
    assert produced["figures"] >= 2
    figures = produced["figures"] + produced["widget_figures"]
    rows.nth(0).locator("a.title").click()
    page.wait_for_function("(n) => document.querySelectorAll('.js-plotly-plot .main-svg').length >= n", arg=figures)
    assert page.locator(".js-plotly-plot").count() == figures
    assert _drawn(page) == figures
    assert "RESULT" in page.locator("body").inner_text()
    nav = page.locator("nav.tl-site-nav")
    assert "Measured time" in nav.inner_text() and nav.locator("a.launch").count() == 2
    page.screenshot(path=str(screenshot_dir / "test_course_site_lesson.png"))

    # the recording lesson links its replay; the replay draws the recorded curves
    page.goto((course_site / manifest["99_records.ipynb"]["page"]).as_uri())
    page.locator("nav.tl-site-nav ul.tl-replays a").first.click()
    page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot .main-svg').length >= 1")
    assert _drawn(page) == 1
    points = page.evaluate("() => Math.max(...document.querySelector('.js-plotly-plot').data"
                           ".map(t => (t.x || []).length))")
    assert points == 3  # the three recorded epochs
    assert "tiny run" in page.locator("table.tl-run-table").inner_text()

    bad = page.console_log.harmful()
    assert not bad, "browser console errors:\n" + "\n".join(bad)
    assert attempted == [], f"the site tried to reach the network: {attempted}"
    # the guard works: a request the page makes now is refused and counted
    page.evaluate("() => fetch('https://cdn.plot.ly/probe.js').catch(() => null)")
    assert attempted == ["https://cdn.plot.ly/probe.js"]
