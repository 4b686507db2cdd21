"""The one training loop: fast on a CPU (cached frozen prefix), mixed precision on a GPU, stoppable, resumable.

Read :func:`fit` top to bottom; its steps are named functions in this file, in this order:

1. **prepare**: check the arguments (:class:`~tl_lab.training.settings.FitSettings`, one message per argument),
   decide once what trains (``plan.summary(backbone)``: stages, LR factors, BatchNorm modes) and whether the frozen
   prefix can be cached (:func:`~tl_lab.training.feature_cache.cache_plan`), pick the device, make the :class:`Run`.
2. **inputs**: :class:`~tl_lab.training.feed.Feed`, the one place the feature cache is built and used; the
   forgetting remedies (:class:`~tl_lab.training.retention.Retention`), built from the pretrained weights.
3. **optimizer and schedule**: :func:`~tl_lab.training.schedule.build_optimizer` and
   :func:`~tl_lab.training.schedule.build_scheduler` (``torch.optim.lr_scheduler``, stepped every batch); resume.
4. **train**: per epoch, :func:`train_one_epoch` (each batch: :func:`batch_loss`, :func:`optimizer_step`, the stop
   check), :func:`evaluate` on the validation split, :func:`keep_if_best` (where the best checkpoint is chosen),
   ``last.safetensors`` and ``run.json``, then the ``EpochEnd`` event.
5. **finish**: :func:`finish` restores the kept checkpoint and measures its test accuracy (after a Stop too).

Faults end the run cleanly with a typed :class:`~tl_lab.training.events.StopCause` and a reason for people: a
stop request, Ctrl-C, a non-finite loss (with a learning rate to try instead). A CUDA out-of-memory error retries
the epoch with half the batch size. Listeners receive ``FitStart``, ``BatchEnd``, ``EpochEnd``, ``Stopped`` and
``FitEnd`` events and never change the loop.

Example::

    >>> import tl_lab
    >>> data = tl_lab.load_dataset("digits", shots=10)
    >>> run = tl_lab.fit("efficientnet_lite0", data, plan=tl_lab.FreezePlan("head"), epochs=30, progress=False)
    >>> run.best["test_acc"]        # about 0.83 (raw pixels: about 0.90 - digits are far from ImageNet)

Defaults are the recipe measured to work on few-shot data (AdamW, one-cycle schedule, head LR 3e-3); for full
fine-tuning use ``FreezePlan.fine_tune()``, which trains the body at a tenth of the head's rate with BatchNorm
statistics fixed (the same run at 10x those rates diverged to chance in our measurements).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any, Literal, Sequence

import torch
import torch.nn.functional as F
from torch.utils.data import DistributedSampler

from tl_lab.backbones.registry import Backbone, load_backbone
from tl_lab.data.datasets import DatasetSplits
from tl_lab.training.augment import BatchAugment
from tl_lab.training.checkpoints import Keeper, resume_into
from tl_lab.training.device import (
    all_reduce_sums,
    dist_info,
    distributed,
    pick_device,
    rank_device,
)
from tl_lab.training.domain_confusion import DomainConfusion
from tl_lab.training.events import (
    BatchEnd,
    Callback,
    EpochEnd,
    FitEnd,
    FitStart,
    StopCause,
    Stopped,
    StopToken,
    stop_requested,
)
from tl_lab.training.feature_cache import cache_plan
from tl_lab.training.feed import Feed, Precision
from tl_lab.training.freeze import FreezePlan
from tl_lab.training.multitask import Tasks
from tl_lab.training.retention import Retain, Retention
from tl_lab.training.run import Run, data_config, start_run
from tl_lab.training.schedule import build_optimizer, build_scheduler
from tl_lab.training.settings import (
    DEFAULT_LR,
    FitSettings,
    OptimizerName,
    Schedule,
    check_data,
    check_switches,
    suggest_lr,
)

__all__ = ["fit", "train_one_epoch", "evaluate", "batch_loss", "keep_if_best", "data_config"]


def fit(
    backbone: Backbone | str,
    data: DatasetSplits,
    *,
    plan: FreezePlan | None = None,
    epochs: int | None = None,
    lr: float = DEFAULT_LR,
    batch_size: int = 16,
    weight_decay: float = 0.01,
    optimizer: OptimizerName = "adamw",
    momentum: float = 0.9,
    schedule: Schedule = "onecycle",
    step_size: int = 7,
    gamma: float = 0.1,
    augment: bool = False,
    label_smoothing: float = 0.0,
    callbacks: Sequence[Callback] = (),
    stop: StopToken | Any | None = None,
    device: str | torch.device = "auto",
    amp: bool | Literal["auto"] = "auto",
    cache: bool | Literal["auto"] = "auto",
    memory_cap_mb: float = 1024.0,
    cache_dir: str | Path | None = None,
    seed: int = 0,
    run_dir: str | Path | None = None,
    save_checkpoints: bool = True,
    resume: str | Path | None = None,
    progress: bool = True,
    name: str | None = None,
    min_batch_size: int = 2,
    pretrained: bool = True,
    retain: Sequence[Retain | str] | Retain | str | None = None,  # forgetting remedies (retention.py)
    adapt_to: Any = None,  # domain confusion (DANN): unlabelled target images (domain_confusion.py)
    tasks: Sequence[str] | dict[str, float] | None = None,  # multi-task heads on one body (multitask.py)
) -> Run:
    """Train ``backbone`` (a Backbone, trained in place, or a registered name) on ``data`` under ``plan``.

    Args:
        plan: what trains (default: only the head, ``FreezePlan("head")``).
        epochs, lr, batch_size, weight_decay, optimizer, schedule: the recipe; ``lr`` is the head's rate and
            ``plan.lr_mult`` scales it per stage. ``epochs=None``: 100 when only the head trains on cached features
            (each epoch then costs milliseconds; measured on 10-shot digits: 0.816 vs 0.796 at 30), else 30.
            ``schedule="step"`` decays by ``gamma`` every ``step_size`` epochs.
        augment: random flips and shifts of each training batch (turns the feature cache off).
        callbacks: callables receiving :mod:`tl_lab.training.events` events. ``stop``: a StopToken / threading.Event.
        device: "auto" picks cuda, then mps, then cpu. ``amp``: mixed precision ("auto": on CUDA only).
        cache: cache the frozen prefix's outputs ("auto": whenever the inputs are deterministic).
        run_dir: where checkpoints and run.json go (default ``tl_lab_runs/<name>``). ``resume``: a run_dir to
            continue from its last checkpoint, with the same settings.
        pretrained: used only when ``backbone`` is a name (False gives the from-scratch baseline).
        retain: forgetting remedies added to the loss (:mod:`tl_lab.training.retention`): ``"lwf"``, ``"ewc"``,
            ``"l2sp"`` or :class:`~tl_lab.training.retention.Retain` objects with a strength.
        adapt_to: unlabelled target-domain images (``ImageSplit`` or uint8 ``(N, 3, H, W)``, labels ignored) for
            domain confusion (DANN, :mod:`tl_lab.training.domain_confusion`): a domain classifier on the last body
            stage behind a gradient-reversal layer; ``train_loss`` then includes its loss and each history row adds
            ``domain_acc``, ``domain_loss`` and ``dann_lambda``. Turns the feature cache off; the body must train.
        tasks: multi-task learning (:mod:`tl_lab.training.multitask`): two or more label sets of ``data`` (e.g.
            ``("shape", "position")`` of ``load_dataset("shapes")``), or ``{name: loss weight}``. The head's last
            layer becomes one linear classifier per task on the shared body; the loss is the weighted sum of the
            tasks' cross-entropies; history rows add ``train_acc_<task>`` and ``val_acc_<task>``, ``run.best``
            adds ``val_acc_<task>`` and ``test_acc_<task>``, and ``val_acc`` / ``test_acc`` are the tasks' mean.
    Returns:
        A :class:`~tl_lab.training.run.Run`; its model holds the kept weights (best validation accuracy) and
        ``run.best["test_acc"]`` their test accuracy, also when the run was stopped.
    """
    t_start = time.perf_counter()
    s = FitSettings(epochs=epochs, lr=lr, batch_size=batch_size, weight_decay=weight_decay, optimizer=optimizer,
                    momentum=momentum, schedule=schedule, step_size=step_size, gamma=gamma, augment=augment,
                    label_smoothing=label_smoothing, seed=seed)
    check_switches(cache=cache, amp=amp, memory_cap_mb=memory_cap_mb, min_batch_size=min_batch_size)
    plan = plan if plan is not None else FreezePlan.frozen_head()
    if isinstance(backbone, str):
        backbone = load_backbone(backbone, pretrained=pretrained, num_classes=len(data.classes), seed=seed)
    check_data(backbone, data)
    multitask = None  # one head per task on the shared body: installed before the plan counts what trains
    if tasks is not None:
        if retain is not None or adapt_to is not None:
            raise ValueError("tasks= (multi-task heads) cannot be combined with retain= or adapt_to= in one run; "
                             "run them separately")
        multitask = Tasks.build(tasks, data)
        multitask.install(backbone, seed=s.seed)

    # ---- 1. prepare: what trains (decided once), the cache decision, automatic settings, device, the Run -------
    layout = plan.summary(backbone)
    if not layout.trainable_stages:
        raise ValueError("this plan leaves nothing to train; choose trainable_from='head' or an earlier stage")
    if adapt_to is not None:  # domain confusion reads the last body stage during every batch's full forward pass
        cache_after, cache_why = None, "off: domain confusion (adapt_to) runs the whole network every batch"
    else:
        cache_after, cache_why = cache_plan(layout, augment=s.augment) if cache is not False else (None, "off: cache=False")
    s, notes = s.resolved(head_on_cached_features=cache_after is not None and layout.trainable_stages == (backbone.head,),
                          train_images=len(data.train))
    rank, world = dist_info()
    dev = pick_device(rank_device(device, rank, world))
    precision = Precision.choose(dev, amp)
    torch.manual_seed(s.seed)
    model = backbone.model.to(dev)
    model.to(memory_format=torch.channels_last)  # faster convolutions on CUDA and on CPU (oneDNN) alike
    groups = layout.apply(model, lr=s.lr)
    run = start_run(backbone, data, plan, layout, s, precision.enabled, notes=notes, name=name, run_dir=run_dir,
                    resume=resume, writes=save_checkpoints and rank == 0)  # under torchrun only rank 0 writes files
    keeper = Keeper(model, changing=layout.changing_stages, full=not run.config["pretrained"], run_dir=run.run_dir)
    if multitask is not None:
        run.tasks, run.config["tasks"] = multitask, multitask.to_config()

    confusion = None  # domain confusion (DANN): a domain classifier trained through a gradient-reversal layer
    if adapt_to is not None:
        if world > 1:
            raise ValueError("adapt_to (domain confusion) runs in one process only; call fit without torchrun")
        confusion = DomainConfusion(backbone, adapt_to, seed=s.seed, device=dev)
        confusion.check_plan(layout.trainable_stages, int(data.train.images.shape[-1]))
        groups = [*groups, confusion.param_group(s.lr)]
        run.config["adapt_to"] = {"images": len(confusion.images), "stage": confusion.stage}

    # ---- 2. inputs: the cached frozen prefix when there is one (the only place the cache is used) --------------
    feed = Feed(backbone, data, cache_after=cache_after, why=cache_why, device=dev, precision=precision,
                augment=BatchAugment(data.image_size, seed=s.seed) if s.augment else None,
                memory_cap_mb=memory_cap_mb, cache_dir=cache_dir, tasks=multitask)
    run.cache = feed.description
    run.notes.extend(feed.notes)
    module = distributed(feed.suffix, dev) if world > 1 else feed.suffix
    # forgetting remedies (None unless retain= is given): built here, from the pretrained weights, before a resume
    # loads the stopped ones (their anchors, teacher and Fisher must be the original network's)
    retention = Retention.build(retain, backbone, layout, feed)
    if retention is not None:
        run.config["retain"] = [r.label() for r in retention.remedies]

    # ---- 3. optimizer and schedule (and where a resumed run left off) ------------------------------------------
    opt = build_optimizer(s.optimizer, groups, lr=s.lr, weight_decay=s.weight_decay, momentum=s.momentum)
    start_epoch = resume_into(run, opt, keeper, Path(resume)) if resume is not None else 0
    sampler = DistributedSampler(range(len(data.train)), num_replicas=world, rank=rank, shuffle=True, seed=s.seed)
    batching = _Batching(sampler, s.batch_size)
    schedule_at = partial(build_scheduler, opt, s.schedule, lr=s.lr, epochs=s.epochs, step_size=s.step_size,
                          gamma=s.gamma)  # positioned at an epoch's first batch: a new run, a resume, an OOM retry
    sched = schedule_at(steps_per_epoch=batching.batches, start_step=start_epoch * batching.batches)
    if rank != 0:
        callbacks, progress = (), False  # rank 0 reports for everyone

    # ---- 4. train, epoch by epoch ------------------------------------------------------------------------------
    _emit(callbacks, FitStart(run.name, s.epochs, start_epoch, batching.batches, run.config, run.cache))
    bar = _progress(progress, s.epochs * batching.batches, start_epoch * batching.batches)
    at = _Position(start_epoch)
    stopped: Stopped | None = None
    model.train()
    try:
        while at.epoch < s.epochs:
            snapshot = keeper.state() if dev.type == "cuda" else None  # an out-of-memory retry restarts from here
            t_epoch = time.perf_counter()
            try:
                stats = train_one_epoch(module, opt, sched, feed, batching, at, precision=precision,
                                        label_smoothing=s.label_smoothing, callbacks=callbacks, stop=stop, bar=bar,
                                        epochs=s.epochs, retention=retention, confusion=confusion, tasks=multitask)
            except torch.cuda.OutOfMemoryError:
                batching = _halve_batch(run, batching, at.epoch, min_batch_size, model, snapshot, opt)
                sched = schedule_at(steps_per_epoch=batching.batches, start_step=at.epoch * batching.batches)
                continue
            if world > 1:
                stats = all_reduce_sums(stats, dev)
            val = evaluate(feed, "val")
            metrics = _epoch_metrics(at.epoch, stats, val, seconds=time.perf_counter() - t_epoch)
            if confusion is not None:
                metrics.update(confusion.epoch_metrics())  # the domain classifier's accuracy: towards 0.5 = confused
            run.history.append(metrics)
            is_best = keep_if_best(run, keeper, metrics)
            at.epoch += 1
            run.last_checkpoint = keeper.save_last(opt, {"epoch": at.epoch}) or run.last_checkpoint
            run.save_json()
            _emit(callbacks, EpochEnd(at.epoch - 1, s.epochs, metrics, is_best))
            if bar is not None:
                bar.set_postfix(train_loss=f"{metrics['train_loss']:.3f}", val_acc=f"{metrics['val_acc']:.3f}")
    except _Stop as exc:
        reason = exc.reason
        if exc.cause is StopCause.NON_FINITE_LOSS:
            reason += f"; lower the learning rate (e.g. lr={suggest_lr(s.lr):g}) and try again"
        stopped = Stopped(reason, at.epoch, at.batch, exc.cause)
    except KeyboardInterrupt:
        stopped = Stopped("interrupted (KeyboardInterrupt)", at.epoch, at.batch, StopCause.INTERRUPTED)
    finally:
        if bar is not None:
            bar.close()
        if retention is not None:
            retention.close()
        if confusion is not None:
            confusion.close()
    if stopped is not None:
        run.stopped_early, run.stop_reason, run.stop_cause = True, stopped.reason, stopped.cause
        _emit(callbacks, stopped)

    # ---- 5. finish: the kept checkpoint's test accuracy, timings, FitEnd ---------------------------------------
    finish(run, feed, keeper, at, batching.batches, stopped)
    run.timings = {"cache_s": feed.cache_seconds, "train_s": sum(h["seconds"] for h in run.history),
                   "total_s": time.perf_counter() - t_start, "device": str(dev), "amp": precision.enabled}
    run.save_json()
    model.eval()
    _emit(callbacks, FitEnd(run))
    return run


# ---- the steps ---------------------------------------------------------------------------------------------------


def batch_loss(logits: torch.Tensor, labels: torch.Tensor, *, label_smoothing: float = 0.0,
               retention: Retention | None = None, inputs: torch.Tensor | None = None,
               confusion: DomainConfusion | None = None, progress: float = 0.0,
               tasks: Tasks | None = None) -> torch.Tensor:
    """The loss one batch trains on: cross-entropy (with optional label smoothing; with ``tasks``, the weighted sum
    of each task's), plus the forgetting remedies' terms and the domain-confusion loss when the run uses them
    (``progress`` in [0, 1] sets DANN's lambda).

    The one place to add loss terms (a domain-confusion or retention penalty): everything else in the loop treats
    the returned scalar as the batch's loss.
    """
    if tasks is not None:  # multi-task: one head per task, labels (N, tasks)
        loss = tasks.loss(logits, labels, label_smoothing=label_smoothing)
    else:
        loss = F.cross_entropy(logits, labels, label_smoothing=label_smoothing)
    if retention is not None:  # forgetting remedies (LwF, EWC, L2-SP): tl_lab.training.retention
        loss = loss + retention(inputs)
    if confusion is not None:  # domain confusion (DANN): the domain loss behind the gradient reversal
        loss = loss + confusion.loss(progress)
    return loss


def optimizer_step(opt: torch.optim.Optimizer, sched: torch.optim.lr_scheduler.LRScheduler, loss: torch.Tensor,
                   scaler: torch.amp.GradScaler | None = None) -> None:
    """Backpropagate ``loss``, update the weights, advance the learning-rate schedule by one batch."""
    opt.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
    else:
        loss.backward()
        opt.step()
    sched.step()


def train_one_epoch(module: torch.nn.Module, opt: torch.optim.Optimizer, sched: torch.optim.lr_scheduler.LRScheduler,
                    feed: Feed, batching: _Batching, at: _Position, *, precision: Precision, label_smoothing: float,
                    callbacks: Sequence[Callback], stop: Any, bar: Any, epochs: int,
                    retention: Retention | None = None, confusion: DomainConfusion | None = None,
                    tasks: Tasks | None = None) -> dict:
    """One pass over the training images in this epoch's seeded order; returns sums for the epoch's metrics.

    Raises :class:`_Stop` after the batch in which a stop was requested, or at a non-finite loss.
    """
    order = batching.order(at.epoch)
    t0 = time.perf_counter()
    loss_sum, correct, seen = 0.0, 0, 0
    per_task = dict.fromkeys(tasks.names, 0) if tasks is not None else None  # correct counts per task
    lrs: dict[str, float] = {}
    for b in range(batching.batches):
        at.batch = b
        idx = order[b * batching.local : (b + 1) * batching.local]
        x = feed.inputs("train", idx, step=at.epoch * batching.batches + b)
        y = feed.labels("train", idx)
        with precision.context():
            logits = module(x).float()
        loss = batch_loss(logits, y, label_smoothing=label_smoothing, retention=retention, inputs=x,
                          confusion=confusion, progress=(at.epoch + b / batching.batches) / epochs, tasks=tasks)
        if not torch.isfinite(loss):
            raise _Stop(StopCause.NON_FINITE_LOSS, f"the loss became {loss.item()} at epoch {at.epoch + 1}, batch {b + 1}")
        lrs = {g["stage"]: g["lr"] for g in opt.param_groups}  # the rates this batch trains with
        head_lr = opt.param_groups[-1]["lr"]
        optimizer_step(opt, sched, loss, precision.scaler)
        n = len(idx)
        if per_task is not None:  # multi-task: the mean over tasks of the correct counts
            counts = tasks.correct(logits, y)
            for name, c in counts.items():
                per_task[name] += c
            batch_correct = sum(counts.values()) / len(counts)
        else:
            batch_correct = (logits.argmax(1) == y).sum().item()
        loss_sum, correct, seen = loss_sum + loss.item() * n, correct + batch_correct, seen + n
        _emit(callbacks, BatchEnd(at.epoch, b, batching.batches, loss.item(), batch_correct / n, seen, head_lr))
        if bar is not None:
            bar.set_description(f"epoch {at.epoch + 1}/{epochs}", refresh=False)
            bar.update(1)
        if stop_requested(stop):
            raise _Stop(StopCause.REQUESTED, getattr(stop, "reason", "stop requested"))
    stats = {"loss_sum": loss_sum, "correct": correct, "seen": seen, "seconds": time.perf_counter() - t0, "lr": lrs}
    if per_task is not None:
        stats["per_task"] = per_task
    return stats


def evaluate(feed: Feed, split: str) -> dict:
    """Loss and accuracy on ``split`` ("val" or "test") in eval mode: ``{"loss", "acc", "n"}``."""
    return feed.evaluate(split)


def keep_if_best(run: Run, keeper: Keeper, metrics: dict) -> bool:
    """Where the best checkpoint is chosen: the highest validation accuracy, ties to the lower validation loss.

    Without a validation split, training accuracy and loss decide. An epoch whose loss is not finite (weights
    blown up by too high a learning rate) is never kept.
    """
    acc, loss = metrics["val_acc"], metrics["val_loss"]
    if math.isnan(acc):  # no validation split
        acc, loss = metrics["train_acc"], metrics["train_loss"]
    b = run.best
    if not math.isfinite(loss) or (b and (acc < b["val_acc"] or (acc == b["val_acc"] and loss >= b["val_loss"]))):
        return False
    run.best = {"epoch": metrics["epoch"], "val_acc": acc, "val_loss": loss, "train_acc": metrics["train_acc"],
                **{k: v for k, v in metrics.items() if k.startswith("val_acc_")}}  # multi-task: per task
    run.checkpoint = keeper.keep_best({"epoch": metrics["epoch"], "metrics": _plain(metrics)})
    return True


def finish(run: Run, feed: Feed, keeper: Keeper, at: _Position, batches: int, stopped: Stopped | None) -> None:
    """Put the kept weights back in the model and measure them on the test split (after a Stop too).

    Stopped inside the first epoch (no epoch finished): what was learned so far becomes the kept checkpoint,
    marked ``partial``. After a non-finite loss nothing unfinished is kept: those weights are unusable.
    """
    if stopped is not None and stopped.cause is not StopCause.NON_FINITE_LOSS and not run.best:
        val = evaluate(feed, "val")
        partial = {"epoch": at.epoch + (at.batch + 1) / batches, "val_acc": val["acc"], "val_loss": val["loss"],
                   "partial": True}
        run.best = partial
        run.checkpoint = keeper.keep_best({"epoch": partial["epoch"], "partial": True})
    if keeper.restore_best():
        test = evaluate(feed, "test")
        run.best.update(test_acc=test["acc"], test_loss=test["loss"])
        run.best.update({f"test_{k}": v for k, v in test.items() if k.startswith("acc_")})  # multi-task
    elif stopped is not None:
        run.notes.append("no epoch ended with a finite loss, so no weights were kept and none were tested")


# ---- small pieces -------------------------------------------------------------------------------------------------


class _Stop(Exception):
    def __init__(self, cause: StopCause, reason: str) -> None:
        super().__init__(reason)
        self.cause, self.reason = cause, reason


@dataclass
class _Position:
    """Where the loop is (0-based), for the Stopped event and a partial first epoch."""

    epoch: int
    batch: int = 0


@dataclass(frozen=True)
class _Batching:
    """How an epoch is cut into batches: one seeded permutation per epoch, split evenly across ranks."""

    sampler: DistributedSampler
    size: int  # the global batch size

    @property
    def local(self) -> int:  # this rank's share of a batch
        return max(1, self.size // self.sampler.num_replicas)

    @property
    def batches(self) -> int:
        return math.ceil(self.sampler.num_samples / self.local)

    def order(self, epoch: int) -> torch.Tensor:
        self.sampler.set_epoch(epoch)
        return torch.tensor(list(self.sampler))


def _halve_batch(run: Run, batching: _Batching, epoch: int, min_batch_size: int, model: torch.nn.Module,
                 snapshot: dict | None, opt: torch.optim.Optimizer) -> _Batching:
    """After CUDA ran out of memory: restore the epoch's starting weights and retry it with half the batch."""
    size = batching.size // 2
    if size < min_batch_size:
        raise RuntimeError(
            f"out of GPU memory even at batch size {batching.size}; free GPU memory (restart other "
            f"kernels), use a smaller backbone or image_size, or device='cpu'"
        ) from None
    if snapshot is not None:
        model.load_state_dict(snapshot, strict=False)
    opt.state.clear()
    run.notes.append(f"CUDA ran out of memory in epoch {epoch + 1}; retried it with batch size {size}")
    run.config["batch_size"] = size
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return replace(batching, size=size)


def _epoch_metrics(epoch: int, stats: dict, val: dict, *, seconds: float) -> dict:
    seen = stats["seen"]
    metrics = {
        "epoch": epoch + 1,
        "train_loss": stats["loss_sum"] / seen, "train_acc": stats["correct"] / seen,
        "val_loss": val["loss"], "val_acc": val["acc"],
        "seconds": seconds, "images_per_s": seen / max(stats["seconds"], 1e-9),
        "lr": stats["lr"],
    }
    for name, c in stats.get("per_task", {}).items():  # multi-task: each task's accuracies
        metrics[f"train_acc_{name}"] = c / seen
        metrics[f"val_acc_{name}"] = val.get(f"acc_{name}", float("nan"))
    return metrics


def _emit(callbacks: Sequence[Callback], event: Any) -> None:
    for cb in callbacks:
        cb(event)


def _plain(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float))}


def _progress(enabled: bool, total_batches: int, start: int):
    """One bar over all batches, described by the current epoch (``epoch 3/30``)."""
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total_batches, initial=start, desc="epoch", unit="batch")
