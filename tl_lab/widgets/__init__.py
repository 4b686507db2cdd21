"""ipywidgets interfaces on top of the library: controls wired to library calls and plotly figures, no maths.

``TransferLab()`` is the all-in-one dashboard; each tab is also a widget of its own::

    from tl_lab.widgets import TransferLab, TrainPanel
    TransferLab()                                  # Backbone, Freeze, Train, Inside, Attributions, Compare, Few-shot
    TrainPanel(dataset="clipart", shots=10)        # just the training panel

Training and slow analyses run in background threads, so the notebook stays usable; errors show in the widget
with their message (and the traceback one click away).
"""

from tl_lab.widgets.attributions import AttributionExplorer
from tl_lab.widgets.backbone_choice import BackboneChooser
from tl_lab.widgets.camera import CameraCapture, CameraClassifier
from tl_lab.widgets.compare import CompareRuns
from tl_lab.widgets.dashboard import TransferLab
from tl_lab.widgets.few_shot import FewShot
from tl_lab.widgets.freezer import StageFreezer
from tl_lab.widgets.inside import FeatureExplorer
from tl_lab.widgets.cleaner import LabelCleaner
from tl_lab.widgets.mistakes import MistakesView
from tl_lab.widgets.picker import BackbonePicker
from tl_lab.widgets.shift_tab import ShiftLab
from tl_lab.widgets.state import LabState
from tl_lab.widgets.train_panel import TrainPanel
from tl_lab.widgets.snapshot import install_snapshots

install_snapshots()  # in a Jupyter kernel: every tl_lab widget also leaves a static snapshot (no-op elsewhere)

__all__ = [
    "AttributionExplorer",
    "BackboneChooser",
    "BackbonePicker",
    "CameraCapture",
    "CameraClassifier",
    "CompareRuns",
    "FewShot",
    "FeatureExplorer",
    "LabState",
    "LabelCleaner",
    "MistakesView",
    "ShiftLab",
    "StageFreezer",
    "TrainPanel",
    "TransferLab",
]
