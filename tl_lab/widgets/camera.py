"""Webcam widgets: capture your own examples into class folders, then watch a trained run classify the camera.

Why: learners expect to train on pictures they took themselves (Teachable Machine's headline feature). The widgets
run on anywidget with the browser's ``getUserMedia`` (no ipywebrtc, which is unmaintained and freezes); frames go
from the browser to the kernel as binary buffers of custom widget messages (never into the saved widget state).
What happens to a frame is library code: saving, checking and "undo last" are :class:`~tl_lab.data.capture.CaptureFolder`,
the live view calls the run's own :meth:`~tl_lab.training.run.Run.predict` and
:func:`~tl_lab.data.capture.top_k`.

Browsers give pages the camera only over https or on localhost: on a page served over plain http from another host
the widget says so (and how to reach Jupyter through localhost or https) instead of failing silently; no camera,
a refused permission and a camera held by another application each have their own message. ``status`` (``idle``,
``starting``, ``live``, ``stopped``, ``insecure``, ``no-camera``, ``denied``, ``in-use``, ``error``) and
``message`` hold what the browser reported.

Example::

    from tl_lab.widgets.camera import CameraCapture, CameraClassifier
    cam = CameraCapture("my_photos", classes=["cup", "pen"])    # click Start camera, pick a class, click Capture
    cam                                                         # ... then train on the folder:
    data = tl_lab.load_dataset("folder", root="my_photos", image_size=96)
    run = tl_lab.fit("efficientnet_lite0", data, epochs=5)
    CameraClassifier(run)                                       # top-3 classes and frames per second, live
"""

from __future__ import annotations

import html
import threading
import time
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anywidget
import traitlets as T

from tl_lab.data.capture import CaptureFolder, InvalidFrameError, check_class_name, decode_frame, top_k
from tl_lab.widgets.common import LatestJob, error_message, png_thumbnail

if TYPE_CHECKING:
    from tl_lab.training.run import Run

__all__ = ["CAMERA_ESM", "CAPTURE_SIZE", "CameraCapture", "CameraClassifier"]

CAMERA_ESM = (Path(__file__).with_name("camera.js")).read_text(encoding="utf-8")
CAPTURE_SIZE = 224  # pixels a side of a saved frame (centre square of the camera's picture); runs resize it
_THUMBS = 6  # last captured frames kept for the snapshot
_THUMB_PX = 56


class _Camera(anywidget.AnyWidget):
    _esm = CAMERA_ESM
    mode = T.Unicode("capture").tag(sync=True)
    size = T.Int(CAPTURE_SIZE).tag(sync=True)
    status = T.Unicode("idle").tag(sync=True)  # set by the browser: see the module docstring
    message = T.Unicode("").tag(sync=True)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.on_msg(self._on_message)

    def _on_message(self, _widget: Any, content: Any, buffers: list[Any]) -> None:
        if not isinstance(content, dict):
            return
        try:
            self._handle(content, buffers or [])
        except Exception as exc:  # noqa: BLE001 - shown in the widget, never lost in the kernel log
            self._reply_error(exc, content)

    def _handle(self, content: dict, buffers: list[Any]) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def _reply_error(self, exc: BaseException, content: dict) -> None:
        text = str(exc) if isinstance(exc, ValueError) else error_message(exc)
        self.message = text
        kind = "capture-failed" if content.get("type") == "capture" else "error"
        self.send({"type": kind, "message": text, "id": content.get("id")})

    def _snapshot_status(self) -> str:
        text = self.message or f"camera {self.status}"
        return f'<div style="color:#555">{html.escape(text)}</div>'


class CameraCapture(_Camera):
    """Capture webcam frames into ``root/<class>/``: pick or add a class, click Capture (hold it for a burst).

    ``root``: the learner's image folder (created on the first capture); ``classes``: class names to offer at first
    (the class folders already in ``root`` are offered too). Counts per class cover every image in the class folders,
    the learner's own files included; "Undo last" deletes only frames this widget saved, newest first. The folder is
    what ``tl_lab.load_dataset("folder", root=root)`` reads. Frames are ``size`` pixels a side (default 224), JPEG.

    Python API (what the buttons do, usable from a script or a test): :meth:`save_frame`, :meth:`undo`,
    :meth:`add_class`; ``folder`` is the :class:`~tl_lab.data.capture.CaptureFolder`.
    """

    classes = T.List(T.Unicode()).tag(sync=True)
    current_class = T.Unicode("").tag(sync=True)
    counts = T.Dict().tag(sync=True)

    def __init__(self, root: str | Path, classes: list[str] | tuple[str, ...] | None = None, *,
                 size: int = CAPTURE_SIZE) -> None:
        if not 16 <= int(size) <= 1024:
            raise ValueError(f"size={size}: frames are saved 16 to 1024 pixels a side (224 is usual)")
        self.folder = CaptureFolder(root)
        offered = [check_class_name(c) for c in (classes or [])]
        names = list(dict.fromkeys(offered + self.folder.classes()))
        super().__init__(mode="capture", size=int(size), classes=names,
                         current_class=names[0] if names else "")
        self._thumbs: deque[tuple[str, bytes]] = deque(maxlen=_THUMBS)
        self._refresh_counts()

    @T.validate("current_class")
    def _check_current(self, proposal: Any) -> str:
        value = proposal["value"]
        return check_class_name(value) if value else value

    def _refresh_counts(self) -> None:
        self.counts = self.folder.counts(self.classes)

    def add_class(self, name: str) -> str:
        """Offer class ``name`` (checked: it becomes a folder) and make it the one captures go into."""
        clean = check_class_name(name)
        if clean not in self.classes:
            self.classes = [*self.classes, clean]
        self.current_class = clean
        self._refresh_counts()
        return clean

    def save_frame(self, data: bytes, class_name: str | None = None) -> Path:
        """Save one encoded frame (PNG/JPEG bytes) into the class's folder; returns the new file's path."""
        name = self.add_class(class_name) if class_name else self.current_class
        if not name:
            raise ValueError("choose or add a class first: type a name, then Add class")
        path = self.folder.save(name, data)
        try:
            self._thumbs.appendleft((name, png_thumbnail(decode_frame(data), _THUMB_PX)))
        except InvalidFrameError:  # pragma: no cover - save() checked the frame already
            pass
        self._refresh_counts()
        return path

    def undo(self) -> Path | None:
        """Delete the newest frame this widget saved (None when nothing is left to undo)."""
        path = self.folder.undo()
        if path is not None and self._thumbs:
            self._thumbs.popleft()
        self._refresh_counts()
        return path

    def _handle(self, content: dict, buffers: list[Any]) -> None:
        kind = content.get("type")
        if kind == "capture":
            if not buffers:
                raise InvalidFrameError("the capture message carried no frame; click Capture again")
            path = self.save_frame(bytes(buffers[0]), content.get("class_name") or None)
            name = path.parent.name
            self.message = f"Saved {name}/{path.name}"
            self.send({"type": "saved", "file": f"{name}/{path.name}", "class_name": name,
                       "count": self.counts.get(name, 0)})
        elif kind == "undo":
            path = self.undo()
            rel = f"{path.parent.name}/{path.name}" if path else None
            self.message = f"Removed {rel}" if rel else "Nothing to undo"
            self.send({"type": "undone", "file": rel})
        elif kind == "add-class":
            name = self.add_class(str(content.get("name", "")))
            self.send({"type": "class-added", "name": name, "folder": str(self.folder.root / name)})

    def _snapshot_html(self) -> str:
        rows = "".join(f'<tr><td>{html.escape(k)}</td><td style="text-align:right">{v}</td></tr>'
                       for k, v in self.counts.items())
        table = (f'<table class="tl-cam-counts" style="border-collapse:collapse"><tr><th>class</th><th>images</th>'
                 f"</tr>{rows}</table>" if rows else "<div>no classes yet</div>")
        import base64

        thumbs = "".join(f'<img alt="last frame captured for {html.escape(name)}" width="{_THUMB_PX}" '
                         f'src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'
                         for name, png in self._thumbs)
        return (f"<div>Camera capture into <code>{html.escape(str(self.folder.root))}</code> "
                f"(current class: <b>{html.escape(self.current_class or '-')}</b>)</div>{table}"
                f"{'<div>last captured: ' + thumbs + '</div>' if thumbs else ''}{self._snapshot_status()}")


class CameraClassifier(_Camera):
    """Classify what the webcam sees with a trained :class:`~tl_lab.training.run.Run`: top classes, frames per second.

    The browser sends a frame (the run's image size, e.g. 96 px) at most every ``interval_ms`` and only after the
    previous one was answered, so a slow kernel lowers the frame rate instead of building a queue. Each frame is
    classified by ``run.predict`` in a background thread (:class:`~tl_lab.widgets.common.LatestJob`), so the
    notebook stays usable. ``last`` holds the latest ``[(class, probability), ...]``; ``fps`` the rate the browser
    measured from the replies.
    """

    interval_ms = T.Int(100).tag(sync=True)
    fps = T.Float(0.0).tag(sync=True)  # set by the browser, about once a second

    def __init__(self, run: Run, *, k: int = 3, interval_ms: int = 100) -> None:
        if getattr(run, "tasks", None) is not None:
            raise ValueError("CameraClassifier shows one task's classes; this is a multi-task run. Train a single-task "
                             "run (fit without tasks=) to classify the camera")
        self.run = run
        self.k = int(k)
        self.last: list[tuple[str, float]] = []
        self.frames = 0
        self._job = LatestJob()
        self._lock = threading.Lock()
        super().__init__(mode="classify", size=int(run.data.image_size), interval_ms=int(interval_ms))

    def classify(self, data: bytes) -> list[tuple[str, float]]:
        """The top ``k`` classes of one encoded frame, from the run's own ``predict``."""
        probs = self.run.predict(decode_frame(data))[0]
        return top_k(probs.tolist(), list(self.run.data.classes), k=self.k)

    def _handle(self, content: dict, buffers: list[Any]) -> None:
        if content.get("type") != "classify":
            return
        if not buffers:
            raise InvalidFrameError("a classify message carried no frame")
        data, frame_id = bytes(buffers[0]), content.get("id")

        def job() -> None:
            start = time.perf_counter()
            try:
                top = self.classify(data)
            except Exception as exc:  # noqa: BLE001 - shown in the widget
                self._reply_error(exc, content)
                return
            with self._lock:
                self.last = top
                self.frames += 1
            self.send({"type": "prediction", "id": frame_id, "top": [[n, p] for n, p in top],
                       "ms": round((time.perf_counter() - start) * 1000, 1)})

        self._job.submit(job)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until no frame is being classified (tests and scripts)."""
        return self._job.wait(timeout)

    def _snapshot_html(self) -> str:
        rows = "".join(f"<tr><td>{html.escape(n)}</td><td style='text-align:right'>{p:.1%}</td></tr>"
                       for n, p in self.last)
        table = (f"<table style='border-collapse:collapse'><tr><th>class</th><th>probability</th></tr>{rows}</table>"
                 if rows else "<div>no frame classified yet</div>")
        rate = f", {self.fps:.1f} frames per second" if self.fps else ""
        return (f"<div>Live camera classifier: {html.escape(self.run.label)} ({len(self.run.data.classes)} classes"
                f"{rate}); last frame:</div>{table}{self._snapshot_status()}")
