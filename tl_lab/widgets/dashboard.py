"""TransferLab: the all-in-one dashboard. One shared state, seven tabs.

Backbone (choose a network, see its stages) → Freeze (which stages learn) → Train (live curves, Stop, runs table)
→ Inside (feature maps, filters, probes, embedding) → Attributions (pretrained vs your runs) → Compare (per-stage
CKA) → Shift (a new domain without its labels: AdaBN, domain confusion). The backbone picked in the first tab is what the others use; the plan set in Freeze is the Train tab's
"from the Freeze tab" plan; every run trained appears in Attributions and Compare.

Example::

    >>> from tl_lab.widgets import TransferLab
    >>> lab = TransferLab(dataset="clipart", shots=10)
    >>> lab                                    # display it in a notebook cell
"""

from __future__ import annotations

from pathlib import Path

import ipywidgets as W

from tl_lab.widgets.attributions import AttributionExplorer
from tl_lab.widgets.compare import CompareRuns
from tl_lab.widgets.freezer import StageFreezer
from tl_lab.widgets.inside import FeatureExplorer
from tl_lab.widgets.picker import BackbonePicker
from tl_lab.widgets.shift_tab import ShiftLab
from tl_lab.widgets.state import LabState
from tl_lab.widgets.train_panel import TrainPanel

__all__ = ["TransferLab", "TAB_TITLES"]

TAB_TITLES = ("1 Backbone", "2 Freeze", "3 Train", "4 Inside", "5 Attributions", "6 Compare", "7 Shift")


class TransferLab(W.VBox):
    """Backbone, Freeze, Train, Inside, Attributions and Compare tabs sharing one :class:`LabState`.

    ``lab.state`` holds the choices; ``lab.picker``, ``lab.freezer``, ``lab.train``, ``lab.inside``,
    ``lab.attributions`` and ``lab.compare`` are the tabs' widgets (each usable on its own too).
    """

    def __init__(self, backbone: str = "efficientnet_lite0", dataset: str = "clipart", shots: int | None = 10, *,
                 image_size: int | None = None, root: str = "", run_dir: str | Path = "tl_lab_runs") -> None:
        self.state = LabState(backbone_name=backbone, dataset=dataset, shots=shots, image_size=image_size, root=root)
        self.picker = BackbonePicker(backbone, state=self.state)
        self.freezer = StageFreezer(backbone, state=self.state)
        self.train = TrainPanel(state=self.state, run_dir=run_dir)
        self.inside = FeatureExplorer(state=self.state)
        self.attributions = AttributionExplorer(state=self.state)
        self.compare = CompareRuns(state=self.state)
        self.shift = ShiftLab(state=self.state)  # adapting to a new domain without its labels (lesson 11)
        self.tabs = W.Tab(children=[self.picker, self.freezer, self.train, self.inside, self.attributions,
                                    self.compare, self.shift], titles=TAB_TITLES)
        super().__init__(children=[
            W.HTML("<h3 style='margin:4px 0'>Transfer Learning Lab</h3>Work left to right: choose a pretrained "
                   "network, decide which stages learn, train on a few images per class, then look inside."),
            self.tabs,
        ])
        self.add_class("tl-transfer-lab")
