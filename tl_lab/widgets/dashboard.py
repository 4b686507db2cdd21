"""TransferLab: the all-in-one dashboard. One shared state, seven tabs.

Backbone (choose a network, see its stages) → Freeze (which stages learn) → Train (live curves, Stop, runs table)
→ Inside (feature maps, filters, probes, embedding) → Attributions (pretrained vs your runs) → Compare (per-stage
CKA) → Few-shot (pick one image per class: prototypes, against zero-shot and raw pixels) → Shift (a new domain without its labels: AdaBN, domain confusion) → Mistakes (what the latest run gets wrong: per-class accuracy, confusion matrix, highest-loss images with their attributions). The backbone picked in the first tab is what the others use; the plan set in Freeze is the Train tab's
"from the Freeze tab" plan; every run trained appears in Attributions and Compare.

Example::

    >>> from tl_lab.widgets import TransferLab
    >>> lab = TransferLab(dataset="clipart", shots=10)
    >>> lab                                    # display it in a notebook cell  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import ipywidgets as W

from tl_lab.widgets.attributions import AttributionExplorer
from tl_lab.widgets.backbone_choice import BackboneChooser
from tl_lab.widgets.compare import CompareRuns
from tl_lab.widgets.few_shot import FewShot
from tl_lab.widgets.freezer import StageFreezer
from tl_lab.widgets.inside import FeatureExplorer
from tl_lab.widgets.mistakes import MistakesView
from tl_lab.widgets.picker import BackbonePicker
from tl_lab.widgets.shift_tab import ShiftLab
from tl_lab.widgets.state import LabState
from tl_lab.widgets.train_panel import TrainPanel

__all__ = ["TransferLab", "TAB_TITLES"]

TAB_TITLES = ("1 Backbone", "2 Freeze", "3 Train", "4 Inside", "5 Attributions", "6 Compare", "7 Few-shot", "8 Shift",
              "9 Mistakes")


class TransferLab(W.VBox):
    """Backbone, Freeze, Train, Inside, Attributions, Compare and Few-shot tabs sharing one :class:`LabState`.

    ``lab.state`` holds the choices; ``lab.picker``, ``lab.freezer``, ``lab.train``, ``lab.inside``,
    ``lab.attributions`` and ``lab.compare`` are the tabs' widgets (each usable on its own too); ``lab.chooser``
    ("Which one for my data?") sits under the picker in the Backbone tab; ``lab.few_shot.build()`` returns the
    Few-shot tab's :class:`FewShot`, built when the tab is first shown (it computes the dataset's features as it opens);
    ``class_map`` gives it zero-shot terms (see :func:`tl_lab.zero_shot`).
    """

    def __init__(self, backbone: str = "efficientnet_lite0", dataset: str = "clipart", shots: int | None = 10, *,
                 image_size: int | None = None, root: str = "", run_dir: str | Path = "tl_lab_runs",
                 class_map: Mapping[str, str | Sequence[str]] | None = None) -> None:
        self.state = LabState(backbone_name=backbone, dataset=dataset, shots=shots, image_size=image_size, root=root)
        self.picker = BackbonePicker(backbone, state=self.state)
        self.chooser = BackboneChooser(state=self.state)
        self.freezer = StageFreezer(backbone, state=self.state)
        self.train = TrainPanel(state=self.state, run_dir=run_dir)
        self.inside = FeatureExplorer(state=self.state)
        self.attributions = AttributionExplorer(state=self.state)
        self.compare = CompareRuns(state=self.state)
        self.few_shot = _LazyTab(lambda: FewShot(state=self.state, class_map=class_map))
        self.shift = ShiftLab(state=self.state)  # adapting to a new domain without its labels (lesson 11)
        self.mistakes = _LazyTab(lambda: MistakesView(state=self.state))  # what the latest run gets wrong, and why
        self.tabs = W.Tab(children=[W.VBox([self.picker, self.chooser]), self.freezer, self.train, self.inside,
                                    self.attributions, self.compare, self.few_shot, self.shift, self.mistakes],
                          titles=TAB_TITLES)
        self.tabs.observe(self._on_tab, names="selected_index")
        super().__init__(children=[
            W.HTML("<h3 style='margin:4px 0'>Transfer Learning Lab</h3>Work left to right: choose a pretrained "
                   "network, decide which stages learn, train on a few images per class, then look inside."),
            self.tabs,
        ])
        self.add_class("tl-transfer-lab")

    def _on_tab(self, change: dict) -> None:
        if self.tabs.children[change["new"]] is self.few_shot:
            self.few_shot.build()
        if self.tabs.children[change["new"]] is self.mistakes:
            self.mistakes.build()


class _LazyTab(W.VBox):
    """A tab whose widget is built when the tab is first shown (FewShot computes features as it opens)."""

    def __init__(self, make) -> None:
        self._make = make
        self.widget = None
        super().__init__(children=[W.HTML("<div style='color:#777'>opening…</div>")])

    def build(self):
        if self.widget is None:
            self.widget = self._make()
            self.children = (self.widget,)
        return self.widget
