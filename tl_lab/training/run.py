"""The result of one training run: history, best metrics, checkpoints, config, and the trained model.

A :class:`Run` is what ``fit`` returns, what widgets tabulate and overlay, and what ``tl-lab train`` reproduces from
``run.config``. Its files live in ``run_dir``: ``best.safetensors``, ``last.safetensors`` and ``run.json``.
"""

from __future__ import annotations

import json
import platform
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from tl_lab._eval_mode import eval_mode
from tl_lab.backbones.registry import Backbone
from tl_lab.data.datasets import DatasetSplits, ImageSplit
from tl_lab.training.events import StopCause
from tl_lab.training.mistakes import TOP_DEFAULT, Mistakes, mistakes_from_logits, split_files, split_logits

if TYPE_CHECKING:
    from tl_lab.training.freeze import FreezePlan, FreezeSummary
    from tl_lab.training.multitask import Tasks
    from tl_lab.training.settings import FitSettings

__all__ = ["Run", "data_config", "evaluate_model", "predict_images", "prepare_images", "run_label", "start_run"]


@dataclass
class Run:
    name: str
    backbone: Backbone = field(repr=False)
    data: DatasetSplits = field(repr=False)
    config: dict
    history: list[dict] = field(default_factory=list)
    best: dict = field(default_factory=dict)
    run_dir: Path | None = None
    checkpoint: Path | None = None  # the best checkpoint
    last_checkpoint: Path | None = None
    timings: dict = field(default_factory=dict)
    cache: str = ""
    stopped_early: bool = False
    stop_reason: str | None = None  # for people; code branches on stop_cause
    stop_cause: StopCause | None = None
    notes: list[str] = field(default_factory=list)
    trainable_parameters: int = 0
    tasks: Tasks | None = field(default=None, repr=False)  # a multi-task run's tasks (fit(tasks=...))

    @property
    def model(self) -> torch.nn.Module:
        return self.backbone.model

    @property
    def label(self) -> str:
        """A legend label: backbone, plan and shots, e.g. ``lite0, frozen to head, 10-shot``."""
        return run_label(self.config)

    def evaluate(self, split: str = "test", *, batch_size: int = 64) -> dict:
        """Loss and accuracy of the current model on ``split`` ("train", "val" or "test")."""
        data = _split(self.data, split)
        return evaluate_model(self.backbone, data, device=_device_of(self.model), batch_size=batch_size,
                              tasks=self.tasks)

    def mistakes(self, split: str = "test", *, top: int | None = TOP_DEFAULT, batch_size: int = 64) -> Mistakes:
        """What this run's model gets wrong on ``split``: per-class accuracy, the confusion matrix (rows true,
        columns predicted), the most-confused pairs and the ``top`` highest-loss images (cross-entropy, highest
        first). Computed from the model as it is now: the kept (best) weights after ``fit``.

            >>> m = run.mistakes("test")                                  # doctest: +SKIP
            >>> print(m.table()); m.confused_pairs[:3]; m.top_losses[0]   # doctest: +SKIP

        See :class:`tl_lab.training.mistakes.Mistakes`; :func:`tl_lab.plots.mistakes.top_loss_figure` draws them.
        """
        if self.tasks is not None:
            raise ValueError("run.mistakes() looks at one set of classes; this run learned several tasks. Train a "
                             "single-task run (fit without tasks=) to see its mistakes")
        data = _split(self.data, split)
        logits = split_logits(self.backbone, data, batch_size=batch_size)
        return mistakes_from_logits(logits, data.labels, self.data.classes, split=split, top=top,
                                    files=split_files(self.data, data))

    def predict(self, images: torch.Tensor | Any, *, batch_size: int = 64) -> torch.Tensor | dict[str, torch.Tensor]:
        """Class probabilities ``(N, classes)`` for images prepared as this run's training images were (a multi-task
        run: ``{task: (N, classes of the task)}``).

        ``images``: a PIL image, a list of them, or a uint8 / float-in-[0, 1] tensor ``(N, 3, H, W)`` or ``(3, H, W)``.
        Each is resized (short side) and centre-cropped to the run's image size (``run.data.image_size``, e.g. 96 px),
        as the data loader prepared the training images, then normalised for the backbone; a tensor already at
        that size is used as it is. So a PIL image and the same pixels as a uint8 tensor get the same prediction.

            >>> data = tl_lab.load_dataset("digits", shots=3, image_size=32)
            >>> run = tl_lab.fit("efficientnet_lite0", data, epochs=1, progress=False, save_checkpoints=False)
            >>> probs = run.predict(data.test.images)          # (N, classes), rows sum to 1
            >>> probs.shape, bool(torch.allclose(probs.sum(1), torch.ones(len(probs))))
            (torch.Size([539, 10]), True)
            >>> run.predict(tl_lab.sample_photo("cat").image()).shape      # a PIL image: (1, classes)
            torch.Size([1, 10])
        """
        return predict_images(self.backbone, images, image_size=self.data.image_size, device=_device_of(self.model),
                              batch_size=batch_size, tasks=self.tasks)

    def export(self, path: str | Path, *, formats: tuple[str, ...] = ("onnx", "pt2"), check: bool = True,
               tolerance: float | None = None) -> Any:
        """Write the trained network for use without tl_lab: ``<path>.onnx``, ``<path>.pt2`` and ``<path>.json``
        (preprocessing, class names, parity figures). See :func:`tl_lab.training.export.export_run`.

        The ONNX file outputs probabilities, is checked with onnxruntime on the test split (same top-1 on every image,
        probabilities within ``tolerance``, default 1e-4) and needs ``pip install "tl-lab[export]"``.
        Returns an :class:`~tl_lab.training.export.ExportResult` (``print`` it for files, sizes and parity).
        """
        from tl_lab.training.export import DEFAULT_TOLERANCE, export_run

        return export_run(self, path, formats=formats, check=check,
                          tolerance=DEFAULT_TOLERANCE if tolerance is None else tolerance)

    def table_row(self) -> dict:
        """One row for a runs table."""
        return {
            "run": self.label,
            "best val acc": self.best.get("val_acc"),
            "test acc": self.best.get("test_acc"),
            "best epoch": self.best.get("epoch"),
            "epochs run": len(self.history),
            "seconds": round(self.timings.get("total_s", 0.0), 1),
            "trainable params": self.trainable_parameters,
            "stopped": self.stop_reason or "",
        }

    def summary(self) -> str:
        b = self.best
        lines = [f"Run {self.name}: {self.label}"]
        if b:
            line = f"  best val acc {_fmt(b.get('val_acc'))} at epoch {b.get('epoch')}"
            if _finite(b.get("test_acc")):  # absent when nothing usable was kept (a loss that became nan at once)
                line += f", test acc {b['test_acc']:.3f}"
            lines.append(line)
        lines.append(f"  {len(self.history)} epochs in {self.timings.get('total_s', 0):.1f} s; cache {self.cache}")
        if self.stop_reason:
            lines.append(f"  stopped early: {self.stop_reason}")
        lines.extend(f"  note: {n}" for n in self.notes)
        if self.checkpoint:
            lines.append(f"  best checkpoint: {self.checkpoint}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "label": self.label,
            "config": self.config,
            "history": self.history,
            "best": self.best,
            "timings": self.timings,
            "cache": self.cache,
            "stopped_early": self.stopped_early,
            "stop_reason": self.stop_reason,
            "stop_cause": self.stop_cause.value if self.stop_cause else None,
            "notes": self.notes,
            "trainable_parameters": self.trainable_parameters,
        }

    def record(self, path: str | Path, *, figures: dict | None = None, baseline: float | None | str = "auto") -> Path:
        """Save this run as a small JSON recording for course pages; ``tl_lab.embed.replay(path)`` makes the HTML.

        ``figures``: ``{title: plotly figure}`` to include; ``baseline``: the raw-pixel test accuracy shown beside
        it ("auto" computes it from this run's data). See :mod:`tl_lab.embed`.
        """
        from tl_lab.training.record import record

        return record(self, path, figures=figures, baseline=baseline)

    def save_json(self) -> Path | None:
        if self.run_dir is None:
            return None
        path = Path(self.run_dir) / "run.json"
        tmp = path.with_suffix(".tmp")
        try:
            tmp.write_text(_dumps_run(self.to_json()))
            tmp.replace(path)
        except OSError as exc:  # a full disk: the run and its notes stay in memory; say so once
            tmp.unlink(missing_ok=True)
            note = f"run.json could not be written to {self.run_dir} ({exc.strerror or exc}); the run is in memory only"
            if note not in self.notes:
                self.notes.append(note)
            return None
        return path


def _dumps_run(info: dict) -> str:
    """run.json's text: indented, with one history row per line.

    Readable in an editor, and fast enough to rewrite every epoch: ``indent`` makes ``json`` use its pure-Python
    encoder, so the rows (the bulk of the file) are encoded compactly by the C encoder and joined by hand.
    """
    rows = info.get("history") or []
    text = json.dumps({**info, "history": "\0history\0"}, indent=1, default=str)
    body = ",\n  ".join(json.dumps(row, default=str) for row in rows)
    return text.replace('"\\u0000history\\u0000"', f"[\n  {body}\n ]" if rows else "[]")


def run_label(config: dict) -> str:
    """The legend label of a run from its config (``FitStart.config`` or ``Run.config``)."""
    shots = config.get("data", {}).get("shots")
    parts = [config["backbone"].replace("efficientnet_", ""), config["plan_label"]]
    parts.append(f"{shots}-shot" if shots else "all data")
    if not config.get("pretrained", True):
        parts.insert(1, "scratch")
    return ", ".join(parts)


def _split(data: DatasetSplits, split: str) -> ImageSplit:
    if split not in ("train", "val", "test"):
        raise ValueError(f"split must be 'train', 'val' or 'test', got {split!r}")
    return getattr(data, split)


def _device_of(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def evaluate_batches(batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> dict:
    """Mean cross-entropy and accuracy over ``(logits, labels)`` batches: ``{"loss", "acc", "n"}``.

    The one place evaluation sums up, whether the logits come from images (:func:`evaluate_model`) or from the
    training engine's cached features.
    """
    loss_sum, correct, n = 0.0, 0, 0
    for logits, y in batches:
        logits = logits.float()
        loss_sum += torch.nn.functional.cross_entropy(logits, y, reduction="sum").item()
        correct += (logits.argmax(1) == y).sum().item()
        n += len(y)
    return {"loss": loss_sum / max(n, 1), "acc": correct / max(n, 1), "n": n}


@torch.no_grad()
def evaluate_model(backbone: Backbone, split: ImageSplit, *, device: torch.device, batch_size: int = 64,
                   tasks: Tasks | None = None) -> dict:
    model = backbone.model
    with eval_mode(model):
        batches = (
            (model(backbone.normalize(split.images[lo : lo + batch_size].to(device))),
             (tasks.labels(split, slice(lo, lo + batch_size)) if tasks is not None
              else split.labels[lo : lo + batch_size]).to(device))
            for lo in range(0, len(split), batch_size)
        )
        return tasks.evaluate_batches(batches) if tasks is not None else evaluate_batches(batches)


@torch.no_grad()
def predict_images(backbone: Backbone, images: Any, *, image_size: int, device: torch.device,
                   batch_size: int = 64, tasks: Tasks | None = None) -> torch.Tensor | dict[str, torch.Tensor]:
    """Softmax outputs of ``backbone`` for ``images`` prepared at ``image_size`` (see :meth:`Run.predict`)."""
    x = prepare_images(images, image_size)
    model = backbone.model
    with eval_mode(model):
        logits = torch.cat([model(backbone.normalize(x[lo : lo + batch_size].to(device))).float().cpu()
                            for lo in range(0, len(x), batch_size)])
        return tasks.probabilities(logits) if tasks is not None else logits.softmax(1)


def prepare_images(images: Any, size: int) -> torch.Tensor:
    """PIL image(s) or an image tensor -> ``(N, 3, size, size)`` as the data loader makes training images.

    PIL images go through the data layer's :func:`~tl_lab.data.imagefiles.fit_square` (RGB, short side to ``size``,
    centre crop, uint8), the function that turns a learner's files into samples; tensors of another size are
    resized and cropped the same way with ``torchvision.transforms.v2``; tensors already ``size`` px pass as they are.
    """
    if torch.is_tensor(images):
        x = images[None] if images.dim() == 3 else images
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"image tensors must be (N, 3, H, W) or (3, H, W); got {tuple(images.shape)}")
        if tuple(x.shape[-2:]) != (size, size):
            from torchvision.transforms import v2

            x = v2.functional.center_crop(v2.functional.resize(x, size, antialias=True), [size, size])
        return x
    from tl_lab.data.imagefiles import fit_square

    pictures = [images] if hasattr(images, "convert") else list(images)  # one PIL image, or several
    if not pictures:
        raise ValueError("no images to predict: pass a PIL image, a list of them, or an image tensor")
    return torch.stack([torch.from_numpy(fit_square(p, size)).permute(2, 0, 1) for p in pictures])


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and value == value and abs(value) != float("inf")


def _fmt(value: Any) -> str:
    return f"{value:.3f}" if _finite(value) else "n/a"


def data_config(data: DatasetSplits) -> dict:
    """The arguments that reload ``data`` with ``load_dataset(**cfg)`` (then ``.with_target(cfg.pop("relabel"))``
    when present)."""
    meta = data.meta
    cfg = dict(meta.get("load_args") or {})
    cfg.setdefault("name", data.name)
    cfg.setdefault("shots", meta.get("shots"))
    cfg.setdefault("seed", meta.get("seed", 0))
    cfg.setdefault("image_size", data.image_size)
    if meta.get("relabel"):  # DatasetSplits.with_target after loading: same splits, another label set
        cfg["relabel"] = meta["relabel"]
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in cfg.items()}


def start_run(backbone: Backbone, data: DatasetSplits, plan: "FreezePlan", layout: "FreezeSummary", s: "FitSettings",
             amp: bool, *, notes: list[str], name: str | None, run_dir: str | Path | None,
             resume: str | Path | None, writes: bool) -> Run:
    """The Run with its config (everything needed to repeat it) and its folder, created when it writes files."""
    config = {
        "backbone": backbone.name,
        "pretrained": bool(backbone.meta.get("pretrained", True)),
        "num_classes": len(data.classes),
        "plan": plan.to_dict(),
        "plan_label": plan.describe(),
        "data": data_config(data),
        **s.to_config(),
        "amp": amp,
        "versions": _versions(),
    }
    folder = None
    if name is None:
        name = f"{datetime.now():%Y%m%d-%H%M%S}-{backbone.name}-{_slug(plan.describe())}"
        if writes and resume is None and run_dir is None:  # two runs started in the same second get two folders
            name, folder = _fresh_folder(Path("tl_lab_runs"), name)
    if writes and folder is None:
        folder = Path(resume) if resume is not None else Path(run_dir or Path("tl_lab_runs") / name)
        folder.mkdir(parents=True, exist_ok=True)
    return Run(name=name, backbone=backbone, data=data, config=config, run_dir=folder, notes=notes,
               trainable_parameters=layout.trainable)


def _fresh_folder(parent: Path, name: str) -> tuple[str, Path]:
    """``parent/name``, or ``name-2``, ``name-3`` ... when another run (a second widget, a parallel process) made it
    first; created here, so no two runs ever write into one folder."""
    parent.mkdir(parents=True, exist_ok=True)
    for n in range(1, 1000):
        candidate = name if n == 1 else f"{name}-{n}"
        try:
            (parent / candidate).mkdir()
        except FileExistsError:
            continue
        return candidate, parent / candidate
    raise RuntimeError(f"{parent}: 999 runs named {name!r} already; choose a name with fit(name=...)")


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")[:40]


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    import torchvision

    try:
        tl = version("tl-lab")
    except PackageNotFoundError:  # pragma: no cover
        tl = "dev"
    return {"python": platform.python_version(), "torch": torch.__version__, "torchvision": torchvision.__version__,
            "tl_lab": tl}
