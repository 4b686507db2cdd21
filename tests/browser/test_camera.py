"""The camera widgets in Chromium with its fake camera (a moving test pattern, permission granted automatically).

- In JupyterLab: capture 3 frames into class "a" and 2 into "b", undo one, hold the button for a burst; the files
  on disk are valid images in the right folders and the counts shown match them; then the live view of a trained
  run shows its top classes and a frame rate that keeps updating.
- Without Jupyter (the widget's module on a small page with a stand-in model): the page served over plain http
  from another host (this machine's own non-loopback address) says the camera needs https or localhost, and the
  same host over https (a throwaway certificate) gets the camera; a refused permission, a missing camera and a
  camera held by another application each show their own message.
"""

from __future__ import annotations

import functools
import http.server
import re
import shutil
import socket
import ssl
import subprocess
import threading
from pathlib import Path

import pytest
from PIL import Image

from .conftest import write_notebook

pytestmark = pytest.mark.browser

CAPTURE = ".tl-camera-capture"
LIVE = ".tl-camera-classify"
CELLS = [
    ("from tl_lab.widgets.camera import CameraCapture\n"
     "cam = CameraCapture('camera_photos', classes=['a'])\n"
     "cam"),
    ("import torch, tl_lab\n"
     "from tl_lab.widgets.camera import CameraClassifier\n"
     "torch.manual_seed(0)\n"
     "data = tl_lab.load_dataset('digits', shots=2, image_size=32)\n"
     "run = tl_lab.fit('efficientnet_lite0', data, epochs=1, progress=False, save_checkpoints=False)\n"
     "live = CameraClassifier(run)\n"
     "live"),
]


def _counts(page) -> dict[str, int]:
    rows = page.locator(f"{CAPTURE} .tl-cam-counts tr").all_inner_texts()[1:]
    return {name: int(n) for name, n in (re.split(r"\s+", r.strip()) for r in rows)}


def _wait_counts(page, expected: dict[str, int]) -> None:
    page.wait_for_function(
        """([sel, want]) => {
             const rows = [...document.querySelectorAll(sel + ' .tl-cam-counts tr')].slice(1)
               .map(r => [r.cells[0].innerText, Number(r.cells[1].innerText)]);
             return JSON.stringify(Object.fromEntries(rows)) === JSON.stringify(want);
           }""",
        arg=[CAPTURE, expected], timeout=20_000)


def _images(folder: Path) -> list[Path]:
    files = sorted(folder.glob("*"))
    for f in files:
        with Image.open(f) as im:
            im.load()
            assert im.format == "JPEG" and im.size == (224, 224), f
    return files


def test_capture_into_classes_then_classify_live(camera_lab):
    lab, page = camera_lab, camera_lab.page
    write_notebook(lab.server.root / "browser_camera.ipynb", CELLS)
    lab.open_notebook("browser_camera.ipynb")
    lab.run_all_cells(timeout=180)
    assert lab.error_outputs() == [], lab.error_outputs()
    capture = page.locator(CAPTURE)
    capture.locator(".tl-cam-start").click()
    page.wait_for_function("(s) => document.querySelector(s + ' .tl-cam-message').innerText.startsWith('Camera on')",
                           arg=CAPTURE)
    assert page.evaluate(f"document.querySelector('{CAPTURE} video').videoWidth") > 0

    shoot = capture.locator(".tl-cam-capture")
    for i in range(3):
        shoot.click()
        _wait_counts(page, {"a": i + 1})
    capture.locator(".tl-cam-new").fill("b")
    capture.locator(".tl-cam-add").click()
    page.wait_for_function("(s) => document.querySelector(s + ' .tl-cam-class').value === 'b'", arg=CAPTURE)
    for i in range(2):
        shoot.click()
        _wait_counts(page, {"a": 3, "b": i + 1})
    capture.locator(".tl-cam-undo").click()
    _wait_counts(page, {"a": 3, "b": 1})
    assert capture.locator(".tl-cam-message").inner_text().startswith("Removed b/cam-")

    root = lab.server.root / "camera_photos"
    assert len(_images(root / "a")) == 3 and len(_images(root / "b")) == 1
    assert sorted(p.name for p in root.iterdir()) == ["a", "b"]  # nothing else, no temporary files

    # holding the button down captures a burst; releasing it stops the burst
    box = shoot.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.wait_for_function("(s) => { const r = [...document.querySelectorAll(s + ' .tl-cam-counts tr')]"
                           ".find(r => r.cells[0].innerText === 'b'); return r && Number(r.cells[1].innerText) >= 4; }",
                           arg=CAPTURE, timeout=20_000)
    page.mouse.up()
    page.wait_for_timeout(600)  # frames still in flight land; then the count must stay put
    held = _counts(page)["b"]
    page.wait_for_timeout(500)
    assert _counts(page)["b"] == held == len(_images(root / "b"))

    # the live view: top classes of the run (digits 0-9) and frames per second, updating
    live = page.locator(LIVE)
    live.locator(".tl-cam-start").click()
    page.wait_for_function("(s) => /frames per second/.test(document.querySelector(s + ' .tl-cam-fps').innerText)",
                           arg=LIVE, timeout=60_000)
    names = live.locator(".tl-cam-top .tl-cam-name").all_inner_texts()
    assert len(names) == 3 and set(names) <= {str(d) for d in range(10)}, names
    first = live.locator(".tl-cam-fps").inner_text()
    page.wait_for_function("([s, t]) => document.querySelector(s + ' .tl-cam-fps').innerText !== t",
                           arg=[LIVE, first], timeout=20_000)
    page.wait_for_timeout(2000)  # let the rate settle over a few replies before reading it
    text = live.locator(".tl-cam-fps").inner_text()
    fps = float(re.match(r"([\d.]+) frames per second \(32 px frames; the model took \d+ ms of each\)", text).group(1))
    print(f"\nlive view: {text}")
    assert fps > 1.0, text
    lab.screenshot("camera")
    live.locator(".tl-cam-start").click()  # stop both cameras before the kernel goes
    capture.locator(".tl-cam-start").click()
    lab.assert_clean_console()


# ---- the messages, on a small page without Jupyter ----------------------------------------------------------------

PAGE = """<!doctype html><meta charset="utf-8"><div id="root"></div>
<script type="module">
import widget from "./camera.js";
const state = {mode: "capture", size: 64, status: "idle", message: "", classes: ["a"], current_class: "a",
               counts: {a: 0}, interval_ms: 100, fps: 0};
window.sent = [];
const model = {get: (k) => state[k], set: (k, v) => { state[k] = v; }, save_changes() {},
               send: (m) => window.sent.push(m), on() {}, off() {}};
window.state = state;
widget.render({model, el: document.getElementById("root")});
</script>"""


def _own_address() -> str | None:
    """This machine's address on its network (not loopback), or None."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # no packet is sent: this only picks the outgoing interface
            address = s.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") else address


def _serve(folder: Path, *, tls: tuple[Path, Path] | None = None):
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("0.0.0.0", 0), functools.partial(Quiet, directory=str(folder)))
    if tls is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*map(str, tls))
        server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _self_signed(folder: Path, host: str) -> tuple[Path, Path] | None:
    """A throwaway certificate for ``host`` made with the openssl command (None without it)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        return None
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=tl-lab-test",
                    "-addext", f"subjectAltName=IP:{host}", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    return cert, key


@pytest.fixture
def site_folder(tmp_path) -> Path:
    """A folder with the widget's module and a page that renders it with a stand-in model."""
    import tl_lab.widgets

    site = tmp_path / "site"
    site.mkdir()
    (site / "camera.js").write_text((Path(tl_lab.widgets.__file__).parent / "camera.js").read_text())
    (site / "index.html").write_text(PAGE)
    return site


def _start(page, url: str) -> dict:
    page.goto(url)
    page.locator(".tl-cam-start").click()
    page.wait_for_function("() => !['idle', 'starting'].includes(window.state.status)")
    return page.evaluate("() => ({status: window.state.status, message: window.state.message,"
                         " shown: document.querySelector('.tl-cam-message').innerText})")


def test_camera_messages_http_https_denied_missing(camera_page, camera_browser, site_folder, tmp_path):
    server = _serve(site_folder)
    port = server.server_address[1]
    try:
        ok = _start(camera_page, f"http://127.0.0.1:{port}/index.html")
        assert ok["status"] == "live", ok

        host = _own_address()
        if host is not None:  # plain http from another host: not a secure context, so no camera at all
            bad = _start(camera_page, f"http://{host}:{port}/index.html")
            assert bad["status"] == "insecure", bad
            assert bad["shown"].startswith("The camera needs https or localhost: this page is served over plain "
                                           f"http from {host}:{port}"), bad
            assert "ssh -L 8888:localhost:8888" in bad["shown"]
            tls = _self_signed(tmp_path, host)
            if tls is not None:  # the same host over https (a hub): the camera works
                secure = _serve(site_folder, tls=tls)
                context = camera_browser.new_context(ignore_https_errors=True)
                try:
                    good = _start(context.new_page(), f"https://{host}:{secure.server_address[1]}/index.html")
                finally:
                    context.close()
                    secure.shutdown()
                    secure.server_close()
                assert good["status"] == "live", good

        camera_page.add_init_script("""navigator.mediaDevices.getUserMedia = () =>
            Promise.reject(new DOMException(new URLSearchParams(location.search).get('e'),
                                            new URLSearchParams(location.search).get('e')));""")
        denied = _start(camera_page, f"http://127.0.0.1:{port}/index.html?e=NotAllowedError")
        assert denied["status"] == "denied"
        assert denied["shown"].startswith("Camera permission was denied. Allow the camera")
        missing = _start(camera_page, f"http://127.0.0.1:{port}/index.html?e=NotFoundError")
        assert missing["status"] == "no-camera" and missing["shown"].startswith("No camera found: connect a webcam")
        busy = _start(camera_page, f"http://127.0.0.1:{port}/index.html?e=NotReadableError")
        assert busy["status"] == "in-use" and "another application" in busy["shown"]
    finally:
        server.shutdown()
        server.server_close()


def test_capture_in_notebook_7(camera_lab):
    """Notebook 7 renders the same module: start the camera, capture one frame, find it on disk."""
    lab, page = camera_lab, camera_lab.page
    write_notebook(lab.server.root / "browser_camera_nb7.ipynb", [CELLS[0].replace("camera_photos", "nb7_photos")])
    lab.open_notebook("browser_camera_nb7.ipynb", ui="notebook")
    lab.run_all_cells(timeout=120)
    assert lab.error_outputs() == [], lab.error_outputs()
    capture = page.locator(CAPTURE)
    capture.locator(".tl-cam-start").click()
    page.wait_for_function("(s) => document.querySelector(s + ' .tl-cam-message').innerText.startsWith('Camera on')",
                           arg=CAPTURE)
    capture.locator(".tl-cam-capture").click()
    _wait_counts(page, {"a": 1})
    assert len(_images(lab.server.root / "nb7_photos" / "a")) == 1
    capture.locator(".tl-cam-start").click()
    lab.assert_clean_console()
