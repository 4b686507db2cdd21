"""Scenario 6: a recorded run's HTML export (tl_lab.embed.replay) opens in Chromium with no kernel and no network,
and shows its charts. Every request that is not for a local file is refused and counted; there must be none."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def replay_page(tmp_path_factory):
    """A short frozen-head run on clipart, recorded with one extra figure, replayed to a standalone HTML page."""
    import tl_lab
    from tl_lab.plots import filter_grid
    from tl_lab.plots.embed import replay

    folder = tmp_path_factory.mktemp("replay")
    data = tl_lab.load_dataset("clipart", shots=2, seed=0)
    run = tl_lab.fit("efficientnet_lite0", data, plan=tl_lab.FreezePlan.frozen_head(), epochs=4, run_dir=None,
                     progress=False)
    figures = {"First-layer filters": filter_grid(tl_lab.filters(run.backbone).tiles)}
    recording = run.record(folder / "run.json", figures=figures)
    return replay(recording, folder / "run.html"), run


def test_replay_page_offline(replay_page, page, screenshot_dir):
    html_path, run = replay_page
    attempted: list[str] = []

    def only_files(route):
        if route.request.url.startswith(("file:", "data:", "blob:")):
            route.continue_()
        else:
            attempted.append(route.request.url)
            route.abort("internetdisconnected")

    page.context.route("**/*", only_files)
    local = ("file:", "data:", "blob:")
    page.on("request", lambda req: None if req.url.startswith(local) else attempted.append(req.url))
    page.goto(html_path.as_uri())

    # Two charts: the training curves and the recorded figure, each drawn by the plotly.js the page carries.
    plots = page.locator(".js-plotly-plot")
    page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot .main-svg').length >= 2")
    assert plots.count() == 2
    for i in range(2):
        box = plots.nth(i).bounding_box()
        assert box and box["width"] > 300 and box["height"] > 200, box
    # The curves hold every recorded epoch; the filter figure draws images.
    points = page.evaluate("() => Math.max(...document.querySelectorAll('.js-plotly-plot')[0].data"
                           ".map(t => (t.x || []).length))")  # fmt: skip
    assert points == len(run.history) == 4
    drawn = page.evaluate("() => [...document.querySelectorAll('.js-plotly-plot')[1]"
                          ".querySelectorAll('image, canvas')].filter(e => e.getBoundingClientRect().width > 5).length")
    assert drawn >= 1
    table = page.locator("table.tl-run-table").inner_text()
    assert run.label in table and "raw-pixel baseline" in table
    page.screenshot(path=str(screenshot_dir / "test_replay_page_offline.png"), full_page=True)

    bad = page.console_log.harmful()
    assert not bad, "browser console errors:\n" + "\n".join(bad)
    assert attempted == [], f"the offline page tried to reach the network: {attempted}"
    # The guard itself works: a request the page makes now is refused and counted.
    page.evaluate("() => fetch('https://cdn.plot.ly/probe.js').catch(() => null)")
    assert set(attempted) == {"https://cdn.plot.ly/probe.js"}
