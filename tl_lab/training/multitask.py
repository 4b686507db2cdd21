"""Multi-task learning: one shared body, one head per task, trained on the weighted sum of the tasks' losses.

Caruana (1997, "Multitask Learning", Machine Learning 28) showed that a body shared by related tasks can learn
each of them better than separate networks do: each task's labels act as extra training signal (an inductive bias)
for the features the others use. Standley et al. (2020, "Which Tasks Should Be Learned Together in Multi-task
Learning?", ICML) measured the opposite too: tasks that compete for the body's capacity can each end up worse
than alone. Which happens on *your* data is a measurement, which :func:`tl_lab.experiments.multitask` makes.

Here a dataset with several label sets on the same images (``load_dataset("shapes")``: shape, position, colour)
trains with ``fit(backbone, data, tasks=("shape", "position"))``. :meth:`Tasks.install` swaps the head's last
linear layer for :class:`TaskHeads` (one ``nn.Linear`` per task on the same pooled features); the model then
outputs every task's logits side by side, so the loop, the feature cache and checkpoints run unchanged. The loss is
``sum_t w_t * CE_t`` (weights default to 1), accuracy is reported per task (``val_acc_<task>``, ``test_acc_<task>``)
and ``val_acc`` (which picks the kept checkpoint) is their mean.

With only the heads training the tasks cannot share anything (each head sees fixed features and its own loss):
sharing starts where body stages train.

Example::

    >>> import tl_lab
    >>> data = tl_lab.load_dataset("shapes", shots=10)
    >>> run = tl_lab.fit("efficientnet_lite0", data, tasks=("shape", "position"),  # doctest: +SKIP
    ...                  plan=tl_lab.FreezePlan("stage6"), progress=False)
    >>> run.best["test_acc_shape"], run.best["test_acc_position"]    # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from tl_lab.backbones.registry import Backbone
from tl_lab.data.datasets import DatasetSplits, ImageSplit, check_target

__all__ = ["TaskHeads", "Tasks"]


class TaskHeads(nn.Module):
    """One linear classifier per task on the same features; the output is their logits side by side."""

    def __init__(self, in_features: int, sizes: Mapping[str, int]) -> None:
        super().__init__()
        self.heads = nn.ModuleDict({name: nn.Linear(in_features, n) for name, n in sizes.items()})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([head(x) for head in self.heads.values()], dim=1)


@dataclass(frozen=True)
class Tasks:
    """The tasks of a multi-task run: their names (in output order), class names and loss weights."""

    names: tuple[str, ...]
    classes: dict[str, tuple[str, ...]]
    weights: dict[str, float]

    @classmethod
    def build(cls, tasks: Sequence[str] | Mapping[str, float], data: DatasetSplits) -> Tasks:
        """Check ``tasks`` (names, or ``{name: weight}``) against the label sets of ``data``."""
        if isinstance(tasks, str):
            raise ValueError(f"tasks must name two or more label sets, e.g. tasks=({tasks!r}, 'position'); "
                             f"for one task leave tasks out and load the data with target={tasks!r}")
        weights = dict(tasks) if isinstance(tasks, Mapping) else {name: 1.0 for name in tasks}
        names = tuple(weights)
        if len(names) < 2 or len(set(names)) != len(names):
            raise ValueError(f"tasks must name two or more different label sets; got {list(names)}"
                             + (f" (the data's label sets: {', '.join(data.targets)})" if data.targets else ""))
        for name in names:
            check_target(data, name)
        for name, w in weights.items():
            if isinstance(w, bool) or not isinstance(w, (int, float)) or not w >= 0:
                raise ValueError(f"the weight of task {name!r} must be a number >= 0; got {w!r}")
        if not any(weights.values()):
            raise ValueError("at least one task weight must be above 0")
        return cls(names, {n: tuple(data.targets[n]) for n in names}, {n: float(w) for n, w in weights.items()})

    def to_config(self) -> dict:
        return {n: {"weight": self.weights[n], "classes": list(self.classes[n])} for n in self.names}

    # ---- the model -----------------------------------------------------------------------------------------------

    def install(self, backbone: Backbone, *, seed: int = 0) -> TaskHeads:
        """Swap the last ``nn.Linear`` of ``backbone``'s head for :class:`TaskHeads` (seeded); returns it."""
        head = backbone.model.get_submodule(backbone.head)
        last_name = [name for name, m in head.named_modules() if isinstance(m, nn.Linear)][-1]
        last = head.get_submodule(last_name)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            heads = TaskHeads(last.in_features, {n: len(self.classes[n]) for n in self.names}).to(last.weight.device)
        parent_name, _, attr = last_name.rpartition(".")
        setattr(head.get_submodule(parent_name) if parent_name else head, attr, heads)
        return heads

    @property
    def slices(self) -> dict[str, slice]:
        out, start = {}, 0
        for name in self.names:
            out[name] = slice(start, start + len(self.classes[name]))
            start += len(self.classes[name])
        return out

    # ---- labels, loss, accuracy -------------------------------------------------------------------------------------

    def labels(self, split: ImageSplit, index: torch.Tensor | slice = slice(None)) -> torch.Tensor:
        """``(N, tasks)`` labels of rows ``index`` of ``split``, one column per task."""
        return torch.stack([split.targets[name][index] for name in self.names], dim=1)

    def per_task(self, logits: torch.Tensor, labels: torch.Tensor, *, label_smoothing: float = 0.0,
                 reduction: str = "mean") -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """``{task: (cross-entropy, correct count)}`` of a batch of side-by-side logits and ``(N, tasks)`` labels."""
        out = {}
        for k, (name, cols) in enumerate(self.slices.items()):
            z, y = logits[:, cols], labels[:, k]
            out[name] = (F.cross_entropy(z, y, label_smoothing=label_smoothing, reduction=reduction),
                         (z.argmax(1) == y).sum())
        return out

    def loss(self, logits: torch.Tensor, labels: torch.Tensor, *, label_smoothing: float = 0.0) -> torch.Tensor:
        """The training objective: ``sum_t w_t * mean cross-entropy of task t``."""
        terms = self.per_task(logits, labels, label_smoothing=label_smoothing)
        return sum(self.weights[name] * ce for name, (ce, _) in terms.items())

    def correct(self, logits: torch.Tensor, labels: torch.Tensor) -> dict[str, int]:
        """Correct predictions per task in a batch (no loss: the training step has computed it already)."""
        return {name: int((logits[:, cols].argmax(1) == labels[:, k]).sum())
                for k, (name, cols) in enumerate(self.slices.items())}

    def evaluate_batches(self, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> dict:
        """Like :func:`tl_lab.training.run.evaluate_batches`, per task: ``{"loss", "acc", "n", "acc_<task>",
        "loss_<task>"}`` where ``loss`` is the weighted objective and ``acc`` the mean of the tasks' accuracies."""
        sums = {name: [0.0, 0] for name in self.names}
        n = 0
        for logits, y in batches:
            for name, (ce, c) in self.per_task(logits.float(), y, reduction="sum").items():
                sums[name][0] += ce.item()
                sums[name][1] += int(c)
            n += len(y)
        out: dict = {"n": n}
        for name, (ce, c) in sums.items():
            out[f"loss_{name}"], out[f"acc_{name}"] = ce / max(n, 1), c / max(n, 1)
        out["loss"] = sum(self.weights[name] * out[f"loss_{name}"] for name in self.names)
        out["acc"] = sum(out[f"acc_{name}"] for name in self.names) / len(self.names)
        return out

    def probabilities(self, logits: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{task: (N, classes) softmax}`` of side-by-side logits."""
        return {name: logits[:, cols].float().softmax(1) for name, cols in self.slices.items()}
