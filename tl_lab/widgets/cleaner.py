"""LabelCleaner: the training images of your own folder that the model finds hardest, as possible mislabels.

Each image with the highest training loss is shown with its label and what the model says; the learner marks it
"keep", "relabel as <class>" or "leave out", and Save writes the decisions to ``tl_lab_labels.json`` in the
folder (:mod:`tl_lab.data.label_fixes`), which ``load_dataset("folder", root=...)`` honours from then on and
``data.report`` lists. No image is moved, renamed or deleted: delete the file to undo everything. Saving twice
writes the same file; opening the cleaner again shows the decisions saved.

Example::

    >>> data = tl_lab.load_dataset("folder", root="my_photos")     # doctest: +SKIP
    >>> run = tl_lab.fit("efficientnet_lite0", data)                # doctest: +SKIP
    >>> cleaner = LabelCleaner(run)    # or LabelCleaner(data): nearest-class-mean prototypes judge the images  # doctest: +SKIP
    >>> cleaner.wait(); cleaner.mark("dog/IMG_0042.jpg", "cat"); cleaner.save()   # doctest: +SKIP
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import ipywidgets as W

from tl_lab.data.datasets import DatasetSplits
from tl_lab.data.label_fixes import LABELS_FILE, LabelFixes, read_label_fixes, relative_key, write_label_fixes
from tl_lab.inside.mistakes import Mistakes, find_mistakes
from tl_lab.inside.prototypes import nearest_mean
from tl_lab.widgets.common import LatestJob, StatusLine, guarded, png_thumbnail

__all__ = ["LabelCleaner", "KEEP", "LEAVE_OUT"]

KEEP = "keep"
LEAVE_OUT = "leave out"
_SHOWN_PX = 96


def _folder_of(data: DatasetSplits) -> Path:
    root = (data.meta.get("load_args") or {}).get("root") or data.meta.get("source")
    if data.meta.get("kind") != "folder" or not root:
        raise ValueError(f"LabelCleaner cleans the labels of your own folder; this data is {data.name!r}. Load it "
                         "with load_dataset('folder', root='my_photos')")
    return Path(root).expanduser()


class LabelCleaner(W.VBox):
    """The ``top`` highest-loss training images of a folder dataset, each with a keep / relabel / leave-out menu.

    ``source``: a Run trained on the folder (its model judges the images), a ``nearest_mean`` result, or the
    folder's DatasetSplits (then nearest-class-mean prototypes on the pretrained ``backbone`` judge them: no
    training needed). ``cleaner.decisions`` maps each shown file to its choice; :meth:`save` writes the file.
    """

    def __init__(self, source: Any, *, top: int = 12, backbone: str = "efficientnet_lite0") -> None:
        data = source if isinstance(source, DatasetSplits) else getattr(source, "data", None)
        if not isinstance(data, DatasetSplits):
            raise TypeError("LabelCleaner needs a Run, a nearest_mean result or the DatasetSplits of your folder; "
                            f"got {type(source).__name__}")
        self.data = data
        self.root = _folder_of(data)
        self.top = int(top)
        self._source, self._backbone = source, backbone
        self.status = StatusLine("Finding the training images the model finds hardest…")
        self.items = W.VBox()
        self.save_button = W.Button(description="Save decisions", button_style="primary",
                                    tooltip=f"write them to {LABELS_FILE} in your folder (no image is moved)")
        self.save_button.add_class("tl-cleaner-save")
        self.saved = W.HTML()
        self.menus: dict[str, W.Dropdown] = {}
        self.mistakes: Mistakes | None = None
        self._job = LatestJob()
        self.save_button.on_click(guarded(self.status)(lambda _b: self.save()))
        super().__init__(children=[
            W.HTML(f"<b>Possible mislabels in {html.escape(str(self.root))}</b>: the training images with the highest "
                   "loss (the model is most sure they belong elsewhere). Mark each one, then Save: the decisions go "
                   f"to <code>{LABELS_FILE}</code> in the folder; no image is moved or deleted."),
            self.status, self.items, W.HBox([self.save_button, self.saved]),
        ])
        self.add_class("tl-cleaner")
        self._job.submit(self._find)

    def wait(self, timeout: float | None = 300) -> bool:
        return self._job.wait(timeout)

    def _find(self) -> None:
        try:
            source = self._source
            if isinstance(source, DatasetSplits):
                from tl_lab.backbones.registry import load_backbone

                source = nearest_mean(load_backbone(self._backbone), self.data)
            m = find_mistakes(source, "train", data=self.data, top=self.top)
        except Exception as exc:  # noqa: BLE001 - shown to the learner
            self.status.error(exc)
            return
        self.mistakes = m
        self._build(m)

    def _build(self, m: Mistakes) -> None:
        saved = read_label_fixes(self.root)
        split = self.data.train
        options = [("keep", KEEP), *((f"relabel as {c}", c) for c in m.classes), ("leave out", LEAVE_OUT)]
        boxes, menus = [], {}
        for r in m.top_losses:
            if not r.get("file"):
                continue
            key = relative_key(self.root, r["file"])
            value = saved.decision(key) or KEEP
            menu = W.Dropdown(options=options, value=value if value in {v for _, v in options} else KEEP,
                              layout=W.Layout(width="190px"))
            menu.add_class("tl-cleaner-choice")
            menus[key] = menu
            picture = W.Image(value=png_thumbnail(split.images[r["index"]], _SHOWN_PX), format="png",
                              layout=W.Layout(width=f"{_SHOWN_PX}px", height=f"{_SHOWN_PX}px"))
            caption = W.HTML(f"<div class='tl-cleaner-file' style='font-size:12px;line-height:1.3'>"
                             f"<code>{html.escape(key)}</code><br>labelled <b>{html.escape(r['true'])}</b>; the model "
                             f"says <b>{html.escape(r['predicted'])}</b> (p {r['prob_pred']:.2f}), loss "
                             f"{r['loss']:.2f}</div>", layout=W.Layout(width="190px"))
            box = W.VBox([picture, caption, menu], layout=W.Layout(width="200px", margin="4px"))
            box.add_class("tl-cleaner-item")
            boxes.append(box)
        self.menus = menus
        self.items.children = [W.HBox(boxes, layout=W.Layout(flex_flow="row wrap"))]
        n = len(saved.relabel) + len(saved.leave_out)
        self.status.set(f"{len(boxes)} training images with the highest loss, most suspicious first"
                        + (f"; {n} decision(s) already saved in {LABELS_FILE}" if n else "") + ".", "ok")

    @property
    def decisions(self) -> dict[str, str]:
        """Shown file (relative to the folder) -> ``"keep"``, a class name (relabel) or ``"leave out"``."""
        return {k: m.value for k, m in self.menus.items()}

    def mark(self, key: str, decision: str) -> None:
        """Choose for the shown file ``key``: ``"keep"``, a class name or ``"leave out"`` (as the menu does)."""
        if key not in self.menus:
            raise ValueError(f"{key!r} is not among the images shown; shown: {', '.join(self.menus) or 'none yet'}")
        allowed = [v for _, v in self.menus[key].options]
        if decision not in allowed:
            raise ValueError(f"choose 'keep', 'leave out' or a class ({', '.join(self.data.classes)}); got {decision!r}")
        self.menus[key].value = decision

    def save(self) -> Path:
        """Write the decisions to ``tl_lab_labels.json`` (decisions saved earlier for files not shown are kept)."""
        current = read_label_fixes(self.root)
        relabel = {k: v for k, v in current.relabel.items() if k not in self.menus}
        leave_out = [k for k in current.leave_out if k not in self.menus]
        for key, choice in self.decisions.items():
            if choice == LEAVE_OUT:
                leave_out.append(key)
            elif choice != KEEP:
                relabel[key] = choice
        fixes = LabelFixes(relabel, tuple(leave_out))
        path = write_label_fixes(self.root, fixes)
        self.saved.value = (f"<span class='tl-cleaner-saved' style='color:#1b6e20'>saved {len(fixes.relabel)} "
                            f"relabel(s) and {len(fixes.leave_out)} left out to {html.escape(str(path))}; "
                            "load_dataset('folder', ...) uses them from now on</span>")
        self.status.set("Saved. Reload the data (load_dataset) and train again to use the fixed labels.", "ok")
        return path
