"""JupyterLab's "Export Notebook As > HTML": the server's nbconvert route, with tl_lab.app.pages enabled as the
shipped jupyter_server_config.d/tl_lab_pages.json enables it, gives a page with plotly.js once and every figure."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
from pytest_jupyter import jupyter_server as _jupyter_plugin

from test_pages import _executed_like
from tl_lab.app import pages
from tl_lab.plots.static import FIGURE_CLASS

# pytest-jupyter's fixtures for this module only (as tests/test_server_extension.py does)
globals().update({name: value for name, value in vars(_jupyter_plugin).items()
                  if name.startswith(("jp_", "http_server", "io_loop", "echo_kernel"))})

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def jp_server_config():
    return json.loads((REPO / "jupyter-config" / "server-config" / "tl_lab_pages.json").read_text())


def test_jupyterlab_export_route_gives_the_offline_page(jp_fetch, jp_asyncio_loop, jp_root_dir):
    nbformat.write(_executed_like(), jp_root_dir / "lesson.ipynb")
    response = jp_asyncio_loop.run_until_complete(jp_fetch("nbconvert", "html", "lesson.ipynb",
                                                           params={"download": "true"}))
    body = response.body.decode("utf-8")
    assert response.code == 200
    assert body.count(f'class="{FIGURE_CLASS}"') == 3 and body.count(f'id="{pages.PLOTLY_JS_MARK}"') == 1
    assert 'type="application/vnd.jupyter.widget-view+json"' not in body
