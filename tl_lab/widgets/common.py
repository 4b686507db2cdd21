"""Pieces every tl_lab widget shares: visible errors, status lines, reusable figure slots, throttling.

Why: a learner must never click a button that silently does nothing. Every callback runs through
:func:`guarded`, which shows an exception's message in the widget's status line and its traceback in a collapsed
"details" area, by assigning ``Output.outputs`` (printing inside ``with out:`` from a background thread shows
nothing once the cell has finished). Figures live in a :class:`FigureSlot`: one plotly ``FigureWidget`` per view,
refilled in place. Its widget is a :class:`LightFigureWidget`, which fetches plotly's ~5 MB widget script from the
kernel once per browser page instead of carrying it in every widget's state (a saved lesson stays small).

Every tl_lab widget displayed in a kernel also carries a static snapshot (:mod:`tl_lab.widgets.snapshot`): the
figures, tables and text it shows, as HTML that renders on a page with no kernel and no network.
"""

from __future__ import annotations

import atexit
import contextlib
import html
import threading
import weakref
import time
import traceback
from collections.abc import Callable, Iterator
from copy import deepcopy
from typing import Any

import ipywidgets as W
import plotly.graph_objects as go

from tl_lab.widgets.light_figure import LightFigureWidget

__all__ = ["StatusLine", "FigureSlot", "LightFigureWidget", "png_thumbnail", "Throttle", "Worker", "background",
           "guarded", "error_message", "fmt_int", "fmt_acc", "html_table"]

_LIVE: weakref.WeakSet[threading.Thread] = weakref.WeakSet()  # every widget's background thread not yet joined
EXIT_WAIT_S = 60.0


def background(target: Callable[..., Any], *args: Any, name: str) -> threading.Thread:
    """Start ``target(*args)`` in a daemon thread that the interpreter waits for at exit (up to a minute).

    Why: the widgets' threads run PyTorch; when the interpreter exits while one is inside a forward pass, PyTorch
    aborts the whole process ("terminate called without an active exception", exit status 134), which a script or
    a test run reports as a crash. Every widget thread starts here, so one exit hook covers them all.
    """
    thread = threading.Thread(target=target, args=args, daemon=True, name=name)
    _LIVE.add(thread)
    thread.start()
    return thread


@atexit.register
def _join_background_threads() -> None:
    deadline = time.monotonic() + EXIT_WAIT_S
    for thread in list(_LIVE):
        thread.join(max(0.0, deadline - time.monotonic()))

_COLORS = {"info": "#1f4e79", "ok": "#1b6e20", "warn": "#8a5a00", "error": "#b00020", "busy": "#444444"}


def fmt_int(n: int | None) -> str:
    return "-" if n is None else f"{int(n):,}"


def fmt_acc(v: Any) -> str:
    try:
        return f"{float(v):.3f}"
    except (TypeError, ValueError):
        return "-"


def error_message(exc: BaseException) -> str:
    """The message a learner reads: the exception's own text (tl_lab errors name the fix) and its type."""
    text = str(exc).strip() or "(no message)"
    return f"{type(exc).__name__}: {text}"


class StatusLine(W.VBox):
    """A one-line status (``Ready …``, ``Training …``, ``Error: …``) plus a collapsed traceback for errors."""

    def __init__(self, text: str = "Ready", *, css_class: str | None = None) -> None:
        self.line = W.HTML()
        self.details = W.Output()
        self.details_box = W.Accordion(children=[self.details], titles=("error details (traceback)",))
        self.details_box.selected_index = None
        self.details_box.layout.display = "none"
        if css_class:
            self.line.add_class(css_class)
        super().__init__(children=[self.line, self.details_box])
        self.set(text)

    @property
    def text(self) -> str:
        return self._text

    @property
    def kind(self) -> str:
        return self._kind

    def set(self, text: str, kind: str = "info") -> None:
        """Show ``text``; ``kind`` picks the colour: info, ok, warn, error, busy."""
        self._text, self._kind = text, kind
        color = _COLORS.get(kind, _COLORS["info"])
        weight = "bold" if kind in ("error", "warn") else "normal"
        self.line.value = (f'<div style="color:{color};font-weight:{weight};white-space:pre-wrap;'
                           f'line-height:1.4">{html.escape(text)}</div>')
        if kind != "error":
            self.details_box.layout.display = "none"

    def error(self, exc: BaseException, *, prefix: str = "Error") -> None:
        """Show the error's message and keep its traceback one click away."""
        self.set(f"{prefix}: {error_message(exc)}", "error")
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        self.details.outputs = ({"output_type": "stream", "name": "stderr", "text": tb},)
        self.details_box.layout.display = ""


def guarded(status: StatusLine, *, prefix: str = "Error") -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorate a widget callback so that any exception shows in ``status`` instead of vanishing into a log."""

    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        def run(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - shown to the learner, with its traceback
                status.error(exc, prefix=prefix)
                return None

        run.__name__ = getattr(fn, "__name__", "callback")
        run.__doc__ = fn.__doc__
        return run

    return wrap


class FigureSlot(W.Box):
    """One plotly ``FigureWidget`` that shows successive figures, refilled in place.

    Why: a view keeps one FigureWidget and refills it (a new widget per figure makes the page re-create the chart,
    and every widget is saved with the notebook); a slot with nothing to show yet holds only a placeholder line:
    the widget is created at the first ``show``. :meth:`clear` goes back to the placeholder and keeps the widget
    for the next ``show``, which always puts the chart back on screen.
    """

    def __init__(self, fig: go.Figure | None = None, *, css_class: str | None = None, placeholder: str = "") -> None:
        self.widget: go.FigureWidget | None = None
        self.placeholder = W.HTML(f'<div style="color:#777;padding:8px 4px">{html.escape(placeholder)}</div>')
        super().__init__(children=[self.placeholder], layout=W.Layout(width="100%", flex_flow="column"))
        if css_class:
            self.add_class(css_class)
        if fig is not None:
            self.show(fig)

    @property
    def figure(self) -> go.FigureWidget:
        """The live FigureWidget (created, empty, if nothing was shown yet); the slot shows it."""
        if self.widget is None:
            self.widget = LightFigureWidget()
        self._attach()
        return self.widget

    @property
    def showing(self) -> bool:
        """Whether the chart is on screen (False while the slot shows its placeholder or nothing)."""
        return self.widget is not None and tuple(self.children) == (self.widget,)

    def show(self, fig: go.Figure) -> None:
        """Replace what the slot shows with ``fig`` (traces, layout and all), and put the chart on screen."""
        if self.widget is None:
            self.widget = LightFigureWidget(fig)
            self._attach()
            return
        with self.batch_update() as fw:
            fw.data = []
            fw.add_traces(list(fig.data))
            fw.layout = fig.layout
        self._attach()

    def clear(self) -> None:
        """Show the placeholder again (the widget is kept and reused by the next :meth:`show`)."""
        self.children = (self.placeholder,)

    def _attach(self) -> None:
        # A caller may have emptied ``children`` to hide the chart (BackboneChooser did, before each new score):
        # the widget then stayed set while nothing showed it, so every later show() refilled an invisible chart.
        if tuple(self.children) != (self.widget,):
            self.children = (self.widget,)

    @contextlib.contextmanager
    def batch_update(self) -> Iterator[go.FigureWidget]:
        """``FigureWidget.batch_update()``, after which the widget's saved state holds the figure as it now is.

        Why: plotly sends each change to the open page as a message, but the state a reloaded page (or a new view
        of the same cell) starts from is the one given to the FigureWidget when it was made (``_widget_data``,
        ``_widget_layout``; plotly refreshes them only when the widget is displayed on its own, never as a child of
        a box). A chart filled epoch by epoch came back empty after a reload. Refreshing them costs a copy of the
        figure per update; the open page does not redraw for it.
        """
        fw = self.figure
        with fw.batch_update():
            yield fw
        self.save_state()

    def save_state(self) -> None:
        """Make the widget's saved state (what a reloaded page draws) the figure as it now is."""
        fw = self.widget
        if fw is not None:
            fw._widget_layout = deepcopy(fw._layout_obj._props)  # as plotly's own _repr_mimebundle_ does
            fw._widget_data = deepcopy(fw._data)


def png_thumbnail(image: Any, size: int) -> bytes:
    """PNG bytes of ``image`` (a CHW uint8 tensor, an HWC array or a PIL image) at most ``size`` pixels a side.

    Why: a widget's images are part of its saved state (base64 in the notebook), so an image shown at 56 px should
    be stored at 56 px: FewShot's 42 gallery images stored at 128 px were 0.62 MB of lesson 10's 1.14 MB of state
    (0.60 MB in all at 56 px).
    """
    import io

    import numpy as np
    from PIL import Image

    if hasattr(image, "detach"):
        image = image.detach().cpu().permute(1, 2, 0).numpy()
    pil = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image))
    if max(pil.size) > size:
        pil = pil.copy()
        pil.thumbnail((size, size), Image.LANCZOS)
    buf = io.BytesIO()
    pil.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


class Throttle:
    """Let something through at most once every ``interval`` seconds (thread-safe); ``force`` always passes."""

    def __init__(self, interval: float = 0.3) -> None:
        self.interval = float(interval)
        self._last = float("-inf")
        self._lock = threading.Lock()

    def ready(self, *, force: bool = False) -> bool:
        with self._lock:
            now = time.monotonic()
            if force or now - self._last >= self.interval:
                self._last = now
                return True
            return False


def html_table(rows: list[dict], *, css_class: str = "", empty: str = "no rows yet",
               titles: dict[str, str] | None = None) -> str:
    """A small styled HTML table (header from the first row's keys); numbers right-aligned; ``titles``: a tooltip
    for the header of some columns (what the column means)."""
    style = ("<style>.tl-table{border-collapse:collapse;font-size:13px;margin:4px 0}"
             ".tl-table th,.tl-table td{border-bottom:1px solid #ddd;padding:3px 8px;text-align:left;line-height:1.3}"
             ".tl-table td.num{text-align:right;font-variant-numeric:tabular-nums}"
             ".tl-table th{background:#f3f5f7}</style>")
    if not rows:
        return f'{style}<table class="tl-table {css_class}"><tbody></tbody></table><div style="color:#777">{html.escape(empty)}</div>'
    keys = list(rows[0])
    titles = titles or {}
    head = "".join(f'<th title="{html.escape(titles[k])}">{html.escape(str(k))}</th>' if k in titles
                   else f"<th>{html.escape(str(k))}</th>" for k in keys)
    body = []
    for r in rows:
        cells = []
        for k in keys:
            v = r.get(k)
            if isinstance(v, float):
                cells.append(f'<td class="num">{v:.3f}</td>' if v <= 1.0 else f'<td class="num">{v:,.1f}</td>')
            elif isinstance(v, int) and not isinstance(v, bool):
                cells.append(f'<td class="num">{v:,}</td>')
            else:
                cells.append(f"<td>{html.escape('-' if v is None else str(v))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f'{style}<table class="tl-table {css_class}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


class Worker:
    """Runs one slow computation at a time in a background thread, reporting through a :class:`StatusLine`.

    Why: a probe or an attribution takes seconds; doing it in a button callback would freeze the notebook. The
    result is applied by ``done`` (in the thread: it must only set widget values or refill a FigureSlot); an
    exception shows in the status line with its traceback. ``wait()`` lets tests and scripts block until it ends.
    ``buttons`` are disabled while it works; a widget whose buttons depend on more than "busy or not" passes
    ``on_busy`` instead, called with True when a job starts and False when it ended (in the thread), so button
    state is derived in one place from one flag.
    """

    def __init__(self, status: StatusLine, *buttons: W.Button,
                 on_busy: Callable[[bool], None] | None = None) -> None:
        self.status = status
        self.buttons = buttons
        self.on_busy = on_busy
        self.thread: threading.Thread | None = None
        self.error: BaseException | None = None

    @property
    def busy(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def start(self, busy_text: str, compute: Callable[[], Any], done: Callable[[Any], None], *,
              error_prefix: str = "Error") -> None:
        if self.busy:
            self.status.set("Still working on the last request; wait for it to finish.", "warn")
            return
        self.error = None
        self.status.set(busy_text, "busy")
        self._set_busy(True)

        def work() -> None:
            try:
                done(compute())
            except Exception as exc:  # noqa: BLE001 - shown to the learner
                self.error = exc
                self.status.error(exc, prefix=error_prefix)
            finally:
                self._set_busy(False)

        self.thread = background(work, name="tl-lab-worker")

    def _set_busy(self, busy: bool) -> None:
        for b in self.buttons:
            b.disabled = busy
        if self.on_busy is not None:
            self.on_busy(busy)

    def wait(self, timeout: float | None = None) -> None:
        if self.thread is not None:
            self.thread.join(timeout)


class LatestJob:
    """Runs jobs one at a time in a background thread, the newest first: a job submitted while another runs
    replaces the one waiting, if any.

    Why: :class:`Worker` refuses a job while it is busy, right for a button whose second click would repeat the
    work, wrong for a computation that follows the learner's latest input (FewShot's raw-pixel fit after each pick):
    clicks faster than the fit skip the fits in between, never the last one. Each job reports its own result and
    errors (a result for an input that has changed since must be dropped by the job).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: Callable[[], None] | None = None
        self._running = False
        self._idle = threading.Event()
        self._idle.set()

    def submit(self, job: Callable[[], None]) -> None:
        with self._lock:
            self._waiting = job
            self._idle.clear()
            if not self._running:
                self._running = True
                background(self._loop, name="tl-lab-few-shot-raw")

    def _loop(self) -> None:
        while True:
            with self._lock:
                job, self._waiting = self._waiting, None
                if job is None:
                    self._running = False
                    self._idle.set()
                    return
            job()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until no job runs or waits; False when ``timeout`` passed first."""
        return self._idle.wait(timeout)
