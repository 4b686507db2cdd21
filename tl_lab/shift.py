"""When the task or the domain moves: domain shift, negative transfer and catastrophic forgetting, measured.

The shifts are deterministic tensor transforms of uint8 images (the same seed gives the same images), so a
lesson's "the model breaks on inverted digits" is a number anyone can reproduce. The experiments return
:class:`~tl_lab.experiments.ExperimentResult` records, like the rest of :mod:`tl_lab.experiments`.

Example::

    >>> from tl_lab.data import load_dataset
    >>> from tl_lab.shift import domain_shift, shift_data
    >>> inverted = shift_data(load_dataset("digits", shots=10), "inverted")     # every split, 255 - x
    >>> print(domain_shift("efficientnet_lite0", "digits", shifts=("inverted",), fast=True))
"""

from __future__ import annotations

import math
import time
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F

from tl_lab.backbones import Backbone, load_backbone
from tl_lab.data import DatasetSplits, ImageSplit, baseline, load_dataset
from tl_lab.experiments import (
    RECIPES,
    ExperimentResult,
    Recipe,
    RecordCallback,
    Records,
    check_choice,
    recipe_epochs,
    train_run,
)
from tl_lab.freeze import FreezePlan
from tl_lab.run import evaluate_model

try:  # written in parallel; forgetting() adds the photos when the module is there
    from tl_lab.samples import sample_photos
except ImportError:  # pragma: no cover - depends on the checkout
    sample_photos = None

__all__ = ["SHIFTS", "shift_images", "shift_split", "shift_data", "domain_shift", "negative_transfer", "forgetting",
           "reattach_head"]

SHIFTS = ("inverted", "rotated", "noisy", "textured")
ROTATION_DEGREES = (30.0, 90.0)  # |angle| range; the sign is random too
NOISE_STD = 0.2  # Gaussian noise, as a fraction of the 0..255 range
TRAINABLE = ("frozen_head", "fine_tune", "scratch")


# ---- the shifts ------------------------------------------------------------------------------------------------


def shift_images(images: torch.Tensor, shift: str, *, seed: int = 0) -> torch.Tensor:
    """A shifted copy of uint8 images ``(N, 3, H, W)``, deterministic for a given ``seed``.

    ``inverted``: ``255 - x`` (a photographic negative). ``rotated``: each image turned by a random angle of
    30-90 degrees either way, the corners filled with its background colour (the median border pixel).
    ``noisy``: Gaussian noise of std 0.2 x 255, clipped. ``textured``: the background (pixels close to the border
    colour) replaced by random coloured stripes, the object kept: the shortcut Geirhos et al. 2019 (ICLR,
    "ImageNet-trained CNNs are biased towards texture") found ImageNet models rely on.

    >>> x = torch.zeros(2, 3, 8, 8, dtype=torch.uint8)
    >>> shift_images(x, "inverted").unique().tolist()
    [255]
    """
    check_choice("shift", [shift], SHIFTS)
    if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be uint8 (N, 3, H, W); got {images.dtype} {tuple(images.shape)}")
    if shift == "inverted":
        return 255 - images
    gen = torch.Generator().manual_seed(seed)
    n, _, h, w = images.shape
    x = images.float()
    if shift == "noisy":
        out = x + torch.randn(x.shape, generator=gen) * (NOISE_STD * 255.0)
    else:
        border = torch.cat([x[:, :, 0], x[:, :, -1], x[:, :, :, 0], x[:, :, :, -1]], dim=2)
        bg = border.median(dim=2).values[:, :, None, None]  # (N, 3, 1, 1)
        if shift == "rotated":
            lo, hi = ROTATION_DEGREES
            sign = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0)
            angle = torch.deg2rad(sign * (lo + (hi - lo) * torch.rand(n, generator=gen)))
            cos, sin = angle.cos(), angle.sin()
            theta = torch.stack([torch.stack([cos, -sin, torch.zeros(n)], 1),
                                 torch.stack([sin, cos, torch.zeros(n)], 1)], 1)
            grid = F.affine_grid(theta, [n, 3, h, w], align_corners=False)
            out = F.grid_sample(x - bg, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + bg
        else:
            alpha = ((x - bg).abs().amax(dim=1, keepdim=True) / 96.0).clamp(0.0, 1.0)
            out = alpha * x + (1.0 - alpha) * _stripes(n, h, w, gen)
    return out.round().clamp(0, 255).to(torch.uint8)


def _stripes(n: int, h: int, w: int, gen: torch.Generator) -> torch.Tensor:
    """Random two-colour sinusoidal stripes (N, 3, H, W) in 0..255: orientation, period, phase, colours."""
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    angle = torch.rand(n, 1, 1, generator=gen) * math.pi
    period = h / 8 + torch.rand(n, 1, 1, generator=gen) * h / 4
    phase = torch.rand(n, 1, 1, generator=gen) * 2 * math.pi
    wave = 0.5 + 0.5 * torch.sin(2 * math.pi * (xx * angle.cos() + yy * angle.sin()) / period + phase)
    a, b = (torch.rand(n, 3, 1, 1, generator=gen) * 255.0 for _ in range(2))
    return a + (b - a) * wave[:, None]


def shift_split(split: ImageSplit, shift: str, *, seed: int = 0) -> ImageSplit:
    """The same images and labels, shifted (rotation drops the object masks, which no longer fit)."""
    masks = None if shift == "rotated" else split.masks
    return ImageSplit(shift_images(split.images, shift, seed=seed), split.labels, split.classes, masks, split.ids)


def shift_data(data: DatasetSplits, shift: str, *, seed: int = 0) -> DatasetSplits:
    """Every split of ``data`` shifted, each split with its own deterministic draw; ``meta["shift"]`` says how."""
    def split_seed(split: str) -> int:
        return zlib.crc32(f"{shift}:{split}:{seed}".encode())

    splits = {s: shift_split(getattr(data, s), shift, seed=split_seed(s)) for s in ("train", "val", "test")}
    meta = {**data.meta, "shift": shift, "shift_seed": seed}
    return replace(data, **splits, name=f"{data.name} ({shift})", meta=meta)


# ---- domain shift --------------------------------------------------------------------------------------------


def domain_shift(
    backbone_name: str = "efficientnet_lite0",
    dataset: str = "digits",
    *,
    shifts: Sequence[str] = SHIFTS,
    shots: int | None = 10,
    strategies: Sequence[str] = ("frozen_head", "fine_tune"),
    adapt: bool = True,
    target_only: bool = True,
    seed: int = 0,
    image_size: int | None = None,
    epochs: int | Mapping[str, int] | None = None,
    fast: bool = False,
    val_per_class: int | None = None,
    callback: RecordCallback | None = None,
    run_dir: str | Path | None = None,
) -> ExperimentResult:
    """Train on the clean domain, test on shifted copies of the test split; then adapt on a few shifted images.

    Why: a model is only as good as the match between its training and test distributions (Quiñonero-Candela
    et al. 2009, "Dataset Shift in Machine Learning"; Recht et al. 2019, "Do ImageNet Classifiers Generalize to
    ImageNet?"). Each record has a ``training`` column: ``clean`` (trained on clean images, tested on the shift),
    ``adapted`` (the clean model trained further, same recipe, on the same number of shifted training images per
    class, shifted validation images choosing the epoch) or, with ``target_only``, ``target_only`` (raw pixels and
    scratch trained on the shifted images alone). The notes report negative transfer, an adapted
    pretrained model doing worse than training on the shifted images alone (Rosenstein et al. 2005; Wang et al.
    2019, "Characterizing and Avoiding Negative Transfer", CVPR), where it occurs and say so when it does not.

    Records: strategy, shift (``none`` = clean test), training, test_acc, seconds, plus the settings.

    Example::

        >>> r = domain_shift(dataset="digits", shifts=("inverted",), strategies=("frozen_head",), fast=True)
        >>> print(r)            # inverted digits: accuracy falls; adapting on 10 shifted shots wins some back
    """
    check_choice("shift", shifts, SHIFTS)
    check_choice("strategy", strategies, TRAINABLE)
    start = time.perf_counter()
    data = load_dataset(dataset, shots=shots, seed=seed, image_size=image_size, val_per_class=val_per_class)
    shifted = {s: shift_data(data, s, seed=seed) for s in shifts}
    records: Records = []
    context = {"dataset": dataset, "backbone": backbone_name, "shots": shots, "seed": seed}

    def emit(strategy: str, shift: str, training: str, acc: float, since: float) -> None:
        record = {"strategy": strategy, "shift": shift, "training": training, "test_acc": acc,
                  "seconds": time.perf_counter() - since, **context}
        records.append(record)
        if callback is not None:
            callback(record)

    t = time.perf_counter()
    emit("raw_pixels", "none", "clean", baseline(data)["test_acc"], t)
    for s in shifts:
        t = time.perf_counter()
        emit("raw_pixels", s, "clean", baseline(replace(data, test=shifted[s].test))["test_acc"], t)
        if target_only:
            t = time.perf_counter()
            emit("raw_pixels", s, "target_only", baseline(shifted[s])["test_acc"], t)
    for strategy in strategies:
        r, n_epochs = RECIPES[strategy], recipe_epochs(strategy, epochs, fast)
        t = time.perf_counter()
        run = train_run(backbone_name, data, r, epochs=n_epochs, seed=seed, run_dir=run_dir, name=f"{strategy}-clean")
        emit(strategy, "none", "clean", run.best["test_acc"], t)
        device = next(run.model.parameters()).device
        for s in shifts:
            t = time.perf_counter()
            emit(strategy, s, "clean", evaluate_model(run.backbone, shifted[s].test, device=device)["acc"], t)
            if adapt:
                t = time.perf_counter()
                model = copy_backbone(run.backbone, num_classes=len(data.classes), seed=seed)
                adapted = train_run(model, shifted[s], r, epochs=n_epochs, seed=seed, run_dir=run_dir,
                                    name=f"{strategy}-adapted-{s}")
                emit(strategy, s, "adapted", adapted.best["test_acc"], t)
    if target_only:
        r, n_epochs = RECIPES["scratch"], recipe_epochs("scratch", epochs, fast)
        for s in shifts:
            t = time.perf_counter()
            run = train_run(backbone_name, shifted[s], r, epochs=n_epochs, seed=seed, run_dir=run_dir,
                            name=f"scratch-target-{s}")
            emit("scratch", s, "target_only", run.best["test_acc"], t)
    config = {**context, "image_size": data.image_size, "fast": fast}
    return ExperimentResult("domain shift", records, time.perf_counter() - start, config,
                            _negative_transfer_notes(records, shifts), pivot=(("strategy", "training"), "shift"))


def copy_backbone(backbone: Backbone, *, num_classes: int, seed: int = 0) -> Backbone:
    """A fresh Backbone of the same network holding ``backbone``'s weights (the original keeps training apart)."""
    new = load_backbone(backbone.name, pretrained=False, num_classes=num_classes, seed=seed)
    new.model.load_state_dict(backbone.model.state_dict())
    new.meta.update(pretrained=backbone.meta.get("pretrained", True), weights=backbone.meta.get("weights"))
    return new


def _negative_transfer_notes(records: Records, shifts: Sequence[str]) -> list[str]:
    notes = []
    for s in shifts:
        alone = [r for r in records if r["shift"] == s and r["training"] == "target_only"]
        adapted = [r for r in records if r["shift"] == s and r["training"] == "adapted" and r["strategy"] != "scratch"]
        if not alone or not adapted:
            continue
        best = max(alone, key=lambda r: r["test_acc"])
        worse = [r for r in adapted if r["test_acc"] < best["test_acc"]]
        for r in worse:
            notes.append(f"negative transfer on {s}: {r['strategy']} adapted {r['test_acc']:.3f} < {best['strategy']} "
                         f"trained on the shifted images alone {best['test_acc']:.3f}")
        if not worse:
            notes.append(f"no negative transfer on {s}: every adapted pretrained model matched or beat training on "
                         f"the shifted images alone (best: {best['strategy']} {best['test_acc']:.3f})")
    return notes


# ---- negative transfer through an intermediate source ----------------------------------------------------------


def negative_transfer(
    backbone_name: str = "efficientnet_lite0",
    source: str = "digits",
    target: str = "clipart",
    *,
    shots: int | None = 10,
    source_shots: int | None = 20,
    image_size: int = 64,
    seed: int = 0,
    epochs: int | Mapping[str, int] | None = None,
    fast: bool = False,
    callback: RecordCallback | None = None,
    run_dir: str | Path | None = None,
) -> ExperimentResult:
    """Does a detour through a far source task hurt? ImageNet -> ``source`` -> ``target`` vs ImageNet -> target.

    Why: transfer helps only when source and target share structure; otherwise it can do worse than no transfer
    at all, negative transfer (Rosenstein et al. 2005, "To transfer or not to transfer"; Wang et al. 2019, CVPR).
    Routes, each ending in a frozen-feature linear head on the target (so the features are what is compared):
    ``ImageNet -> target``; ``ImageNet -> source -> target`` (the body first fine-tuned on ``source``, then
    frozen); and the target-only floors ``scratch`` and ``raw pixels``. The notes give the verdict as measured.

    Records: route, test_acc (target), source_test_acc (the detour's source accuracy), seconds.
    """
    start = time.perf_counter()
    tgt = load_dataset(target, shots=shots, seed=seed, image_size=image_size)
    src = load_dataset(source, shots=source_shots, seed=seed, image_size=image_size)
    records: Records = []

    def train(key: str, backbone: Backbone | str, data: DatasetSplits, name: str):
        return train_run(backbone, data, RECIPES[key], epochs=recipe_epochs(key, epochs, fast), seed=seed,
                         run_dir=run_dir, name=name)

    def emit(route: str, acc: float, since: float, source_acc: float | None = None) -> None:
        record = {"route": route, "test_acc": acc, "source_test_acc": source_acc,
                  "seconds": time.perf_counter() - since, "source": source, "target": target, "shots": shots,
                  "backbone": backbone_name, "seed": seed}
        records.append(record)
        if callback is not None:
            callback(record)

    t = time.perf_counter()
    emit("raw pixels (target only)", baseline(tgt)["test_acc"], t)
    t = time.perf_counter()
    emit("scratch (target only)", train("scratch", backbone_name, tgt, "scratch-target").best["test_acc"], t)
    t = time.perf_counter()
    emit("ImageNet -> target", train("frozen_head", backbone_name, tgt, "imagenet-target").best["test_acc"], t)
    t = time.perf_counter()
    detour = train("fine_tune", backbone_name, src, "source")
    model = load_backbone(backbone_name, num_classes=len(tgt.classes), seed=seed)
    for stage in model.body_stages:
        model.model.get_submodule(stage).load_state_dict(detour.model.get_submodule(stage).state_dict())
    run = train("frozen_head", model, tgt, "source-target")
    emit(f"ImageNet -> {source} -> target", run.best["test_acc"], t, detour.best["test_acc"])
    floor = max(records[:2], key=lambda r: r["test_acc"])
    notes = []
    for r in records[2:]:
        verdict = "negative transfer" if r["test_acc"] < floor["test_acc"] else "positive transfer"
        notes.append(f"{verdict}: {r['route']} {r['test_acc']:.3f} vs best target-only ({floor['route']}) "
                     f"{floor['test_acc']:.3f}")
    diff = records[3]["test_acc"] - records[2]["test_acc"]
    notes.append(f"the detour through {source} changed target accuracy by {diff:+.3f} against ImageNet directly")
    config = {"backbone": backbone_name, "source": source, "target": target, "shots": shots,
              "source_shots": source_shots, "image_size": image_size, "seed": seed, "fast": fast}
    return ExperimentResult("negative transfer", records, time.perf_counter() - start, config, notes,
                            ("route", "test_acc", "source_test_acc", "seconds"))


# ---- catastrophic forgetting -------------------------------------------------------------------------------------


def forgetting(
    backbone_name: str = "efficientnet_lite0",
    dataset: str = "clipart",
    *,
    plans: Sequence[str | FreezePlan] = ("frozen_head", "fine_tune"),
    shots: int | None = 10,
    seed: int = 0,
    image_size: int | None = None,
    epochs: int | Mapping[str, int] | None = None,
    fast: bool = False,
    photos: bool = True,
    callback: RecordCallback | None = None,
    run_dir: str | Path | None = None,
) -> ExperimentResult:
    """How much of the original ImageNet task survives training on a new task (task B).

    Why: a network trained on a new task loses the old one, catastrophic forgetting (McCloskey & Cohen 1989;
    Kirkpatrick et al. 2017, "Overcoming catastrophic forgetting in neural networks", PNAS). With no ImageNet
    images offline, task A is measured as agreement with the pretrained model itself: the original 1000-class head
    is put back on the body after task-B training, and its predictions are compared with the untouched model's on
    images task B never trained on (the sample photos at the backbone's input size, and the task-B test images).
    A frozen body must agree 100%; fine-tuning moves the body and some predictions change.

    Args:
        plans: ``"frozen_head"``, ``"fine_tune"`` (the :data:`RECIPES`) or FreezePlans (lr 3e-3; fine-tune epochs,
            or frozen-head epochs for a head-only plan).
        photos: include :func:`tl_lab.samples.sample_photos` when that module is installed.

    Records (one per plan and image set): plan, images, n_images, top1_agreement, kl_mean (KL(original || after),
    nats), p_top_before / p_top_after (mean probability of the original top class), body_change (relative L2
    change of the body's weights), task_b_test_acc, seconds.

    Example::

        >>> r = forgetting(dataset="clipart", image_size=64, fast=True)
        >>> {(x["plan"], x["images"]): x["top1_agreement"] for x in r.to_records()}   # frozen: 1.0; fine-tuned: less
    """
    start = time.perf_counter()
    reference = load_backbone(backbone_name)
    if reference.meta.get("categories") is None:
        raise ValueError(f"{backbone_name} has no ImageNet head to compare; use a backbone with ImageNet weights")
    data = load_dataset(dataset, shots=shots, seed=seed, image_size=image_size)
    probe_sets: dict[str, torch.Tensor] = {}
    notes: list[str] = []
    if photos and sample_photos is not None:
        probe_sets["sample photos"] = torch.stack([reference.transform(p.image()) for p in sample_photos()])
    elif photos:
        notes.append("sample photos unavailable (tl_lab.samples missing); only task-B test images were used")
    probe_sets[f"{dataset} test"] = reference.normalize(data.test.images)
    before = {name: _probabilities(reference.model, x) for name, x in probe_sets.items()}
    records: Records = []
    for plan in plans:
        label, recipe, n_epochs = _forgetting_recipe(plan, epochs, fast, reference.head)
        t = time.perf_counter()
        run = train_run(backbone_name, data, recipe, epochs=n_epochs, seed=seed, run_dir=run_dir,
                        name=f"forgetting-{label}")
        imagenet = reattach_head(run.backbone, reference)
        change = _relative_change(reference, imagenet)
        for name, x in probe_sets.items():
            p0, p1 = before[name], _probabilities(imagenet.model, x)
            top = p0.argmax(1)
            record = {
                "plan": label, "images": name, "n_images": len(x),
                "top1_agreement": (p1.argmax(1) == top).double().mean().item(),
                "kl_mean": (p0 * (p0.clamp_min(1e-12).log() - p1.clamp_min(1e-12).log())).sum(1).mean().item(),
                "p_top_before": p0.gather(1, top[:, None]).mean().item(),
                "p_top_after": p1.gather(1, top[:, None]).mean().item(),
                "body_change": change, "task_b_test_acc": run.best["test_acc"], "epochs": n_epochs,
                "seconds": time.perf_counter() - t, "dataset": dataset, "backbone": backbone_name,
            }
            records.append(record)
            if callback is not None:
                callback(record)
    config = {"backbone": backbone_name, "dataset": dataset, "shots": shots, "seed": seed,
              "image_size": data.image_size, "fast": fast}
    return ExperimentResult("forgetting", records, time.perf_counter() - start, config, notes,
                            ("plan", "images", "top1_agreement", "kl_mean", "p_top_before", "p_top_after",
                             "body_change", "task_b_test_acc"))


def reattach_head(trained: Backbone, reference: Backbone) -> Backbone:
    """A copy of ``reference`` (with its original head) whose body stages hold ``trained``'s weights."""
    model = load_backbone(reference.name)
    model.model.load_state_dict(reference.model.state_dict())
    for stage in reference.body_stages:
        model.model.get_submodule(stage).load_state_dict(trained.model.get_submodule(stage).state_dict())
    return model


def _forgetting_recipe(plan: str | FreezePlan, epochs, fast: bool, head: str) -> tuple[str, Recipe, int]:
    if isinstance(plan, str):
        check_choice("plan", [plan], ("frozen_head", "fine_tune"))
        return plan, RECIPES[plan], recipe_epochs(plan, epochs, fast)
    key = "frozen_head" if plan.trainable_from == head else "fine_tune"
    return plan.describe(), replace(RECIPES[key], plan=plan), recipe_epochs(key, epochs, fast)


@torch.no_grad()
def _probabilities(model: torch.nn.Module, x: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        return torch.cat([model(x[i : i + batch_size].to(device)).float().softmax(1).cpu()
                          for i in range(0, len(x), batch_size)]).double()
    finally:
        model.train(was_training)


@torch.no_grad()
def _relative_change(before: Backbone, after: Backbone) -> float:
    """||w_after - w_before|| / ||w_before|| over every body parameter."""
    num = den = 0.0
    for stage in before.body_stages:
        pa = dict(after.model.get_submodule(stage).named_parameters())
        for name, w0 in before.model.get_submodule(stage).named_parameters():
            num += (pa[name].detach().cpu().double() - w0.detach().cpu().double()).pow(2).sum().item()
            den += w0.detach().double().pow(2).sum().item()
    return math.sqrt(num / max(den, 1e-30))
