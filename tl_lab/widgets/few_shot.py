"""FewShot: learn from one picked image per class, see the test accuracy at once, beside zero-shot and raw pixels.

Pick one image per class from the gallery (or upload your own and say which class it is): the widget builds
prototypes (the nearest class mean of pooled pretrained features, :mod:`tl_lab.inside.prototypes`) and shows the
test accuracy, a confusion matrix and a few test images with their predicted class. Beside it: zero-shot (no
example at all, :func:`tl_lab.inside.zero_shot.zero_shot`) and the raw-pixel baseline trained on the very images
picked (:func:`tl_lab.inside.prototypes.raw_pixel_accuracy`). Features of the gallery and the test images are
computed once when the widget opens, so picking a second or third example updates in milliseconds on a CPU.

The widget only displays: the numbers come from :func:`~tl_lab.inside.prototypes.score_prototypes`,
:func:`~tl_lab.inside.prototypes.raw_pixel_accuracy` and :func:`~tl_lab.inside.zero_shot.zero_shot`. The raw-pixel
fit runs in the background; clicks made while it runs are not lost: the newest picks are fitted next, and a result
for picks that have changed since is dropped, so the table always matches the picks shown.

Example::

    >>> few = FewShot(dataset="clipart", class_map={"electronics": ["electronic equipment", "computer"]})
    >>> few.pick_first(1); round(few.accuracy, 2)     # the first gallery image of every class
    0.34
    >>> few.toggle("animal", 1); few.counts()["animal"]
    2
"""

from __future__ import annotations

import base64
import html
import threading
import time
from collections.abc import Mapping, Sequence

import ipywidgets as W
import numpy as np
import torch
from PIL import Image

from tl_lab.data.datasets import DatasetSplits, ImageSplit
from tl_lab.inside.prototypes import PrototypeScores, class_counts, raw_pixel_accuracy, score_prototypes
from tl_lab.inside.stage_features import stage_features
from tl_lab.inside.zero_shot import NoImageNetClass, default_class_map, zero_shot
from tl_lab.plots.training import confusion_matrix
from tl_lab.widgets.common import (FigureSlot, LatestJob, StatusLine, Worker, error_message, fmt_acc, guarded,
                                   html_table, png_thumbnail)
from tl_lab.widgets.inside import read_upload
from tl_lab.widgets.state import LabState

__all__ = ["FewShot"]


_SHOWN_PX = 56  # gallery and test images are shown (and so stored in the saved widget state) at this size


def _png(image: torch.Tensor) -> bytes:
    return png_thumbnail(image, _SHOWN_PX)


def _mark_picked(change: dict) -> None:
    change["owner"].button_style = "success" if change["new"] else ""


class FewShot(W.VBox):
    """One-shot (and few-shot) classification by picking examples, with no training.

    ``dataset``/``backbone``/``state``: as the other widgets (a shared :class:`LabState` in ``TransferLab``).
    ``class_map``: terms for zero-shot (see :func:`tl_lab.inside.zero_shot.zero_shot`), on top of the dataset's
    default terms (:func:`tl_lab.inside.zero_shot.default_class_map`: clip art's *electronics*). ``stage``: which stage's
    pooled features the prototypes use (default the last body stage). ``gallery_per_class``: candidate images
    shown per class (the first training images of the seeded split). ``show_test``: test images shown with
    their prediction.
    """

    def __init__(self, dataset: str | None = None, backbone: str | None = None, *,
                 class_map: Mapping[str, str | Sequence[str]] | None = None, stage: str | None = None,
                 gallery_per_class: int = 6, show_test: int = 14, state: LabState | None = None) -> None:
        self.state = state if state is not None else LabState(
            backbone_name=backbone or "efficientnet_lite0", dataset=dataset or "clipart")
        self._dataset = dataset
        self.class_map = dict(class_map or {})
        self.stage = stage
        self.gallery_per_class = gallery_per_class
        self.show_test = show_test
        self.data: DatasetSplits | None = None
        self.accuracy: float | None = None
        self.zero_shot_acc: float | None = None
        self.zero_shot_note = ""
        self.zero_shot_terms: dict[str, tuple[str, ...]] = {}  # the class_map zero-shot used (defaults included)
        self.raw_acc: float | None = None
        self.raw_error: BaseException | None = None
        self.scores: PrototypeScores | None = None
        self.last_update_s: float | None = None
        self._lock = threading.RLock()  # one update (or one raw-pixel result) at a time
        self._generation = 0  # bumped by every update: a raw-pixel result for an older one is stale
        self._uploads: list[tuple[str, torch.Tensor, int]] = []  # (name, image, class)
        self._test_uris: dict[int, str] = {}  # test image index -> its PNG as a data URI

        self.status = StatusLine("Preparing…")
        self.status.add_class("tl-fewshot-status")
        self.gallery = W.VBox()
        self.upload = W.FileUpload(accept="image/*", multiple=False, description="Upload")
        self.upload_class = W.Dropdown(description="as class", layout=W.Layout(width="260px"),
                                       style={"description_width": "60px"})
        self.clear_button = W.Button(description="Clear picks", layout=W.Layout(width="130px"))
        self.table = W.HTML()
        self.table.add_class("tl-fewshot-table")
        self.terms_note = W.HTML()
        self.test_view = W.HTML()
        self.figure = FigureSlot(css_class="tl-fewshot-figure", placeholder="the confusion matrix appears here")
        self.worker = Worker(self.status)
        self._raw = LatestJob()  # raw pixels refit in the background, the newest picks first
        self.upload.observe(guarded(self.status)(self._on_upload), names="value")
        self.clear_button.on_click(guarded(self.status)(lambda _b: self.clear()))
        super().__init__(children=[
            W.HTML("<b>Learn from one example per class.</b> Click an image to use it as an example of its class "
                   "(click again to drop it). Prototypes: each class is the mean feature vector of its examples; a "
                   "test image goes to the nearest one. Nothing is trained."),
            self.gallery, W.HBox([self.upload, self.upload_class, self.clear_button]), self.status, self.table,
            self.terms_note, self.figure, self.test_view,
        ])
        self.add_class("tl-few-shot")
        self.worker.start("Computing features of the gallery and the test images (once)…", self._prepare,
                          self._prepared)

    # ---- preparation (background) -----------------------------------------------------------------------------
    def _prepare(self) -> dict:
        data = self.state.data(self._dataset, shots=None)
        bb = self.state.backbone()
        stage = self.stage or bb.body_stages[-1]
        labels = data.train.labels.numpy()
        rows = [i for k in range(len(data.classes)) for i in np.flatnonzero(labels == k)[: self.gallery_per_class]]
        gallery = data.train.subset(rows)
        feats = {"gallery": stage_features(bb, gallery, [stage])[stage],
                 "test": stage_features(bb, data.test, [stage])[stage]}
        terms = {**default_class_map(data), **self.class_map}
        left_out: dict[str, tuple[str, ...]] = {}
        try:
            zs = zero_shot(bb, data, terms)
        except NoImageNetClass as exc:
            zs_acc = None
            note = ("ImageNet has no class that is a digit" if exc.numerals
                    else f"no ImageNet class below {exc.target!r}; give FewShot(class_map={{{exc.target!r}: [...]}})")
        except ValueError as exc:  # a class_map that does not fit the data: say so in the row, keep the rest
            zs_acc, note = None, error_message(exc)
        else:
            zs_acc, note, left_out = zs.test_acc, "mean of the ImageNet probabilities below each class name", \
                zs.empty_terms
        return {"data": data, "stage": stage, "gallery": gallery, "feats": feats, "zs": (zs_acc, note),
                "terms": terms, "left_out": left_out}

    def _prepared(self, prep: dict) -> None:
        self.data, self.stage = prep["data"], prep["stage"]
        self._gallery: ImageSplit = prep["gallery"]
        self._feats = prep["feats"]
        self.zero_shot_acc, self.zero_shot_note = prep["zs"]
        self.zero_shot_terms = {c: (t,) if isinstance(t, str) else tuple(t) for c, t in prep["terms"].items()}
        if self.zero_shot_terms:
            given = "; ".join(f"{html.escape(c)}: {html.escape(', '.join(t))}" for c, t in self.zero_shot_terms.items())
            defaults = [c for c in self.zero_shot_terms if c not in self.class_map]
            origin = (f" (the default for {html.escape(self.data.name)}; FewShot(class_map=...) changes it)"
                      if defaults else "")
            left_out = "".join(f" Left out of {html.escape(c)}, no ImageNet class below: {html.escape(', '.join(t))}."
                               for c, t in prep["left_out"].items())
            self.terms_note.value = (f"<div style='color:#555;font-size:12px'>Zero-shot terms: {given}{origin}. "
                                     f"Every other class is looked up by its name.{left_out}</div>")
        self._buttons: list[W.ToggleButton] = []
        rows = []
        for k, name in enumerate(self.data.classes):
            cells = []
            for i in np.flatnonzero(self._gallery.labels.numpy() == k):
                image = W.Image(value=_png(self._gallery.images[i]), format="png", width=_SHOWN_PX,
                                height=_SHOWN_PX)
                button = W.ToggleButton(value=False, description=f"#{i}", layout=W.Layout(width="56px"),
                                        tooltip=f"use this image as an example of {name}")
                button.add_class("tl-fewshot-pick")
                button.observe(guarded(self.status)(lambda _c: self.update()), names="value")
                button.observe(_mark_picked, names="value")
                self._buttons.append(button)
                cells.append(W.VBox([image, button], layout=W.Layout(margin="0 2px")))
            label = W.HTML(f"<div style='width:120px;font-weight:bold'>{html.escape(name)}</div>")
            rows.append(W.HBox([label, *cells], layout=W.Layout(align_items="center")))
        self.upload_class.options = list(self.data.classes)
        self.upload_class.value = self.data.classes[0]
        self.update()  # the status and the table (zero-shot, chance) before the gallery, so they are there when it is
        self.gallery.children = rows

    # ---- what a click does ------------------------------------------------------------------------------------
    def wait(self, timeout: float | None = 120) -> None:
        """Block until preparing (and the last raw-pixel fit) has finished: for tests and lesson cells."""
        self.worker.wait(timeout)
        self._raw.wait(timeout)
        if self.worker.error is not None:
            raise self.worker.error

    def _index(self, class_name: str, n: int) -> int:
        if self.data is None:
            raise RuntimeError("still preparing; call wait() first")
        k = self.data.classes.index(class_name)
        rows = np.flatnonzero(self._gallery.labels.numpy() == k)
        if not 0 <= n < len(rows):
            raise ValueError(f"class {class_name!r} shows {len(rows)} gallery images; n must be 0..{len(rows) - 1}")
        return int(rows[n])

    def toggle(self, class_name: str, n: int) -> None:
        """Click the ``n``-th gallery image of ``class_name``."""
        button = self._buttons[self._index(class_name, n)]
        button.value = not button.value

    def pick_first(self, k: int) -> None:
        """Use exactly the first ``k`` gallery images of every class (what clicking them one by one does)."""
        self.wait()
        labels = self._gallery.labels.numpy()
        with self.hold_sync():
            for i, button in enumerate(self._buttons):
                rank = int((labels[:i] == labels[i]).sum())
                button.unobserve_all("value")
                button.value = rank < k
                _mark_picked({"owner": button, "new": button.value})
                button.observe(guarded(self.status)(lambda _c: self.update()), names="value")
                button.observe(_mark_picked, names="value")
        self.update()
        self.wait()

    def clear(self) -> None:
        self._uploads.clear()
        self.pick_first(0)

    def counts(self) -> dict[str, int]:
        """Examples per class picked so far (uploads included)."""
        y = self._chosen()[1]
        return dict(zip(self.data.classes, class_counts(y, len(self.data.classes)).tolist()))

    def _chosen(self) -> tuple[np.ndarray, np.ndarray, list[torch.Tensor]]:
        picked = [i for i, b in enumerate(self._buttons) if b.value]
        feats = [self._feats["gallery"][picked]]
        labels = [self._gallery.labels.numpy()[picked]]
        images = [self._gallery.images[i] for i in picked]
        for _, image, k in self._uploads:
            feats.append(self._upload_features(image))
            labels.append(np.array([k]))
            images.append(image)
        return np.concatenate(feats), np.concatenate(labels).astype(np.int64), images

    def _upload_features(self, image: torch.Tensor) -> np.ndarray:
        return stage_features(self.state.backbone(), image[None], [self.stage])[self.stage]

    def _on_upload(self, change: dict) -> None:
        if self.data is None:
            raise ValueError("still preparing the features; upload again in a moment")
        name, im = read_upload(change["new"])
        size = self.data.image_size
        im = im.resize((size, size), Image.Resampling.LANCZOS)  # the dataset's size, as the gallery images
        image = torch.from_numpy(np.array(im)).permute(2, 0, 1).contiguous()
        k = self.data.classes.index(self.upload_class.value)
        self._uploads.append((name, image, k))
        self.update()

    # ---- the update: prototypes at once, raw pixels in the background -----------------------------------------
    def update(self) -> None:
        """Show what the picks shown now give: prototypes at once, raw pixels when their fit (background) ends."""
        if self.data is None:
            return
        start = time.perf_counter()
        classes = self.data.classes
        with self._lock:
            x, y, images = self._chosen()
            self._generation += 1
            generation = self._generation
            self.raw_acc, self.raw_error = None, None
            counts = class_counts(y, len(classes))
            missing = [c for c, n in zip(classes, counts) if n == 0]
            if missing:
                self.accuracy, self.scores = None, None
                self.status.set(f"Pick at least one image of every class; still missing: {', '.join(missing)}.",
                                "info")
                if self.figure.widget is not None:  # no prototypes: the matrix must not show the last ones
                    self._show_matrix(confusion_matrix(
                        np.zeros((len(classes),) * 2, int), classes, title="No prototypes: a class has no example",
                        subtitle="the matrix fills in once every class has one"))
                self.test_view.value = ""
                self._show_table(counts)
                return
            self.scores = score_prototypes(x, y, self._feats["test"], self.data.test.labels.numpy(), len(classes))
            self.accuracy = self.scores.accuracy
            self._show_matrix(confusion_matrix(self.scores.confusion, classes,
                                               title=f"Prototypes from {len(y)} picked images: test predictions"))
            self._show_tests(self.scores.predictions)
            self.last_update_s = time.perf_counter() - start
            self._show_status()
            self._show_table(counts)
        data, picked = self.data, torch.stack(images)

        def fit_raw() -> None:
            try:
                acc = raw_pixel_accuracy(data, picked, y)
            except Exception as exc:  # noqa: BLE001 - shown in the status line
                self._raw_done(generation, None, exc)
            else:
                self._raw_done(generation, acc, None)

        self._raw.submit(fit_raw)

    def _raw_done(self, generation: int, acc: float | None, error: BaseException | None) -> None:
        with self._lock:
            if generation != self._generation:  # the picks changed since: a newer fit is on its way
                return
            self.raw_acc, self.raw_error = acc, error
            self._show_status()
            self._show_table(self.scores.counts)

    def _show_status(self) -> None:
        base = (f"Prototypes from {self.scores.n_examples} examples: test accuracy {self.accuracy:.3f} "
                f"(updated in {self.last_update_s * 1000:.0f} ms).")
        if self.raw_error is not None:
            self.status.error(self.raw_error, prefix=f"{base} Raw pixels on the same images failed")
        elif self.raw_acc is None:
            self.status.set(f"{base} Raw pixels on the same images: computing…", "ok")
        else:
            self.status.set(f"{base} Raw pixels on the same images: {self.raw_acc:.3f}.", "ok")

    def _show_matrix(self, fig) -> None:
        """First time: show the figure; then change only the cells and the title in place. (Replacing a heatmap's
        traces and layout in one step made plotly.js log 'ax.dtick error: Infinity' for the moment it had none.)
        ``FigureSlot.batch_update`` also refreshes the widget's saved state, which a reloaded page draws from:
        edited through ``fw.batch_update()`` alone, a reload showed the first picks' matrix."""
        if self.figure.widget is None:
            self.figure.show(fig)
            return
        with self.figure.batch_update() as fw:
            fw.data[0].z = fig.data[0].z
            fw.data[0].customdata = fig.data[0].customdata
            fw.layout.title = fig.layout.title

    def _show_table(self, counts: np.ndarray) -> None:
        chance = 1 / len(self.data.classes)
        zs = fmt_acc(self.zero_shot_acc) if self.zero_shot_acc is not None else f"n/a ({self.zero_shot_note})"
        if self.accuracy is None:
            raw = "-"
        elif self.raw_error is not None:
            raw = "failed (see the status line)"
        else:
            raw = fmt_acc(self.raw_acc) if self.raw_acc is not None else "computing…"
        rows = [
            {"method": f"prototypes ({self.stage}, {int(counts.min())}-{int(counts.max())} per class)",
             "test accuracy": fmt_acc(self.accuracy)},
            {"method": "zero-shot (no examples)", "test accuracy": zs},
            {"method": "raw pixels (same examples)", "test accuracy": raw},
            {"method": "chance", "test accuracy": fmt_acc(chance)},
        ]
        self.table.value = html_table(rows)

    def _show_tests(self, pred: np.ndarray) -> None:
        split = self.data.test
        step = max(1, len(split) // self.show_test)
        cells = []
        for i in range(0, len(split), step)[: self.show_test]:
            ok = pred[i] == int(split.labels[i])
            if i not in self._test_uris:  # encoded once: the same test images are shown after every pick
                self._test_uris[i] = "data:image/png;base64," + base64.b64encode(_png(split.images[i])).decode()
            uri = self._test_uris[i]
            color = "#1b6e20" if ok else "#b00020"
            cells.append(f"<div style='display:inline-block;margin:2px;text-align:center;font-size:11px;color:{color}'>"
                         f"<img src='{uri}' width='56' height='56'><br>{html.escape(self.data.classes[pred[i]])}</div>")
        self.test_view.value = "<div><b>Test images and their predicted class</b> (red: wrong)</div>" + "".join(cells)
