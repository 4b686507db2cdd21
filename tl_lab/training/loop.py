"""The one training loop: fast on a CPU (cached frozen prefix), mixed precision on a GPU, stoppable, resumable.

Read :func:`fit` top to bottom; its steps are named functions in this file, in this order:

1. **prepare**: check the arguments (:class:`~tl_lab.training.settings.FitSettings`, one message per argument),
   decide once what trains (``plan.summary(backbone)``: stages, LR factors, BatchNorm modes) and whether the frozen
   prefix can be cached (:func:`~tl_lab.training.feature_cache.cache_plan`), pick the device, make the :class:`Run`.
2. **inputs**: :class:`~tl_lab.training.feed.Feed`, the one place the feature cache is built and used; the loss
   terms set up (:meth:`~tl_lab.training.terms.LossTerm.setup`: the forgetting remedies' anchors and teacher from
   the pretrained weights, domain confusion's classifier) and the stage outputs they read tapped once per batch
   (:class:`~tl_lab.training.terms.Taps`).
3. **optimizer and schedule**: :func:`~tl_lab.training.schedule.build_optimizer` (the plan's groups plus the terms'
   own) and :func:`~tl_lab.training.schedule.build_scheduler` (``torch.optim.lr_scheduler``, stepped every batch);
   resume.
4. **train**: per epoch, :func:`train_one_epoch` (each batch: :func:`batch_loss`, :func:`optimizer_step`, the stop
   check), :func:`evaluate` on the validation split, :func:`keep_if_best` (where the kept checkpoint is chosen:
   best validation accuracy, or the last epoch when a term asks), ``last.safetensors`` and ``run.json``, then the
   ``EpochEnd`` event.
5. **finish**: :func:`finish` restores the kept checkpoint and measures its test accuracy (after a Stop too).

**One objective, a list of terms.** The loss of a batch is :func:`batch_loss`: the objective (cross-entropy, or the
multi-task heads' weighted sum: :class:`~tl_lab.training.terms.Objective`) plus the sum of the terms
(:class:`~tl_lab.training.terms.LossTerm`). ``fit`` translates its learner keywords once (``retain=`` -> LwF / EWC /
L2-SP terms, ``adapt_to=`` -> a domain-confusion term, ``tasks=`` -> the multi-task objective) and takes any other
term through ``terms=[...]``; nothing in this file names a feature, so a new regulariser never edits it. Each
term's ``config()`` is recorded once (:func:`~tl_lab.training.terms.record_terms`): run.json, the resume check and
``tl-lab train`` read it from there. History rows hold ``train_loss`` (the total), ``train_task_loss`` (the
objective alone) and ``term_<name>`` per term, plus what terms add (``domain_acc`` ...).

Faults end the run cleanly with a typed :class:`~tl_lab.training.events.StopCause` and a reason for people: a
stop request, Ctrl-C, a non-finite loss (with a learning rate to try instead). A device out of memory
(``torch.OutOfMemoryError``) retries the epoch from its starting weights with half the batch size; a run folder
that stops taking files (a full disk) leaves the best weights in memory and a note naming the folder and the
size of one checkpoint. Listeners receive ``FitStart``, ``BatchEnd``, ``EpochEnd``, ``Stopped`` and ``FitEnd``
events and never change the loop.

Example::

    >>> import tl_lab
    >>> data = tl_lab.load_dataset("digits", shots=10)
    >>> run = tl_lab.fit("efficientnet_lite0", data, plan=tl_lab.FreezePlan("head"), epochs=30, progress=False)
    >>> round(run.best["test_acc"], 2)   # raw pixels: 0.87 here - digits are far from ImageNet
    0.79

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
from typing import TYPE_CHECKING, Any, Literal, Sequence

import torch
from torch.utils.data import DistributedSampler

from tl_lab.backbones.registry import Backbone, load_backbone
from tl_lab.data.datasets import DatasetSplits
from tl_lab.limits import cache_cap_mb
from tl_lab.training.augment import BatchAugment
from tl_lab.training.checkpoints import Keeper, resume_into
from tl_lab.training.device import (
    all_reduce_sums,
    dist_info,
    distributed,
    pick_device,
    rank_device,
)
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
from tl_lab.training.learner_terms import learner_terms
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
from tl_lab.training.terms import (
    Batch,
    Keep,
    Loss,
    LossTerm,
    Objective,
    Taps,
    TermContext,
    keep_policy,
    record_terms,
)

if TYPE_CHECKING:
    from tl_lab.training.retention import Retain

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
    amp: bool | Literal["auto", "bfloat16", "float16"] = "auto",
    cache: bool | Literal["auto"] = "auto",
    memory_cap_mb: float | None = None,
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
    terms: Sequence[LossTerm] = (),  # any other loss term (terms.py)
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
        device: "auto" picks cuda, then mps, then cpu. ``amp``: mixed precision ("auto": on CUDA only; True: also
            on a CPU, with bfloat16; "bfloat16" / "float16": that type, float16 with a GradScaler).
        cache: cache the frozen prefix's outputs ("auto": whenever the inputs are deterministic).
        memory_cap_mb: how many MB of cached features stay in RAM (the rest go to disk). None: 1024, or a quarter of
            the server's memory limit when one is set (``MEM_LIMIT``, the cgroup: :func:`tl_lab.limits.cache_cap_mb`).
        run_dir: where checkpoints and run.json go (default ``tl_lab_runs/<name>``). ``resume``: a run_dir to
            continue from its last checkpoint, with the same settings.
        pretrained: used only when ``backbone`` is a name (False gives the from-scratch baseline).
        retain: forgetting remedies added to the loss (:mod:`tl_lab.training.retention`): ``"lwf"``, ``"ewc"``,
            ``"l2sp"`` or :class:`~tl_lab.training.retention.Retain` objects with a strength.
        adapt_to: unlabelled target-domain images (``ImageSplit`` or uint8 ``(N, 3, H, W)``, labels ignored, or
            :class:`~tl_lab.training.domain_confusion.UnlabelledTarget`, which a rerun can rebuild) for
            domain confusion (DANN, :mod:`tl_lab.training.domain_confusion`): a domain classifier on the last body
            stage behind a gradient-reversal layer; ``train_loss`` then includes its loss and each history row adds
            ``domain_acc``, ``domain_loss`` and ``dann_lambda``. Turns the feature cache off; the body must train.
        tasks: multi-task learning (:mod:`tl_lab.training.multitask`): two or more label sets of ``data`` (e.g.
            ``("shape", "position")`` of ``load_dataset("shapes")``), or ``{name: loss weight}``. The head's last
            layer becomes one linear classifier per task on the shared body; the loss is the weighted sum of the
            tasks' cross-entropies; history rows add ``train_acc_<task>`` and ``val_acc_<task>``, ``run.best``
            adds ``val_acc_<task>`` and ``test_acc_<task>``, and ``val_acc`` / ``test_acc`` are the tasks' mean.
        terms: other loss terms (:class:`~tl_lab.training.terms.LossTerm`), added to the loss after the learner
            keywords' own; each adds ``term_<name>`` to the history rows and its config to ``run.config["terms"]``.
    Returns:
        A :class:`~tl_lab.training.run.Run`; its model holds the kept weights (best validation accuracy, or the last
        epoch when a term asks: ``keep="last"``) and ``run.best["test_acc"]`` their test accuracy, also when the
        run was stopped.
    """
    t_start = time.perf_counter()
    s = FitSettings(epochs=epochs, lr=lr, batch_size=batch_size, weight_decay=weight_decay, optimizer=optimizer,
                    momentum=momentum, schedule=schedule, step_size=step_size, gamma=gamma, augment=augment,
                    label_smoothing=label_smoothing, seed=seed)
    if memory_cap_mb is None:  # the cache's RAM follows the server's memory limit (MEM_LIMIT, cgroup): tl_lab.limits
        memory_cap_mb = cache_cap_mb()
    check_switches(cache=cache, amp=amp, memory_cap_mb=memory_cap_mb, min_batch_size=min_batch_size)
    plan = plan if plan is not None else FreezePlan.frozen_head()
    if isinstance(backbone, str):
        backbone = load_backbone(backbone, pretrained=pretrained, num_classes=len(data.classes), seed=seed)
    check_data(backbone, data)
    # the learner keywords, translated once: the objective and the loss terms (terms.py)
    objective, terms = learner_terms(data, label_smoothing=s.label_smoothing, tasks=tasks, retain=retain,
                                     adapt_to=adapt_to, terms=terms)
    objective.prepare(backbone, seed=s.seed)  # before the plan counts what trains (multi-task: one head per task)

    # ---- 1. prepare: what trains (decided once), the cache decision, automatic settings, device, the Run -------
    layout = plan.summary(backbone)
    if not layout.trainable_stages:
        raise ValueError("this plan leaves nothing to train; choose trainable_from='head' or an earlier stage")
    full = [t.name for t in terms if t.full_forward]
    if full:  # a term reads the network inside what the cache would skip
        cache_after, cache_why = None, f"off: the loss term {', '.join(full)} runs the whole network every batch"
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
    run.tasks = objective.tasks
    keeper = Keeper(model, changing=layout.changing_stages, full=not run.config["pretrained"], run_dir=run.run_dir)

    # ---- 2. inputs: the cached frozen prefix when there is one (the only place the cache is used); the terms ---
    feed = Feed(backbone, data, cache_after=cache_after, why=cache_why, device=dev, precision=precision,
                augment=BatchAugment(data.image_size, seed=s.seed) if s.augment else None,
                memory_cap_mb=memory_cap_mb, cache_dir=cache_dir, objective=objective)
    run.cache = feed.description
    run.notes.extend(feed.notes)
    module = distributed(feed.suffix, dev) if world > 1 else feed.suffix
    # each term set up once, from the pretrained weights, before a resume loads the stopped ones (the forgetting
    # remedies' anchors, teacher and Fisher must be the original network's)
    ctx = TermContext(backbone, data, layout, feed, device=dev, seed=s.seed, world=world)
    taps = None
    try:
        for t in terms:
            t.setup(ctx)
        taps = Taps(model, [tap for t in terms for tap in t.taps])
        record_terms(run.config, objective, terms)  # run.json, the resume check and rerun read them from here
        groups = [*groups, *(g for t in terms for g in t.param_groups(s.lr))]

        # ---- 3. optimizer and schedule (and where a resumed run left off) --------------------------------------
        opt = build_optimizer(s.optimizer, groups, lr=s.lr, weight_decay=s.weight_decay, momentum=s.momentum)
        start_epoch = resume_into(run, opt, keeper, Path(resume)) if resume is not None else 0
    except BaseException:
        _close(terms, taps)
        raise
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
    each = _Each(objective, tuple(terms), taps, precision, s.epochs, tuple(callbacks), stop, bar)
    keep = keep_policy(terms)
    at = _Position(start_epoch)
    stopped: Stopped | None = None
    model.train()
    try:
        while at.epoch < s.epochs:
            snapshot = keeper.snapshot()  # an out-of-memory retry restarts the epoch from these weights
            t_epoch = time.perf_counter()
            try:
                stats = train_one_epoch(module, opt, sched, feed, batching, at, each)
            except torch.OutOfMemoryError:
                batching = _halve_batch(run, batching, at.epoch, min_batch_size, model, snapshot, opt, dev)
                sched = schedule_at(steps_per_epoch=batching.batches, start_step=at.epoch * batching.batches)
                continue
            if world > 1:
                stats = all_reduce_sums(stats, dev)
            val = evaluate(feed, "val")
            metrics = _epoch_metrics(at.epoch, stats, val, seconds=time.perf_counter() - t_epoch)
            for t in terms:
                metrics.update(t.epoch_metrics())  # e.g. domain confusion's domain_acc: towards 0.5 = confused
            run.history.append(metrics)
            is_best = keep_if_best(run, keeper, metrics, keep=keep)
            at.epoch += 1
            run.last_checkpoint = keeper.save_last(opt, {"epoch": at.epoch}) or run.last_checkpoint
            _note_unwritable(run, keeper)
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
        _close(terms, taps)
    if stopped is not None:
        run.stopped_early, run.stop_reason, run.stop_cause = True, stopped.reason, stopped.cause
        _emit(callbacks, stopped)

    # ---- 5. finish: the kept checkpoint's test accuracy, timings, FitEnd ---------------------------------------
    finish(run, feed, keeper, at, batching.batches, stopped)
    _note_unwritable(run, keeper)
    run.timings = {"cache_s": feed.cache_seconds, "train_s": sum(h["seconds"] for h in run.history),
                   "total_s": time.perf_counter() - t_start, "device": str(dev), "amp": precision.enabled}
    run.save_json()
    model.eval()
    _emit(callbacks, FitEnd(run))
    return run


# ---- the steps ---------------------------------------------------------------------------------------------------


def batch_loss(objective: Objective, terms: Sequence[LossTerm], batch: Batch) -> Loss:
    """The loss one batch trains on: the objective (cross-entropy, or the tasks' weighted sum) plus every term.

    ``Loss.total`` is what trains; ``Loss.task`` and ``Loss.terms`` (by name) are its parts, for the history.
    """
    task = objective.loss(batch.logits, batch.labels)
    parts = {t.name: t.loss(batch) for t in terms}
    return Loss(task + sum(parts.values()) if parts else task, task, parts)


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
                    feed: Feed, batching: _Batching, at: _Position, each: _Each) -> dict:
    """One pass over the training images in this epoch's seeded order; returns sums for the epoch's metrics.

    Raises :class:`_Stop` after the batch in which a stop was requested, or at a non-finite loss.
    """
    order = batching.order(at.epoch)
    t0 = time.perf_counter()
    sums: dict[str, float] = {"loss": 0.0, "task": 0.0, "correct": 0.0, "seen": 0.0}
    lrs: dict[str, float] = {}
    for b in range(batching.batches):
        at.batch = b
        idx = order[b * batching.local : (b + 1) * batching.local]
        x = feed.inputs("train", idx, step=at.epoch * batching.batches + b)
        y = feed.labels("train", idx)
        with each.taps.capture() as tapped, each.precision.context():
            logits = module(x).float()
        loss = batch_loss(each.objective, each.terms,
                          Batch(logits, y, x, tapped, progress=(at.epoch + b / batching.batches) / each.epochs))
        if not torch.isfinite(loss.total):
            raise _Stop(StopCause.NON_FINITE_LOSS,
                        f"the loss became {loss.total.item()} at epoch {at.epoch + 1}, batch {b + 1}")
        lrs = {g["stage"]: g["lr"] for g in opt.param_groups}  # the rates this batch trains with
        head_lr = opt.param_groups[-1]["lr"]
        optimizer_step(opt, sched, loss.total, each.precision.scaler)
        n = len(idx)
        batch_correct, named = each.objective.correct(logits, y)
        parts = {"loss": loss.total.item(), "task": loss.task.item(),
                 **{f"term_{k}": v.item() for k, v in loss.terms.items()}}
        for key, value in parts.items():
            sums[key] = sums.get(key, 0.0) + value * n
        for key, c in named.items():
            sums[f"correct_{key}"] = sums.get(f"correct_{key}", 0.0) + c
        sums["correct"] += batch_correct
        sums["seen"] += n
        _emit(each.callbacks, BatchEnd(at.epoch, b, batching.batches, parts["loss"], batch_correct / n,
                                       int(sums["seen"]), head_lr))
        if each.bar is not None:
            each.bar.set_description(f"epoch {at.epoch + 1}/{each.epochs}", refresh=False)
            each.bar.update(1)
        if stop_requested(each.stop):
            raise _Stop(StopCause.REQUESTED, getattr(each.stop, "reason", "stop requested"))
    return {"sums": sums, "seconds": time.perf_counter() - t0, "lr": lrs}


def evaluate(feed: Feed, split: str) -> dict:
    """Loss and accuracy on ``split`` ("val" or "test") in eval mode: ``{"loss", "acc", "n"}``."""
    return feed.evaluate(split)


def keep_if_best(run: Run, keeper: Keeper, metrics: dict, *, keep: Keep = "best_val") -> bool:
    """Where the kept checkpoint is chosen.

    ``keep="best_val"`` (the default): the highest validation accuracy, ties to the lower validation loss; without
    a validation split, training accuracy and loss decide. ``keep="last"`` (a term may ask for it): every epoch
    replaces the kept one. An epoch whose loss is not finite (weights blown up by too high a learning rate) is never
    kept.
    """
    acc, loss = metrics["val_acc"], metrics["val_loss"]
    if math.isnan(acc):  # no validation split
        acc, loss = metrics["train_acc"], metrics["train_loss"]
    b = run.best
    if not math.isfinite(loss):
        return False
    if keep == "best_val" and b and (acc < b["val_acc"] or (acc == b["val_acc"] and loss >= b["val_loss"])):
        return False
    run.best = {"epoch": metrics["epoch"], "val_acc": acc, "val_loss": loss, "train_acc": metrics["train_acc"],
                **{k: v for k, v in metrics.items() if k.startswith("val_acc_")}}  # multi-task: per task
    if keep == "last":
        run.best["kept"] = "last"
    run.checkpoint = keeper.keep_best({"epoch": metrics["epoch"], "metrics": _plain(metrics)})
    return True


def finish(run: Run, feed: Feed, keeper: Keeper, at: _Position, batches: int, stopped: Stopped | None) -> None:
    """Put the kept weights back in the model and measure them on the test split (after a Stop too).

    Stopped inside the first epoch (no epoch finished): what was learned so far becomes the kept checkpoint,
    marked ``partial``. After a non-finite loss nothing unfinished is kept: those weights are unusable. Under
    ``keep="last"`` the kept weights are the last finished epoch's (:func:`keep_if_best` replaced them each epoch).
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


@dataclass(frozen=True)
class _Each:
    """What every batch of the run uses, fixed for the run."""

    objective: Objective
    terms: tuple[LossTerm, ...]
    taps: Taps
    precision: Precision
    epochs: int
    callbacks: tuple[Callback, ...]
    stop: Any
    bar: Any


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
                 snapshot: dict, opt: torch.optim.Optimizer, dev: torch.device) -> _Batching:
    """After the device ran out of memory: restore the epoch's starting weights and retry it with half the batch."""
    size = batching.size // 2
    where = "GPU" if dev.type == "cuda" else dev.type.upper()
    if size < min_batch_size:
        raise RuntimeError(
            f"out of {where} memory even at batch size {batching.size}; free {where} memory (restart other "
            f"kernels), use a smaller backbone or image_size" + (", or device='cpu'" if dev.type != "cpu" else "")
        ) from None
    model.load_state_dict(snapshot, strict=False)
    opt.state.clear()
    run.notes.append(f"{'CUDA' if dev.type == 'cuda' else where} ran out of memory in epoch {epoch + 1}; retried it "
                     f"with batch size {size}")
    run.config["batch_size"] = size
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return replace(batching, size=size)


def _epoch_metrics(epoch: int, stats: dict, val: dict, *, seconds: float) -> dict:
    """The history row: ``train_loss`` (the total), ``train_task_loss`` (the objective alone), ``term_<name>`` per
    term (means per example), accuracies (``train_acc_<task>``, ``val_acc_<task>`` in a multi-task run), time, LRs."""
    sums = stats["sums"]
    seen = sums["seen"]
    metrics = {
        "epoch": epoch + 1,
        "train_loss": sums["loss"] / seen, "train_acc": sums["correct"] / seen,
        "val_loss": val["loss"], "val_acc": val["acc"],
        "seconds": seconds, "images_per_s": seen / max(stats["seconds"], 1e-9),
        "lr": stats["lr"],
        "train_task_loss": sums["task"] / seen,
    }
    metrics.update({k: v / seen for k, v in sums.items() if k.startswith("term_")})
    for key, c in sums.items():
        if key.startswith("correct_"):  # multi-task: each task's accuracies
            name = key[len("correct_"):]
            metrics[f"train_acc_{name}"] = c / seen
            metrics[f"val_acc_{name}"] = val.get(f"acc_{name}", float("nan"))
    return metrics


def _close(terms: Sequence[LossTerm], taps: Taps | None) -> None:
    if taps is not None:
        taps.close()
    for t in terms:
        t.close()


def _note_unwritable(run: Run, keeper: Keeper) -> None:
    """Once the run folder stops taking files (a full disk): say so once; the run trains on, keeping its best in memory."""
    if keeper.unwritable and keeper.unwritable not in run.notes:
        run.notes.append(keeper.unwritable)
        if run.checkpoint is not None and keeper.best is not None and not isinstance(keeper.best, Path):
            run.checkpoint = None  # the kept weights live in memory now


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
