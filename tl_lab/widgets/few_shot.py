"""FewShot: learn from one picked image per class, see the test accuracy at once, beside zero-shot and raw pixels.

Pick one image per class from the gallery (or upload your own and say which class it is): the widget builds
prototypes (the nearest class mean of pooled pretrained features, :mod:`tl_lab.inside.prototypes`) and shows the
test accuracy, a confusion matrix and a few test images with their predicted class. Beside it: zero-shot (no
example at all, :func:`tl_lab.inside.zero_shot.zero_shot`) and the raw-pixel baseline trained on the very images
picked. Features of the gallery and the test images are computed once when the widget opens, so picking a second
or third example updates in milliseconds on a CPU.

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
import io
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace

import ipywidgets as W
import numpy as np
import torch
from PIL import Image

from tl_lab.data.baseline import baseline
from tl_lab.data.datasets import DatasetSplits, ImageSplit
from tl_lab.inside.prototypes import fit_prototypes
from tl_lab.inside.stage_features import stage_features
from tl_lab.inside.zero_shot import zero_shot
from tl_lab.plots.training import confusion_matrix
from tl_lab.widgets.common import FigureSlot, StatusLine, Worker, fmt_acc, guarded, html_table
from tl_lab.widgets.inside import read_upload
from tl_lab.widgets.state import LabState

__all__ = ["FewShot"]


def _png(image: torch.Tensor) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image.permute(1, 2, 0).numpy()).save(buf, format="PNG")
    return buf.getvalue()


def _mark_picked(change: dict) -> None:
    change["owner"].button_style = "success" if change["new"] else ""


class FewShot(W.VBox):
    """One-shot (and few-shot) classification by picking examples, with no training.

    ``dataset``/``backbone``/``state``: as the other widgets (a shared :class:`LabState` in ``TransferLab``).
    ``class_map``: terms for zero-shot (see :func:`tl_lab.inside.zero_shot.zero_shot`). ``stage``: which stage's
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
        self.raw_acc: float | None = None
        self.last_update_s: float | None = None
        self._uploads: list[tuple[str, torch.Tensor, int]] = []  # (name, image, class)

        self.status = StatusLine("Preparing…")
        self.status.add_class("tl-fewshot-status")
        self.gallery = W.VBox()
        self.upload = W.FileUpload(accept="image/*", multiple=False, description="Upload")
        self.upload_class = W.Dropdown(description="as class", layout=W.Layout(width="260px"),
                                       style={"description_width": "60px"})
        self.clear_button = W.Button(description="Clear picks", layout=W.Layout(width="130px"))
        self.table = W.HTML()
        self.table.add_class("tl-fewshot-table")
        self.test_view = W.HTML()
        self.figure = FigureSlot(css_class="tl-fewshot-figure", placeholder="the confusion matrix appears here")
        self.worker = Worker(self.status)
        self._raw_worker = Worker(StatusLine())  # raw pixels refit in the background, one at a time
        self.upload.observe(guarded(self.status)(self._on_upload), names="value")
        self.clear_button.on_click(guarded(self.status)(lambda _b: self.clear()))
        super().__init__(children=[
            W.HTML("<b>Learn from one example per class.</b> Click an image to use it as an example of its class "
                   "(click again to drop it). Prototypes: each class is the mean feature vector of its examples; a "
                   "test image goes to the nearest one. Nothing is trained."),
            self.gallery, W.HBox([self.upload, self.upload_class, self.clear_button]), self.status, self.table,
            self.figure, self.test_view,
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
        try:
            zs = zero_shot(bb, data, self.class_map)
            zs_acc, note = zs.test_acc, "mean of the ImageNet probabilities below each class name"
        except ValueError as exc:
            text = str(exc)
            note = ("ImageNet has no class that is a digit" if "numerals" in text
                    else text.split(": tried")[0] + "; give class_map=... terms")
            zs_acc = None
        return {"data": data, "stage": stage, "gallery": gallery, "feats": feats, "zs": (zs_acc, note)}

    def _prepared(self, prep: dict) -> None:
        self.data, self.stage = prep["data"], prep["stage"]
        self._gallery: ImageSplit = prep["gallery"]
        self._feats = prep["feats"]
        self.zero_shot_acc, self.zero_shot_note = prep["zs"]
        self._buttons: list[W.ToggleButton] = []
        rows = []
        for k, name in enumerate(self.data.classes):
            cells = []
            for i in np.flatnonzero(self._gallery.labels.numpy() == k):
                image = W.Image(value=_png(self._gallery.images[i]), format="png", width=56, height=56)
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
        self._raw_worker.wait(timeout)
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
        return {c: int((y == k).sum()) for k, c in enumerate(self.data.classes)}

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
        if self.data is None:
            return
        start = time.perf_counter()
        x, y, images = self._chosen()
        counts = np.bincount(y, minlength=len(self.data.classes))
        missing = [c for c, n in zip(self.data.classes, counts) if n == 0]
        if missing:
            self.accuracy = None
            self.status.set(f"Pick at least one image of every class; still missing: {', '.join(missing)}.", "info")
            self._show_table(counts)
            return
        protos = fit_prototypes(x, y, len(self.data.classes))
        pred = protos.predict(self._feats["test"])
        truth = self.data.test.labels.numpy()
        self.accuracy = float((pred == truth).mean())
        matrix = np.zeros((len(self.data.classes),) * 2, int)
        np.add.at(matrix, (truth, pred), 1)
        self._show_matrix(confusion_matrix(matrix, self.data.classes,
                                           title=f"Prototypes from {len(y)} picked images: test predictions"))
        self._show_tests(pred)
        self.last_update_s = time.perf_counter() - start
        self.status.set(f"Prototypes from {len(y)} examples: test accuracy {self.accuracy:.3f} "
                        f"(updated in {self.last_update_s * 1000:.0f} ms). Raw pixels on the same images: "
                        "computing…", "ok")
        self.raw_acc = None
        self._show_table(counts)
        train = ImageSplit(torch.stack(images), torch.from_numpy(y), self.data.classes)
        data = replace(self.data, train=train)
        self._raw_worker.start("", lambda: baseline(data, C=1.0)["test_acc"], self._raw_done)

    def _show_matrix(self, fig) -> None:
        """First time: show the figure; then change only the cells and the title in place. (Replacing a heatmap's
        traces and layout in one step made plotly.js log 'ax.dtick error: Infinity' for the moment it had none.)"""
        fw = self.figure.widget
        if fw is None:
            self.figure.show(fig)
            return
        with fw.batch_update():
            fw.data[0].z = fig.data[0].z
            fw.data[0].customdata = fig.data[0].customdata
            fw.layout.title = fig.layout.title

    def _raw_done(self, acc: float) -> None:
        self.raw_acc = float(acc)
        if self.accuracy is not None:
            self.status.set(self.status.text.replace("computing…", f"{self.raw_acc:.3f}."), "ok")
            self._show_table(np.array(list(self.counts().values())))

    def _show_table(self, counts: np.ndarray) -> None:
        chance = 1 / len(self.data.classes)
        zs = fmt_acc(self.zero_shot_acc) if self.zero_shot_acc is not None else f"n/a ({self.zero_shot_note})"
        rows = [
            {"method": f"prototypes ({self.stage}, {int(counts.min())}-{int(counts.max())} per class)",
             "test accuracy": fmt_acc(self.accuracy)},
            {"method": "zero-shot (no examples)", "test accuracy": zs},
            {"method": "raw pixels (same examples)", "test accuracy": fmt_acc(self.raw_acc)
             if self.raw_acc is not None else ("computing…" if self.accuracy is not None else "-")},
            {"method": "chance", "test accuracy": fmt_acc(chance)},
        ]
        self.table.value = html_table(rows)

    def _show_tests(self, pred: np.ndarray) -> None:
        split = self.data.test
        step = max(1, len(split) // self.show_test)
        cells = []
        for i in range(0, len(split), step)[: self.show_test]:
            ok = pred[i] == int(split.labels[i])
            uri = "data:image/png;base64," + base64.b64encode(_png(split.images[i])).decode()
            color = "#1b6e20" if ok else "#b00020"
            cells.append(f"<div style='display:inline-block;margin:2px;text-align:center;font-size:11px;color:{color}'>"
                         f"<img src='{uri}' width='56' height='56'><br>{html.escape(self.data.classes[pred[i]])}</div>")
        self.test_view.value = "<div><b>Test images and their predicted class</b> (red: wrong)</div>" + "".join(cells)
