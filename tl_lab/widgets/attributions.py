"""AttributionExplorer: which pixels does each model use? Pretrained, fine-tuned and scratch side by side.

Rows are models (the pretrained ImageNet network and the runs you trained), columns are methods (captum's saliency,
integrated gradients, Grad-CAM, occlusion …, from :func:`tl_lab.inside.attribution.list_methods`). The sanity check
(Adebayo et al. 2018) randomises the first model's weights from the head down and reports whether each method's
map changes, which it must if the map explains the model.

Example::

    >>> data = tl_lab.load_dataset("digits", shots=10)
    >>> run_ft = tl_lab.fit("efficientnet_lite0", data, plan=tl_lab.FreezePlan.fine_tune())  # doctest: +SKIP
    >>> run_scratch = tl_lab.fit("efficientnet_lite0", data, pretrained=False)  # doctest: +SKIP
    >>> ex = AttributionExplorer(runs=[run_ft, run_scratch])  # doctest: +SKIP
    >>> ex.show_button.click(); ex.wait()  # doctest: +SKIP
"""

from __future__ import annotations

import html
from typing import Any

import ipywidgets as W
import numpy as np

from tl_lab.inside.attribution import explain, list_methods
from tl_lab.inside.sanity import sanity_check
from tl_lab.plots.inside import attribution_overlays
from tl_lab.training.run import Run
from tl_lab.widgets.common import FigureSlot, StatusLine, Worker, guarded
from tl_lab.widgets.state import LabState

__all__ = ["AttributionExplorer", "PRETRAINED", "model_options"]

PRETRAINED = "pretrained (ImageNet classifier)"
_DEFAULT_METHODS = ("saliency", "integrated_gradients", "grad_cam", "occlusion")


def model_options(runs: list[Run]) -> list[tuple[str, str]]:
    """Menu entries (label, key): the pretrained network, then each run numbered in the order it was trained."""
    return [(PRETRAINED, PRETRAINED)] + [(f"run {i}: {r.label}", r.name) for i, r in enumerate(runs, 1)]


class AttributionExplorer(W.VBox):
    """Attribution maps of one test image for several models and methods, plus the sanity check.

    ``runs``: trained Runs to compare (with a shared ``state``, every run made in the Train tab). ``dataset``: where
    the image comes from when there are no runs (else the first run's data). ``methods``: names from
    :func:`~tl_lab.inside.attribution.list_methods` selected at the start.
    """

    def __init__(self, runs: list[Run] | None = None, *, backbone: str | None = None, dataset: str | None = None,
                 methods: tuple[str, ...] = _DEFAULT_METHODS, state: LabState | None = None) -> None:
        self.state = state if state is not None else LabState(backbone_name=backbone or "efficientnet_lite0",
                                                              dataset=dataset or "clipart")
        self._runs: list[Run] = list(runs or [])
        infos = {m.name: m for m in list_methods()}
        bad = [m for m in methods if m not in infos]
        if bad:
            raise ValueError(f"unknown attribution methods {bad}; choose from: {', '.join(infos)}")
        narrow = {"description_width": "90px"}
        self.models = W.SelectMultiple(description="models", rows=4, style=narrow, layout=W.Layout(width="520px"))
        self.methods = W.SelectMultiple(options=[(m.display_name, m.name) for m in infos.values()], value=methods,
                                        description="methods", rows=5, style=narrow)
        self.index = W.BoundedIntText(value=0, min=0, max=10_000, description="test image #", style=narrow,
                                      layout=W.Layout(width="200px"))
        self.target = W.Dropdown(options=[("true label", "label"), ("each model's prediction", "predicted")],
                                 value="label", description="explain", style=narrow)
        self.show_button = W.Button(description="Show", button_style="primary", icon="eye")
        self.show_button.add_class("tl-show")
        self.sanity_button = W.Button(description="Sanity check", icon="random",
                                      layout=W.Layout(width="auto", min_width="150px"),
                                      tooltip="randomise the first model's weights from the head down: do the maps change?")
        self.status = StatusLine("Ready: pick models, methods and an image, then click Show.")
        self.figure = FigureSlot(css_class="tl-attribution-figure", placeholder="attribution maps appear here")
        self.sanity = W.HTML()
        self.about = W.HTML(self._about(infos))
        self.worker = Worker(self.status, self.show_button, self.sanity_button)
        self.show_button.on_click(guarded(self.status)(lambda _b: self.show()))
        self.sanity_button.on_click(guarded(self.status)(lambda _b: self.check()))
        self.state.observe(lambda _c: self._refresh_models(), names="runs")
        self._refresh_models()
        super().__init__(children=[
            W.HTML("<b>Attributions.</b> Each map shows which pixels pushed the model's score for the class up. "
                   "Compare the pretrained, fine-tuned and from-scratch models on the same image."),
            W.HBox([self.models, self.methods]), W.HBox([self.index, self.target]),
            W.HBox([self.show_button, self.sanity_button]), self.status, self.figure, self.sanity, self.about,
        ])
        self.add_class("tl-attribution-explorer")

    # ---- models ---------------------------------------------------------------------------------------------
    @property
    def runs(self) -> list[Run]:
        return self.state.runs_with(self._runs)

    def _refresh_models(self) -> None:
        options = model_options(self.runs)
        old = {v for _, v in self.models.options}
        keep = [v for v in self.models.value if v in {v for _, v in options}]
        new = [v for _, v in options if v not in old]  # runs that just arrived are selected too (3 rows at most)
        self.models.options = options
        self.models.value = tuple(dict.fromkeys(keep + new))[:3] or tuple(v for _, v in options[:3])

    def _model(self, key: str) -> tuple[str, Any]:
        """(short name for a row title, backbone): ``pretrained`` or ``run N`` as numbered in the menu."""
        if key == PRETRAINED:
            return "pretrained", self.state.backbone()
        i, run = next((i, r) for i, r in enumerate(self.runs, 1) if r.name == key)
        return f"run {i}", run.backbone

    def _split(self):
        return self.runs[0].data.test if self.runs else self.state.data().test

    # ---- actions --------------------------------------------------------------------------------------------
    def wait(self, timeout: float | None = None) -> None:
        self.worker.wait(timeout)

    def show(self) -> None:
        if not self.models.value:
            raise ValueError("select at least one model (ctrl/cmd-click to select several)")
        if not self.methods.value:
            raise ValueError("select at least one method")
        split = self._split()
        i = self.index.value
        if not 0 <= i < len(split):
            raise ValueError(f"test image # must be between 0 and {len(split) - 1}")
        image = split.images[i : i + 1]
        label = int(split.labels[i])
        models = [self._model(k) for k in self.models.value]
        methods = list(self.methods.value)
        mode = self.target.value

        def compute():
            rows, maps, notes = [], {m: [] for m in methods}, []
            for name, bb in models:
                imagenet = bb.meta.get("categories") is not None
                target = None if (mode == "predicted" or imagenet) else label
                classes = None if imagenet else split.classes
                for m in methods:
                    a = explain(m, bb, image, target, classes=classes)
                    maps[m].append(a.maps[0])
                    explained = a.target_names[0] if a.target_names else str(a.target[0])
                rows.append(f"{name} → {explained[:18]}")
                if imagenet and mode == "label":
                    notes.append(f"{name} knows only ImageNet's classes, so its own top class is explained")
            display = np.repeat(image.permute(0, 2, 3, 1).numpy(), len(models), axis=0)
            names = {m.name: m.display_name for m in list_methods()}
            fig = attribution_overlays(display, {names[m]: np.stack(v) for m, v in maps.items()}, row_titles=rows,
                                       title=f"Which pixels does each model use? ({split.classes[label]}, test image #{i})")
            return fig, notes

        def done(result):
            fig, notes = result
            self.figure.show(fig)
            extra = (" Note: " + "; ".join(notes) + ".") if notes else ""
            self.status.set(f"Showing {len(methods)} method(s) for {len(models)} model(s): rows are "
                            f"{', '.join(n for n, _ in models)} (see the models list).{extra}", "ok")

        self.worker.start("Computing attributions (integrated gradients and occlusion take a few seconds)…",
                          compute, done)

    def check(self) -> None:
        if not self.models.value:
            raise ValueError("select a model to check")
        name, bb = self._model(self.models.value[0])
        split = self._split()
        image = split.images[self.index.value : self.index.value + 1]
        methods = [m for m in self.methods.value if m != "occlusion"] or ["saliency"]

        def compute():
            return sanity_check(bb, image, None, methods=methods)

        def done(result):
            flagged = ", ".join(result.flagged) or "none"
            self.sanity.value = (
                f"<b>Sanity check on {html.escape(name)}</b> (Adebayo et al. 2018): rank correlation between the "
                f"original map and the map after randomising the weights from the head down. A map that explains "
                f"the model should change (correlation falls toward 0).<pre>{html.escape(str(result))}</pre>"
                f"Methods whose maps barely depend on the weights: <b>{html.escape(flagged)}</b>")
            self.status.set(f"Sanity check done: {'no method' if not result.flagged else flagged} flagged.", "ok")

        self.worker.start(f"Randomising {name} stage by stage (about half a minute)…", compute, done)

    @staticmethod
    def _about(infos) -> str:
        items = "".join(f"<li><b>{html.escape(m.display_name)}</b>: {html.escape(m.description)} "
                        f"<i>{html.escape(m.paper)}</i></li>" for m in infos.values())
        return f'<details><summary>What each method does</summary><ul style="font-size:12px">{items}</ul></details>'
