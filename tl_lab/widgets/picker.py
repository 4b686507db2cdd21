"""BackbonePicker: choose a pretrained network and see its stages before using it.

The diagram lists the stages in forward order with each one's parameter count and output shape, and says where the
weights come from, their license, and whether they are available offline. Choosing a network whose weights are not
cached tries to fetch them in the background; with no network the picker shows tl_lab's offline message (which file
is missing, where to put it, what works offline), never a traceback.

Example::

    >>> picker = BackbonePicker()            # efficientnet_lite0: embedded, works offline
    >>> picker.value = "resnet18"            # diagram of resnet18; its weights download once when online
"""

from __future__ import annotations

import html
import threading

import ipywidgets as W

from tl_lab.backbones.cost import images_per_second
from tl_lab.backbones.registry import (
    Backbone,
    WeightsUnavailableError,
    available_offline,
    get_spec,
    list_backbones,
    load_backbone,
)
from tl_lab.widgets.common import StatusLine, background, fmt_int, guarded, html_table
from tl_lab.widgets.state import LabState

__all__ = ["BackbonePicker", "weights_cached", "stage_diagram_html", "offline_cost_rows"]


def weights_cached(name: str) -> bool:
    """True when ``name``'s pretrained weights are on this machine (embedded, or in torch's hub cache)."""
    return available_offline(name)


def offline_cost_rows(*, measure: bool = True) -> list[dict]:
    """One row per backbone usable offline: parameters, ImageNet top-1 as its source states, and inference
    images/s measured on this machine at its native size (:func:`tl_lab.backbones.cost.images_per_second`,
    cached; None with ``measure=False``)."""
    rows = []
    for name in list_backbones(offline=True):
        spec = get_spec(name)
        rows.append({
            "network": name, "parameters": _parameters(name), "input px": spec.input_size,
            "ImageNet top-1": spec.imagenet_top1,
            "images/s (this machine)": round(images_per_second(name, batch_size=8), 1)
            if measure else None,
        })
    return rows


def _parameters(name: str) -> int:
    from tl_lab.backbones.cost import parameter_count

    return parameter_count(name)


def _shape(shape: tuple[int, ...]) -> str:
    return " × ".join(str(s) for s in shape)


def stage_diagram_html(backbone: Backbone, *, trainable: set[str] | None = None) -> str:
    """The stages as a row of boxes (input to output): name, parameters, output shape; trainable ones in green."""
    params = backbone.stage_parameters()
    shapes = backbone.stage_shapes()
    boxes = []
    for stage in backbone.stages:
        on = trainable is not None and stage in trainable
        bg = "#e3f4e1" if on else ("#eef2f7" if trainable is None else "#f1f1f1")
        border = "#2e7d32" if on else "#9aa8b8"
        boxes.append(
            f'<div class="tl-stage-box" title="{html.escape(stage)}" style="display:inline-block;vertical-align:top;'
            f'min-width:84px;margin:2px;padding:4px 6px;border:1px solid {border};border-radius:6px;background:{bg};'
            f'font-size:12px;line-height:1.35"><b>{html.escape(stage)}</b><br>{fmt_int(params[stage])} params'
            f'<br><span style="color:#555">out {_shape(shapes[stage])}</span></div>'
        )
    arrow = '<span style="display:inline-block;vertical-align:top;margin-top:18px;color:#777">→</span>'
    size = backbone.input_size
    start = (f'<div style="display:inline-block;vertical-align:top;margin:2px;padding:4px 6px;font-size:12px;'
             f'color:#555">image<br>3 × {size} × {size}</div>')
    return f'<div style="line-height:1">{start}{arrow}{arrow.join(boxes)}</div>'


def _costs_html(rows: list[dict] | None) -> str:
    intro = ("<div style='margin-top:8px'><b>Works offline: what each network costs</b> (parameters, ImageNet "
             "top-1 as its source states it, inference images/s measured on this machine at its native size: the "
             "fastest of several batches of 8; other programs running at the same time lower it)</div>")
    if rows is None:
        return intro + "<div style='color:#777'>measuring the speed of each network…</div>"
    shown = [{**r, "ImageNet top-1": f"{r['ImageNet top-1']:.1%}" if r["ImageNet top-1"] else "-"} for r in rows]
    return intro + html_table(shown, css_class="tl-cost-table")


class BackbonePicker(W.VBox):
    """Choose among :func:`tl_lab.list_backbones`; shows the stage diagram, weights source, license, availability.

    ``value``: the chosen name. ``backbone``: the loaded pretrained network once its weights are available
    (None while loading or when they cannot be had). With a shared ``state`` the choice becomes
    ``state.backbone_name`` once the weights loaded.
    """

    def __init__(self, value: str = "efficientnet_lite0", *, state: LabState | None = None) -> None:
        names = list_backbones()
        if value not in names:
            raise ValueError(f"unknown backbone {value!r}; choose one of: {', '.join(names)}")
        self.state = state
        self.backbone: Backbone | None = None
        self.dropdown = W.Dropdown(options=[(self._option_label(n), n) for n in names], value=None,
                                   description="Backbone", layout=W.Layout(width="460px"))
        self.info = W.HTML()
        self.diagram = W.HTML()
        self.status = StatusLine("Ready")
        self.costs = W.HTML(_costs_html(None))
        self.costs.add_class("tl-backbone-costs")
        self._thread: threading.Thread | None = None
        self._in_use: str | None = None  # the network loaded last (what the other tabs use)
        self._back_note: str | None = None  # why the picker went back to the network in use
        super().__init__(children=[
            W.HTML("<b>Choose a pretrained network.</b> Its stages run from the image (left) to the classifier "
                   "head (right); later tabs freeze, probe and compare these stages."),
            self.dropdown, self.info, self.diagram, self.status, self.costs,
        ])
        self.add_class("tl-backbone-picker")
        self.dropdown.observe(self._on_pick, names="value")
        self.dropdown.value = value
        self._cost_thread = background(self._measure_costs, name="tl-lab-costs")  # joined at exit (common.py)

    def _measure_costs(self) -> None:
        try:
            self.costs.value = _costs_html(offline_cost_rows())
        except Exception as exc:  # noqa: BLE001 - the table is optional; say why it is missing
            why = html.escape(str(exc))
            self.costs.value = f"<div style='color:#8a5a00'>could not measure the networks' speed: {why}</div>"

    @staticmethod
    def _option_label(name: str) -> str:
        spec = get_spec(name)
        where = "embedded, offline" if spec.embedded else ("cached" if available_offline(name) else "downloads once")
        return f"{name} ({where})"

    @property
    def value(self) -> str:
        return self.dropdown.value

    @value.setter
    def value(self, name: str) -> None:
        self.dropdown.value = name

    def wait(self, timeout: float | None = None) -> Backbone | None:
        """Block until the chosen network has loaded (or failed, and the picker went back to the one in use) and
        the cost table is measured; returns it or None."""
        joined = None
        while self._thread is not None and self._thread is not joined:
            joined = self._thread
            joined.join(timeout)
        self._cost_thread.join(timeout)
        return self.backbone

    def _on_pick(self, change: dict) -> None:
        guarded(self.status)(self._pick)(change["new"])

    def _pick(self, name: str) -> None:
        spec = get_spec(name)
        self.backbone = None
        cached = available_offline(name)
        avail = ("embedded in the package: works offline" if spec.embedded else
                 "in torch's hub cache: works offline" if cached else
                 "not on this machine yet: downloaded once (needs the network), then cached")
        self.info.value = (
            f'<div style="font-size:13px;line-height:1.5"><b>{html.escape(name)}</b>: {html.escape(spec.description)}'
            f"<br>weights: {html.escape(spec.weights_id)} · source: {html.escape(spec.source)} · license: "
            f"{html.escape(spec.license)}<br>paper: {html.escape(spec.paper)}<br>input: {spec.input_size} px"
            f"{' (fixed)' if spec.fixed_input_size else f', at least {spec.min_input_size} px'} · "
            f"<b>availability:</b> {avail}</div>"
        )
        # The diagram never needs the network: a randomly initialised copy has the same stages and shapes.
        self.diagram.value = stage_diagram_html(load_backbone(name, pretrained=False))
        self.status.set(f"Loading the pretrained weights of {name}…", "busy")
        self._thread = background(self._load, name, name=f"tl-lab-load-{name}")

    def _load(self, name: str) -> None:
        try:
            bb = self.state.backbone(name) if self.state is not None else load_backbone(name, pretrained=True)
        except WeightsUnavailableError as exc:
            if self.dropdown.value == name:
                in_use = self.state.backbone_name if self.state is not None else self._in_use
                if in_use and in_use != name:  # show what the other tabs really use, and why
                    self._back_note = f"{name} can't be used offline yet, so the lab keeps using {in_use}. {exc}"
                    self.dropdown.value = in_use
                else:
                    self.status.set(f"{name} can't be used offline yet. {exc}", "warn")
            return
        except Exception as exc:  # noqa: BLE001 - shown to the learner
            if self.dropdown.value == name:
                self.status.error(exc)
            return
        if self.dropdown.value != name:  # the learner picked another network meanwhile
            return
        self.backbone = bb
        self._in_use = name
        total = sum(bb.stage_parameters().values())
        note, self._back_note = self._back_note, None
        if note:
            self.status.set(note, "warn")
        else:
            self.status.set(f"Ready: {name} with pretrained weights, {total:,} parameters in {len(bb.stages)} stages.",
                            "ok")
        if self.state is not None:
            self.state.backbone_name = name
