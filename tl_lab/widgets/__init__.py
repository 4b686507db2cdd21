"""ipywidgets interfaces on top of the library: controls wired to library calls and plotly figures, no maths.

``TransferLab()`` is the all-in-one dashboard; each tab is also a widget of its own::

    from tl_lab.widgets import TransferLab, TrainPanel
    TransferLab()                                  # Backbone, Freeze, Train, Inside, Attributions, Compare
    TrainPanel(dataset="clipart", shots=10)        # just the training panel
"""

from tl_lab.widgets.freezer import StageFreezer
from tl_lab.widgets.picker import BackbonePicker
from tl_lab.widgets.state import LabState
from tl_lab.widgets.train_panel import TrainPanel

__all__ = ["BackbonePicker", "LabState", "StageFreezer", "TrainPanel"]
