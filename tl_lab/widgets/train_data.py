"""The Train tab's data controls: dataset, your own folder, shots per class, and the files a folder left out.

Why: a learner's folder decides the shots it can give (its smallest class) and may hold files that cannot be used;
the controls offer only what the data allows and show what was skipped, with the reason for each file. Loading is
done by the panel's worker (:meth:`DataChoice.load` runs in it); this module only holds the controls and says what
they show.

Example::

    >>> choice = DataChoice(LabState(dataset="digits", shots=5))
    >>> [v for _, v in choice.shots.options]
    [1, 2, 5, 10, 20, None]
"""

from __future__ import annotations

import html
from typing import Any

import ipywidgets as W

from tl_lab.widgets.state import OFFLINE_DATASETS, LabState
from tl_lab.widgets.train_options import in_widget_words, shot_options

__all__ = ["DataChoice"]

_NARROW = {"description_width": "110px"}


class DataChoice(W.VBox):
    """Dataset menu, folder path (for "your folder"), shots menu and the skipped-files list of one ``state``."""

    def __init__(self, state: LabState) -> None:
        self.state = state
        self.folder_most: int | None = None  # the most shots per class the chosen folder allows
        self.dataset = W.Dropdown(options=[*((n, n) for n in OFFLINE_DATASETS), ("your folder", "folder")],
                                  value=state.dataset, description="dataset", style=_NARROW)
        # read when the path is complete (Enter or leaving the box), not at every keystroke
        self.folder = W.Text(value=state.root, description="image folder",
                             placeholder="path with one sub-folder per class", style=_NARROW,
                             layout=W.Layout(width="520px"), continuous_update=False)
        self.shots = W.Dropdown(options=shot_options(state.shots), value=state.shots, description="shots per class",
                                style=_NARROW)
        self.skipped_list = W.HTML()
        self.skipped = W.Accordion(children=[self.skipped_list], titles=("",))
        self.skipped.selected_index = None
        self.skipped.layout.display = "none"
        self.skipped.add_class("tl-skipped-files")
        self.show_folder()
        super().__init__(children=[W.HBox([self.dataset, self.shots]), self.folder, self.skipped])

    @property
    def needs_folder(self) -> bool:
        """True while "your folder" is chosen and no path was typed yet."""
        return self.dataset.value == "folder" and not self.folder.value.strip()

    def chosen(self, change: dict) -> None:
        """Write the chosen data into the shared state; other data (not other shots) drops the folder's report."""
        self.show_folder()
        s = self.state
        s.dataset, s.root, s.shots = self.dataset.value, self.folder.value.strip(), self.shots.value
        if change.get("owner") in (self.dataset, self.folder):
            self.folder_most = None
            self.show_report(())
            if self.dataset.value != "folder":
                self.set_shot_options(shot_options(self.shots.value))

    def show_folder(self) -> None:
        self.folder.layout.display = "" if self.dataset.value == "folder" else "none"

    def set_shot_options(self, options: list) -> None:
        if [tuple(o) for o in self.shots.options] != options:
            value = self.shots.value
            counts = [v for _, v in options if v is not None]
            self.shots.options = options  # keeps the value when it is among them, else selects the first
            self.shots.value = value if value in counts or value is None else max(counts, default=None)

    def show_report(self, report) -> None:
        """The files a folder left out: a count, and the list (each with its reason) one click away."""
        if not report:
            self.skipped.layout.display = "none"
            self.skipped_list.value = ""
            return
        shown = list(report)[:300]
        items = "".join(f"<li><code>{html.escape(str(r.path))}</code>: {html.escape(r.reason)}</li>" for r in shown)
        more = f"<li>… and {len(report) - len(shown)} more (see <code>data.report</code>)</li>" if len(report) > len(
            shown) else ""
        self.skipped_list.value = (f'<ul style="margin:2px 0;padding-left:18px;font-size:12px;max-height:240px;'
                                   f'overflow:auto">{items}{more}</ul>')
        self.skipped.set_title(0, f"{len(report)} file(s) in the folder were not used: which and why")
        self.skipped.layout.display = ""

    def load(self) -> tuple[Any, str]:
        """(data, note), in the panel's worker: for a folder, offer only the shots it can give (lowering the
        chosen shots when the folder has fewer, and saying so in ``note``) and show the files it skipped."""
        s = self.state
        note = ""
        if s.dataset == "folder":
            everything = s.data(shots=None)
            counts = everything.train.counts()
            most = min(counts.values())
            self.folder_most = most
            self.show_report(everything.report)
            if s.shots is not None and s.shots > most:
                smallest = min(counts, key=counts.get)
                note = (f" Your folder has {most} training images in its smallest class ({smallest!r}), so shots per "
                        f"class is now {most} (was {s.shots}).")
                self.set_shot_options(shot_options(most, most))
                self.shots.value = most
                s.shots = most
            else:
                self.set_shot_options(shot_options(s.shots, most))
        return self.data(), note

    def data(self):
        """The chosen data (cached by the state); a shots count it cannot give is refused in the menu's words."""
        try:
            return self.state.data()
        except ValueError as exc:
            raise in_widget_words(exc) from None
