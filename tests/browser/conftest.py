"""Real-browser fixtures: one JupyterLab server and one headless Chromium per session, a fresh page per test.

Reusable pieces (other browser test files use them; see ``test_smoke.py`` for a complete example):

- ``lab_server`` (session): a JupyterLab started on a free local port with a token, in a temporary copy of the
  lessons (``tl_lab.app.cli.copy_lessons``), with ``TL_LAB_FAST=1`` in its environment so every kernel inherits it.
  Yields a :class:`LabServer`: ``.base_url``, ``.token``, ``.root`` (the server's root folder, a ``Path``),
  ``.url(path)`` (a URL that logs in with the token), ``.log()`` (the server's output so far).
  Private Jupyter config/data/runtime/settings/workspace folders keep the user's setup out; installed
  labextensions (anywidget, jupyterlab-plotly, the ipywidgets manager) are still found under ``sys.prefix``.
- ``browser`` (session): Debian's Chromium driven by Playwright (never a downloaded browser), headless.
- ``camera_browser`` / ``camera_page`` / ``camera_lab``: the same with Chromium's fake camera (``FAKE_CAMERA_ARGS``), sharing
  one Playwright (``playwright_driver``) with ``browser``: the sync API allows only one per thread.
- ``page`` (function): a fresh browser context and page; every console error and uncaught page error is recorded
  in ``page.console_log`` (a :class:`ConsoleLog`). A failing test saves ``FAILED-<test>.png``.
- ``lab`` (function): a :class:`LabPage` wrapping ``page`` with the helpers tests need: ``open_notebook``,
  ``run_all_cells``, ``run_new_notebook``, ``truncated_texts``, ``overflowing_figures``, ``overlapping_texts``, ``wait_until_idle``, ``error_outputs``, ``visible_box``, ``wait_for_plot``, ``screenshot``,
  ``assert_clean_console``, ``js``, ``command``.
- ``write_notebook(path, cells)``: write a small notebook (code cells as strings) with a python3 kernelspec.
- ``screenshot_dir`` (session): ``$TL_LAB_SCREENSHOTS`` or a pytest temporary folder, printed at the end of the run.

Waiting is always on page conditions (``wait_for_function``, locators), never on fixed sleeps.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

BROWSER_DIR = Path(__file__).resolve().parent

CHROMIUM_ARGS = [
    "--no-sandbox",  # CI runs as root, where Chromium's sandbox refuses to start
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",  # containers often have a tiny /dev/shm; Chromium then crashes on big pages
]

# Console noise that JupyterLab / Notebook 7 themselves produce here, each entry (pattern, why it is harmless).
# Only noise actually observed is listed; anything else fails assert_clean_console. Patterns are full matches.
KNOWN_HARMLESS = [
    (
        r"pageerror: Cannot read properties of undefined \(reading 'schema'\) "
        r"\[at \S+/static/notebook/notebook_core\.\S+\]",
        "Notebook 7's own bundle (notebook_core.js): its keyboard-shortcuts plugin reads the settings schema of "
        "'@jupyterlab/docmanager-extension:plugin' while that plugin's settings are being reloaded at start-up "
        "(found by pausing on the exception). Seen on an empty notebook with every third-party labextension "
        "disabled (tl-lab, anywidget, plotly, ipywidgets), so not ours; the page works normally afterwards.",
    ),
    (
        r"pageerror: Command 'filebrowser:open-path' not registered\. "
        r"\[at \S+ \(\S+/static/notebook/notebook_core\.\S+\)\]",
        "Notebook 7's own bundle: once JupyterLab has been used on the same server, the notebook page restores the "
        "default file browser (JupyterLab's restoreBrowser) and runs 'filebrowser:open-path', a command only the "
        "tree page registers. Seen with every third-party labextension disabled; nothing on the page depends on it.",
    ),
    (
        r"Failed to load resource: the server responded with a status of 403 \(Forbidden\) "
        r"\[\S+/static/(lab|notebook)/620019ed9d1100b6\.woff2\]",
        "JupyterLab's and Notebook 7's own icon font (FontAwesome, 620019ed9d1100b6.woff2) answered 403 to Chromium's font request inside this test server only (first seen on 2026-12-04, when the freezer's dropdown text was measured through a canvas and when icon buttons rendered); the same URL answers 200 to curl and to fetch() from a page of a plain `jupyter lab`. The font is decorative (button icons, dropdown carets); tl_lab's own widgets carry no icon on new buttons. Cause not found yet: a follow-up.",
    ),
]

# Failed requests (HTTP >= 400 or refused) that are expected, as (URL pattern, why). Anything else, such as a
# missing widget bundle, plotly.js or a tl_lab asset, shows up as a failed request and fails the test.
HARMLESS_REQUESTS: list[tuple[str, str]] = [
    (r"/static/(lab|notebook)/620019ed9d1100b6\.woff2\b", "JupyterLab's and Notebook 7's own icon font (FontAwesome, 620019ed9d1100b6.woff2) answered 403 to Chromium's font request inside this test server only (first seen on 2026-12-04, when the freezer's dropdown text was measured through a canvas and when icon buttons rendered); the same URL answers 200 to curl and to fetch() from a page of a plain `jupyter lab`. The font is decorative (button icons, dropdown carets); tl_lab's own widgets carry no icon on new buttons. Cause not found yet: a follow-up."),
]


# ---------------------------------------------------------------------------------------------------------------
# collection: every test under tests/browser/ carries the ``browser`` marker


def pytest_itemcollected(item):
    """Marks each test as it is collected (before any collection_modifyitems hook, where pytest-xdist reads the
    group): ``browser``, and the xdist group ``browser``, so that with ``--dist loadgroup`` one worker runs every
    browser test (one JupyterLab, one Chromium) while the other workers run the rest of the suite."""
    if BROWSER_DIR in Path(str(item.fspath)).resolve().parents:
        item.add_marker(pytest.mark.browser)
        item.add_marker(pytest.mark.xdist_group("browser"))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


def pytest_terminal_summary(terminalreporter):
    folder = _SCREENSHOTS.get("dir")
    if folder and any(Path(folder).glob("*.png")):
        terminalreporter.write_line(f"browser screenshots: {folder}")


_SCREENSHOTS: dict[str, Path] = {}


# ---------------------------------------------------------------------------------------------------------------
# the JupyterLab server


def chromium_executable() -> str | None:
    for candidate in ("/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_notebook(path: str | Path, cells: list[str], *, metadata: dict | None = None) -> Path:
    """Write a notebook whose code cells are ``cells`` (strings; a string starting with ``"# md\\n"`` is markdown)."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    nb.metadata.update(metadata or {})
    for src in cells:
        if src.startswith("# md\n"):
            nb.cells.append(nbformat.v4.new_markdown_cell(src[len("# md\n") :]))
        else:
            nb.cells.append(nbformat.v4.new_code_cell(src))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


@dataclass
class LabServer:
    base_url: str
    token: str
    root: Path
    process: subprocess.Popen
    log_path: Path
    env: dict = field(repr=False, default_factory=dict)

    def url(self, path: str = "lab", **query: str) -> str:
        """``base_url/path?token=…`` (plus ``query``); the token logs a fresh browser context in."""
        params = "&".join([f"token={self.token}"] + [f"{k}={v}" for k, v in query.items()])
        sep = "&" if "?" in path else "?"
        return f"{self.base_url}/{path.lstrip('/')}{sep}{params}"

    def api(self, path: str, method: str = "GET", body: dict | None = None, timeout: float = 10):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(
            f"{self.base_url}/api/{path.lstrip('/')}",
            data=data,
            method=method,
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            text = resp.read().decode()
        return json.loads(text) if text else None

    def log(self, last: int = 6000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-last:]
        except OSError:
            return ""

    def shutdown_kernels(self) -> None:
        try:
            for kernel in self.api("kernels"):
                self.api(f"kernels/{kernel['id']}", method="DELETE", timeout=30)
        except (OSError, urllib.error.URLError, ValueError):
            pass


def _descendants(pid: int) -> list[int]:
    """Process ids below ``pid`` (kernels run in their own sessions, so a process-group kill would miss them)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            continue
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _lab_settings(settings_dir: Path) -> None:
    """User settings of the test's own settings folder: no news prompt, no update check, every cell attached."""
    settings = {
        # The "Jupyter news" toast covers the page and fetches from the network; the update check does too.
        "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
            "fetchNews": "false",
            "checkForUpdates": False,
        },
        # JupyterLab 4 skips layout of off-screen cells by default ("contentVisibility"): their outputs would
        # have no size, so size checks would depend on scroll position. "none" attaches and lays out every cell.
        "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    }
    for rel, value in settings.items():
        path = settings_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(value))


@pytest.fixture(scope="package")
def chromium_path() -> str:
    path = chromium_executable()
    if path is None:
        message = "Chromium is not installed (apt-get install chromium); the browser tests need Debian's Chromium"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="package")
def lab_server(tmp_path_factory, chromium_path) -> LabServer:
    """A JupyterLab on a free port with a token, rooted in a temporary copy of the lessons; always shut down."""
    pytest.importorskip("jupyterlab")
    from tl_lab.app.cli import copy_lessons

    base = tmp_path_factory.mktemp("jupyter")
    root = base / "root"
    copy_lessons(root)
    dirs = {name: base / name for name in ("config", "data", "runtime", "settings", "workspaces", "ipython")}
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    _lab_settings(dirs["settings"])

    env = dict(os.environ)
    env.update(
        TL_LAB_FAST="1",  # kernels inherit the server's environment: lessons run their small versions
        JUPYTER_CONFIG_DIR=str(dirs["config"]),  # sys.prefix/etc/jupyter (server extensions) is still read
        JUPYTER_DATA_DIR=str(dirs["data"]),  # sys.prefix/share/jupyter (labextensions, kernelspecs) is still read
        JUPYTER_RUNTIME_DIR=str(dirs["runtime"]),
        JUPYTERLAB_SETTINGS_DIR=str(dirs["settings"]),
        JUPYTERLAB_WORKSPACES_DIR=str(dirs["workspaces"]),
        IPYTHONDIR=str(dirs["ipython"]),
        JUPYTER_PLATFORM_DIRS="0",
        PYTHONUNBUFFERED="1",
        OMP_WAIT_POLICY="PASSIVE",
    )
    env.pop("JUPYTER_PATH", None)
    env.pop("JUPYTER_CONFIG_PATH", None)

    port, token = free_port(), secrets.token_hex(16)
    cmd = [
        sys.executable, "-m", "jupyter", "lab",
        "--no-browser",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}",
        "--LabApp.news_url=",  # no announcements feed (it would reach the network)
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.expose_app_in_browser=True",  # window.jupyterapp: run commands, read kernel status
        "--JupyterNotebookApp.expose_app_in_browser=True",
        "--ServerApp.terminals_enabled=False",
    ]  # fmt: skip
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")  # CI runs as root
    log_path = base / "server.log"
    log = open(log_path, "wb")
    proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    server = LabServer(f"http://127.0.0.1:{port}", token, root, proc, log_path, env)
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"jupyter lab exited with {proc.returncode}:\n{server.log()}")
            try:
                server.api("status", timeout=2)
                break
            except (OSError, urllib.error.URLError):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"jupyter lab did not answer within 90 s:\n{server.log()}")
                time.sleep(0.25)
        yield server
    finally:
        server.shutdown_kernels()
        pids = _descendants(proc.pid)
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        for pid in pids:  # kernels the server failed to stop
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        log.close()


# ---------------------------------------------------------------------------------------------------------------
# the browser


@pytest.fixture(scope="package")
def playwright_driver(chromium_path):
    """One Playwright for the package (the sync API allows one running instance per thread)."""
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        yield pw


@pytest.fixture(scope="package")
def browser(playwright_driver, chromium_path):
    chromium = playwright_driver.chromium.launch(executable_path=chromium_path, headless=True, args=CHROMIUM_ARGS)
    try:
        yield chromium
    finally:
        chromium.close()


@pytest.fixture(scope="package")
def screenshot_dir(tmp_path_factory) -> Path:
    folder = os.environ.get("TL_LAB_SCREENSHOTS")
    path = Path(folder) if folder else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    _SCREENSHOTS["dir"] = path
    return path


@dataclass
class ConsoleLog:
    """Console errors/warnings, uncaught page errors and failed requests seen by one page."""

    errors: list[str] = field(default_factory=list)  # console.error and uncaught exceptions ("pageerror: …")
    warnings: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)  # "404 http://…" and network failures
    stacks: list[str] = field(default_factory=list)  # full stacks of uncaught page errors

    def attach(self, page) -> None:
        def on_console(msg):
            where = msg.location.get("url", "") if msg.location else ""
            text = f"{msg.text} [{where}]" if where else msg.text
            if msg.type == "error":
                self.errors.append(text)
            elif msg.type == "warning":
                self.warnings.append(text)

        def on_response(resp):
            if resp.status >= 400:
                self.failed_requests.append(f"{resp.status} {resp.url}")

        page.on("console", on_console)
        def on_pageerror(err):
            # The first stack frame names the bundle that threw (a labextension's remoteEntry/chunk file).
            frames = [ln.strip() for ln in (getattr(err, "stack", "") or "").splitlines()[1:] if ln.strip()]
            self.errors.append(f"pageerror: {err.message}" + (f" [{frames[0]}]" if frames else ""))
            self.stacks.append(getattr(err, "stack", "") or str(err))

        page.on("pageerror", on_pageerror)
        page.on("requestfailed", lambda req: self.failed_requests.append(f"failed {req.url} ({req.failure})"))
        page.on("response", on_response)

    def harmful(self) -> list[str]:
        """Console errors and uncaught page errors not explained by KNOWN_HARMLESS, and failed requests not
        explained by HARMLESS_REQUESTS (a missing widget bundle or tl_lab asset shows up here)."""
        bad = [e for e in self.errors if not any(re.fullmatch(p, e, re.S) for p, _ in KNOWN_HARMLESS)]
        bad += [f"request {r}" for r in self.failed_requests
                if not any(re.search(p, r) for p, _ in HARMLESS_REQUESTS)]
        return bad


@pytest.fixture
def page(browser, request, screenshot_dir):
    yield from _new_page(browser, request, screenshot_dir)


# Chromium's built-in fake webcam (a moving test pattern) and automatic "Allow" on the camera prompt.
FAKE_CAMERA_ARGS = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]


@pytest.fixture(scope="package")
def camera_browser(playwright_driver, chromium_path):
    """A second headless Chromium with a fake camera (:data:`FAKE_CAMERA_ARGS`); ``browser`` stays camera-free."""
    chromium = playwright_driver.chromium.launch(executable_path=chromium_path, headless=True,
                                                 args=CHROMIUM_ARGS + FAKE_CAMERA_ARGS)
    try:
        yield chromium
    finally:
        chromium.close()


@pytest.fixture
def camera_page(camera_browser, request, screenshot_dir):
    """Like ``page``, in the fake-camera Chromium."""
    yield from _new_page(camera_browser, request, screenshot_dir)


@pytest.fixture
def camera_lab(camera_page, lab_server, screenshot_dir, request) -> LabPage:
    """Like ``lab``, in the fake-camera Chromium."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
    yield LabPage(camera_page, lab_server, screenshot_dir, name)
    lab_server.shutdown_kernels()


def _new_page(browser, request, screenshot_dir):
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, device_scale_factor=1)
    context.set_default_timeout(30_000)
    pg = context.new_page()
    pg.console_log = ConsoleLog()
    pg.console_log.attach(pg)
    try:
        yield pg
    finally:
        if os.environ.get("TL_LAB_BROWSER_DEBUG"):  # run with -s to see everything the page logged
            log = pg.console_log
            print(f"\n[{request.node.name}] console errors: {log.errors}\nwarnings: {log.warnings}"
                  f"\nfailed requests: {log.failed_requests}\nstacks: " + "\n".join(log.stacks))
        rep = getattr(request.node, "rep_call", None)
        if rep is not None and rep.failed:
            try:
                pg.screenshot(path=str(screenshot_dir / f"FAILED-{request.node.name}.png"))
            except Exception:  # the page may be gone; the failure itself is what matters
                pass
        context.close()


# ---------------------------------------------------------------------------------------------------------------
# driving JupyterLab / Notebook 7

_KERNEL_STATE_JS = """
() => {
  const app = window.jupyterapp;
  if (!app) return null;
  const panel = app.shell.currentWidget;
  if (!panel || !panel.sessionContext || !panel.content) return null;
  const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
  const cells = panel.content.widgets.filter(c => c.model.type === 'code');
  return {
    status: kernel ? kernel.status : 'no-kernel',
    cells: cells.length,
    executed: cells.filter(c => c.model.executionCount !== null).length,
    pending: cells.filter(c => (c.promptNode && c.promptNode.textContent.includes('*'))).length,
  };
}
"""


class LabPage:
    """Helpers over one Playwright page connected to ``lab_server``."""

    def __init__(self, page, server: LabServer, screenshot_dir: Path, name: str):
        self.page, self.server, self.screenshot_dir, self.name = page, server, screenshot_dir, name

    # -- navigation --
    def open_notebook(self, path: str, *, ui: str = "lab", timeout: float = 60) -> None:
        """Open ``path`` (relative to the server root) in JupyterLab (``ui="lab"``) or Notebook 7
        (``ui="notebook"``) and wait until its kernel is idle."""
        url = self.server.url(f"lab/tree/{path}", reset="") if ui == "lab" else self.server.url(f"notebooks/{path}")
        self.page.goto(url)
        self.page.wait_for_function(
            "() => { const app = window.jupyterapp; const w = app && app.shell.currentWidget;"
            " return !!(w && w.content && w.content.widgets && w.context && w.context.isReady); }",
            timeout=timeout * 1000,
        )
        self.wait_until_idle(timeout=timeout, require_executed=False)

    def js(self, expression: str, arg=None):
        return self.page.evaluate(expression, arg)

    def kernel_state(self) -> dict | None:
        return self.page.evaluate(_KERNEL_STATE_JS)

    def command(self, name: str, args: dict | None = None):
        """Run a JupyterLab command (``notebook:run-all-cells``, ``notebook:restart-kernel`` …)."""
        return self.page.evaluate("([n, a]) => window.jupyterapp.commands.execute(n, a || {})", [name, args])

    # -- execution --
    def wait_until_idle(self, *, timeout: float = 300, require_executed: bool = True) -> dict:
        """Wait until the kernel is idle and no cell is queued (``[*]``); with ``require_executed`` also until every
        code cell has an execution count. Returns the last kernel state."""
        condition = (
            "(s) => { const st = (" + _KERNEL_STATE_JS + ")(); if (!st) return false;"
            " return st.status === 'idle' && st.pending === 0 && (!s || st.executed === st.cells); }"
        )
        self.page.wait_for_function(condition, arg=require_executed, timeout=timeout * 1000, polling=250)
        return self.kernel_state()

    def run_all_cells(self, *, timeout: float = 300) -> dict:
        self.command("notebook:run-all-cells")
        return self.wait_until_idle(timeout=timeout)

    def truncated_texts(self, selector: str) -> list[str]:
        """Labels, buttons and dropdowns inside ``selector`` whose text is cut off, as their full text.

        Why: a description wider than its widget's label column is silently clipped ("epochs (0 = a…"); a learner
        cannot read it, and nothing else fails. A dropdown (``<select>``) cuts its chosen option without an
        ellipsis, so that text is measured against the box (less its padding and arrow)."""
        return self.page.evaluate(
            """(sel) => {
                 const canvas = document.createElement('canvas').getContext('2d');
                 const cut = el => {
                   if (el.tagName !== 'SELECT') return el.scrollWidth > el.clientWidth + 1;
                   const option = el.options[el.selectedIndex];
                   if (!option) return false;
                   const st = getComputedStyle(el);
                   canvas.font = `${st.fontStyle} ${st.fontWeight} ${st.fontSize} ${st.fontFamily}`;
                   const room = el.clientWidth - parseFloat(st.paddingLeft) - parseFloat(st.paddingRight);
                   return canvas.measureText(option.text).width > room + 1;
                 };
                 return [...document.querySelectorAll(sel)].flatMap(root =>
                   [...root.querySelectorAll('.widget-label, button, select')]
                     .filter(el => el.offsetParent !== null && !el.multiple && cut(el))
                     .map(el => el.tagName === 'SELECT' ? el.options[el.selectedIndex].text : el.innerText.trim()));
               }""",
            selector,
        )

    def overflowing_figures(self, selector: str) -> list[dict]:
        """plotly figures inside ``selector`` wider than the box that shows them (their right part is cut off)."""
        return self.page.evaluate(
            """(sel) => [...document.querySelectorAll(sel + ' .js-plotly-plot')].map(gd => {
                 const svg = gd.querySelector('.main-svg');
                 const box = gd.parentElement.getBoundingClientRect(), fig = svg && svg.getBoundingClientRect();
                 return fig && {figure: fig.width, box: box.width, cut: fig.right > box.right + 1};
               }).filter(r => r && r.cut)""",
            selector,
        )

    def overlapping_texts(self, selector: str) -> list[list[str]]:
        """Pairs of plotly annotations (subplot and column titles) inside ``selector`` whose boxes overlap."""
        return self.page.evaluate(
            """(sel) => {
                 const out = [];
                 document.querySelectorAll(sel + ' .js-plotly-plot').forEach(gd => {
                   const boxes = [...gd.querySelectorAll('.annotation-text')]
                     .map(t => ({text: t.textContent, r: t.getBoundingClientRect()}))
                     .filter(b => b.r.width > 0);
                   for (let i = 0; i < boxes.length; i++) for (let j = i + 1; j < boxes.length; j++) {
                     const a = boxes[i].r, b = boxes[j].r;
                     if (a.left < b.right - 1 && b.left < a.right - 1 && a.top < b.bottom - 1 && b.top < a.bottom - 1)
                       out.push([boxes[i].text, boxes[j].text]);
                   }
                 });
                 return out;
               }""",
            selector,
        )

    def run_new_notebook(self, name: str, cells: list[str], *, timeout: float = 180) -> dict:
        """Write ``name`` (code cells as strings) into the server's root, open it, run every cell, and assert that
        no cell or widget view shows an error. Returns the kernel state."""
        write_notebook(self.server.root / name, cells)
        self.open_notebook(name)
        state = self.run_all_cells(timeout=timeout)
        assert self.error_outputs() == [], self.error_outputs()
        return state

    def error_outputs(self) -> list[str]:
        """Error outputs of every cell (from the notebook model) and widget views that failed to render (DOM)."""
        errors = self.page.evaluate(
            """() => {
              const panel = window.jupyterapp.shell.currentWidget;
              const out = [];
              panel.content.widgets.forEach((cell, i) => {
                if (cell.model.type !== 'code') return;
                for (const o of cell.model.outputs.toJSON()) {
                  if (o.output_type === 'error') out.push(`cell ${i}: ${o.ename}: ${o.evalue}`);
                }
              });
              return out;
            }"""
        )
        node = self.page.locator(".jp-NotebookPanel:visible, .jp-Notebook:visible").first
        text = node.inner_text() if node.count() else ""
        for marker in ("Error displaying widget", "Failed to load model class", "Error creating widget",
                       "Loading widget..."):  # fmt: skip
            if marker in text:
                errors.append(f"page shows {marker!r}")
        return errors

    def stderr_outputs(self) -> list[str]:
        return self.page.evaluate(
            """() => window.jupyterapp.shell.currentWidget.content.widgets
                 .filter(c => c.model.type === 'code')
                 .flatMap(c => c.model.outputs.toJSON())
                 .filter(o => o.output_type === 'stream' && o.name === 'stderr')
                 .map(o => Array.isArray(o.text) ? o.text.join('') : o.text)"""
        )

    # -- looking --
    def visible_box(self, locator, *, min_width: float = 20, min_height: float = 20, timeout: float = 30) -> dict:
        """Wait until ``locator`` (first match) is visible with at least the given size; return its bounding box."""
        loc = locator.first
        loc.wait_for(state="visible", timeout=timeout * 1000)
        deadline = time.monotonic() + timeout
        while True:
            box = loc.bounding_box()
            if box and box["width"] >= min_width and box["height"] >= min_height:
                return box
            if time.monotonic() > deadline:
                raise AssertionError(f"{locator} is visible but only {box} in size")
            self.page.wait_for_timeout(100)  # a short poll between layout checks, bounded by the deadline above

    def wait_for_plot(self, selector: str, *, min_traces: int = 1, timeout: float = 60) -> None:
        """Wait until the plotly chart at ``selector`` (a ``.js-plotly-plot`` div) has drawn ``min_traces`` traces.

        Why: a FigureWidget's view draws empty axes first and applies the figure's data a moment later (plotly.js
        loads in the background), so ``.main-svg`` existing does not yet mean the traces are there."""
        self.page.wait_for_function(
            "([sel, n]) => { const gd = document.querySelector(sel);"
            " return !!(gd && gd.querySelector('.main-svg') && gd.data && gd.data.length >= n); }",
            arg=[selector, min_traces],
            timeout=timeout * 1000,
        )

    def screenshot(self, label: str, locator=None) -> Path:
        """Save ``<test name>-<label>.png`` in the screenshot folder (scrolling ``locator`` into view first)."""
        if locator is not None:
            locator.first.scroll_into_view_if_needed()
        path = self.screenshot_dir / f"{self.name}-{label}.png"
        self.page.screenshot(path=str(path))
        return path

    def assert_clean_console(self) -> None:
        bad = self.page.console_log.harmful()
        assert not bad, "browser console errors:\n" + "\n".join(bad)


@pytest.fixture
def lab(page, lab_server, screenshot_dir, request) -> LabPage:
    """A :class:`LabPage` on a fresh page; afterwards every kernel is shut down (each holds torch in memory)."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
    yield LabPage(page, lab_server, screenshot_dir, name)
    lab_server.shutdown_kernels()
