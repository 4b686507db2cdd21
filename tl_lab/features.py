"""Look inside a backbone: taps, first-layer filters, feature maps, per-stage features, linear probes, cuts.

Why: "pretrained features transfer" is a claim about *where* in the network the useful features live. Everything
here speaks in stage names (``stem``, ``stage1`` … ``conv_head``) and returns plain data (numpy arrays, frozen
dataclasses) that ``plots.py`` draws and tests check.

- :func:`tap` reads stage outputs through forward hooks (a context manager that always cleans up).
- :func:`filters` and :func:`feature_maps` show what the first convolution and later stages respond to
  (Zeiler & Fergus 2014, "Visualizing and Understanding Convolutional Networks", arXiv:1311.2901).
- :func:`stage_features` pools every stage in one pass and caches the result; :func:`probe_stages` fits a linear
  probe per stage (Alain & Bengio 2016, "Understanding intermediate layers using linear classifier probes",
  arXiv:1610.01644). On data far from ImageNet a middle stage often beats the last one (Yosinski et al. 2014,
  "How transferable are features in deep neural networks?", arXiv:1411.1792); :func:`cut_at` turns that into a
  network you can train with ``fit``.

Example::

    >>> from tl_lab.backbones import load_backbone
    >>> from tl_lab.data import load_dataset
    >>> bb, data = load_backbone(), load_dataset("digits", shots=10)
    >>> result = probe_stages(bb, data)            # ~15 s on 2 busy CPU cores
    >>> result.best_stage                          # a middle stage: digits are far from ImageNet
    'stage5'
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import itertools
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from torch import nn

from tl_lab.backbones import Backbone
from tl_lab.staged import ClassifierHead, StagedModel, TokenPool

if TYPE_CHECKING:
    from tl_lab.data import DatasetSplits, ImageSplit

__all__ = [
    "FeatureMaps",
    "FilterTiles",
    "ProbeResult",
    "StageProbe",
    "C_GRID",
    "clear_feature_cache",
    "cut_at",
    "embed",
    "feature_maps",
    "filters",
    "probe_stages",
    "stage_features",
    "tap",
]

C_GRID = (0.01, 0.1, 1.0, 10.0)  # inverse L2 strengths tried on the val split (sklearn's default is 1.0)


# ---- taps ------------------------------------------------------------------------------------------------------


@contextmanager
def tap(
    model: nn.Module,
    stages: str | Sequence[str],
    *,
    eval_mode: bool = True,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> Iterator[dict[str, torch.Tensor]]:
    """Record the outputs of named stages (any module path) during the forward passes inside the block.

    The dict fills as the model runs: ``acts[stage]`` is the (detached) output of the last call, after
    ``transform`` when given (e.g. ``backbone.pooled`` to keep only (N, C) vectors). ``eval_mode`` runs the block
    in eval mode (BatchNorm statistics fixed, no dropout). On exit, even after an error, every hook is removed and
    every module gets back its own train/eval flag.

    Example::

        >>> with tap(bb.model, ["stage1", "stage3"]) as acts:
        ...     bb.model(torch.zeros(2, 3, 64, 64))
        >>> acts["stage1"].shape, acts["stage3"].shape
        (torch.Size([2, 16, 32, 32]), torch.Size([2, 40, 8, 8]))
    """
    names = [stages] if isinstance(stages, str) else list(dict.fromkeys(stages))
    modules = {name: _submodule(model, name) for name in names}
    acts: dict[str, torch.Tensor] = {}
    modes = [(m, m.training) for m in model.modules()]
    handles = []

    def hook(name: str) -> Callable[..., None]:
        def store(_module: nn.Module, _inputs: Any, output: Any) -> None:
            out = transform(output) if transform is not None else output
            acts[name] = out.detach() if torch.is_tensor(out) else out

        return store

    try:
        for name, module in modules.items():
            handles.append(module.register_forward_hook(hook(name)))
        if eval_mode:
            model.eval()
        yield acts
    finally:
        for handle in handles:
            handle.remove()
        for module, mode in modes:
            module.training = mode


def _submodule(model: nn.Module, name: str) -> nn.Module:
    try:
        return model.get_submodule(name)
    except AttributeError:
        known = getattr(model, "stage_names", None) or tuple(n for n, _ in model.named_children())
        raise ValueError(f"cannot tap {name!r}: no such module; stages are: {', '.join(known)}") from None


def _body_stages(backbone: Backbone, stages: str | Sequence[str] | None) -> tuple[str, ...]:
    """Requested stages in forward order; the head is refused (its output is logits, not features)."""
    if stages is None:
        return backbone.body_stages
    wanted = [stages] if isinstance(stages, str) else list(stages)
    for s in wanted:
        if s not in backbone.body_stages:
            hint = " (the head outputs logits; pick a body stage)" if s == backbone.head else ""
            raise ValueError(f"unknown stage {s!r}{hint}; body stages are: {', '.join(backbone.body_stages)}")
    return tuple(s for s in backbone.body_stages if s in wanted)


# ---- first-layer filters ---------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class FilterTiles:
    """The first convolution's filters as RGB tiles: ``tiles`` (K, h, w, 3) in [0, 1].

    Each filter is scaled on its own, symmetrically: 0.5 + w / (2 max|w|), so a zero weight is mid-grey and the
    strongest weight of that filter is pure black or white. ``scale`` (K,) holds each filter's max|w|.
    """

    tiles: np.ndarray
    layer: str
    shape: tuple[int, ...]  # the weight's own shape (K, 3, h, w)
    scale: np.ndarray

    def mosaic(self, *, columns: int = 8, pad: int = 1) -> np.ndarray:
        """All tiles in one (H, W, 3) image, ``columns`` per row, separated by ``pad`` white pixels."""
        k, h, w, _ = self.tiles.shape
        rows = -(-k // columns)
        out = np.ones((rows * (h + pad) - pad, columns * (w + pad) - pad, 3), dtype=np.float32)
        for i, tile in enumerate(self.tiles):
            r, c = divmod(i, columns)
            out[r * (h + pad) : r * (h + pad) + h, c * (w + pad) : c * (w + pad) + w] = tile
        return out


def filters(backbone: Backbone) -> FilterTiles:
    """The filters of the first convolution that reads the RGB image (ViT: the 16x16 patch embedding).

    Why: pretrained networks learn oriented edges and colour blobs here, random ones show noise; the contrast is
    the first thing a lesson on "what did ImageNet teach" shows.

    Example::

        >>> f = filters(load_backbone())
        >>> f.layer, f.tiles.shape          # Lite0: 32 filters of 3x3
        ('stem.0', (32, 3, 3, 3))
    """
    for name, module in backbone.model.named_modules():
        if isinstance(module, nn.Conv2d) and module.in_channels == 3:
            w = module.weight.detach().float().cpu().numpy()  # (K, 3, h, w)
            scale = np.abs(w).reshape(len(w), -1).max(axis=1)
            tiles = 0.5 + w / (2 * np.maximum(scale, 1e-12)[:, None, None, None])
            return FilterTiles(
                tiles=np.ascontiguousarray(tiles.transpose(0, 2, 3, 1), dtype=np.float32),
                layer=name,
                shape=tuple(w.shape),
                scale=scale.astype(np.float32),
            )
    raise ValueError(
        f"{backbone.name} has no Conv2d reading 3 input channels; filters() needs a first convolution on RGB images"
    )


# ---- feature maps ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class FeatureMaps:
    """One stage's spatial activations for a few images, with each image's strongest channels.

    ``activations`` (N, C, h, w); ``channel_means`` (N, C); ``top_channels`` (N, k) channel indices, strongest
    first; ``top_maps`` (N, k, h, w) those channels' maps. ``tokens`` is True for ViT stages, whose patch tokens
    (N, 1 + h*w, D) were laid back on their h x w grid (the class token is dropped).
    """

    stage: str
    activations: np.ndarray
    channel_means: np.ndarray
    top_channels: np.ndarray
    top_maps: np.ndarray
    tokens: bool


def feature_maps(
    backbone: Backbone, images: Any, stages: str | Sequence[str], *, top_k: int = 8
) -> dict[str, FeatureMaps]:
    """Activations of ``stages`` for a few images, and the ``top_k`` channels with the largest mean per image.

    ``images``: a tensor (N, 3, H, W) or (3, H, W), uint8 or float in [0, 1], normalised with
    ``backbone.normalize`` (as ``Run.predict`` does), or a list of PIL images, sent through ``backbone.transform``.

    Example::

        >>> maps = feature_maps(bb, data.test.images[:4], ["stage1", "stage3"], top_k=4)
        >>> maps["stage3"].activations.shape, maps["stage3"].top_maps.shape   # digits at 64 px
        ((4, 40, 8, 8), (4, 4, 8, 8))
    """
    names = _body_stages(backbone, stages)
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    x = _prepare(backbone, images)
    device = next(backbone.model.parameters()).device
    with torch.no_grad(), tap(backbone.model, names) as acts:
        backbone.model.forward_range(x.to(device), end=names[-1])
    out = {}
    for name in names:
        act, tokens = acts[name].float(), acts[name].dim() == 3
        if tokens:
            act = _tokens_to_grid(act, name)
        if act.dim() != 4:
            raise ValueError(f"stage {name!r} outputs {tuple(act.shape)}, not a spatial map; pick an earlier stage")
        means = act.mean(dim=(2, 3))
        k = min(top_k, act.shape[1])
        top = means.topk(k, dim=1).indices
        top_maps = torch.gather(act, 1, top[:, :, None, None].expand(-1, -1, *act.shape[2:]))
        out[name] = FeatureMaps(
            name, act.cpu().numpy(), means.cpu().numpy(), top.cpu().numpy(), top_maps.cpu().numpy(), tokens
        )
    return out


def _tokens_to_grid(tokens: torch.Tensor, stage: str) -> torch.Tensor:
    n, t, d = tokens.shape
    side = int(round((t - 1) ** 0.5))
    if side * side != t - 1:
        raise ValueError(f"stage {stage!r} has {t} tokens, not 1 class token + a square grid of patches")
    return tokens[:, 1:].reshape(n, side, side, d).permute(0, 3, 1, 2)


def _prepare(backbone: Backbone, images: Any) -> torch.Tensor:
    """Model input (N, 3, H, W) from uint8 / [0, 1] float tensors or arrays, or from a list of PIL images."""
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(images)
    if not torch.is_tensor(images):
        images = list(images)
        if not images:
            raise ValueError("no images given")
        x = torch.stack([backbone.transform(im) for im in images])
    else:
        x = images[None] if images.dim() == 3 else images
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"images must be (N, 3, H, W) or (3, H, W), got shape {tuple(images.shape)}")
        x = backbone.normalize(x)
    backbone.check_input_size(int(x.shape[-1]))
    return x


# ---- pooled stage features, cached -----------------------------------------------------------------------------


@dataclass
class _Entry:
    images: weakref.ref
    images_key: tuple
    weights_key: tuple
    features: dict[str, np.ndarray]


# model -> {id(images): entry}; weak on the model, so a deleted network's features go with it.
_CACHE: "weakref.WeakKeyDictionary[nn.Module, dict[int, _Entry]]" = weakref.WeakKeyDictionary()


def clear_feature_cache() -> None:
    """Forget every cached :func:`stage_features` result (e.g. after editing weights through ``.data``)."""
    _CACHE.clear()


def _weights_key(modules: Sequence[nn.Module]) -> tuple:
    """Changes whenever the body's weights do (not the head's): identity, storage and version counter of every
    tensor, plus a checksum of a strided sample of each (catches in-place edits through ``.data``, which skip the
    version counter)."""
    tensors = [t for m in modules for t in itertools.chain(m.parameters(), m.buffers())]
    ids = tuple((id(t), t.data_ptr(), t._version) for t in tensors)
    with torch.no_grad():
        sample = torch.cat([t.detach().reshape(-1)[:: max(1, t.numel() // 64)].double().cpu() for t in tensors])
    return ids + (hashlib.blake2b(sample.numpy().tobytes(), digest_size=16).hexdigest(),)


def stage_features(
    backbone: Backbone,
    split: ImageSplit | torch.Tensor,
    stages: str | Sequence[str] | None = None,
    *,
    batch_size: int = 64,
    device: str | torch.device | None = None,
) -> dict[str, np.ndarray]:
    """Pooled features (N, C) of every requested stage, all from one forward pass per batch.

    Pooling is the head's own (``backbone.pooled``: spatial mean for CNNs, class token for ViT). The model runs in
    eval mode under ``no_grad`` and only up to the last requested stage. Results are cached in memory per model,
    per split and per state of the weights, so asking again (another probe, another plot) is instant, and
    training the model invalidates them. The arrays are read-only; copy one to change it.

    ``split``: an ImageSplit or a uint8 tensor (N, 3, H, W). ``device``: where to run (the model is moved there,
    as ``fit`` does); default: where the model already is.

    Example::

        >>> feats = stage_features(bb, data.train, ["stage3", "conv_head"])
        >>> feats["stage3"].shape, feats["conv_head"].shape        # 100 training images
        ((100, 40), (100, 1280))
    """
    names = _body_stages(backbone, stages)
    images = split if torch.is_tensor(split) else split.images
    if images.dim() != 4 or images.dtype != torch.uint8:
        raise ValueError(f"expected uint8 images (N, 3, H, W), got {images.dtype} {tuple(images.shape)}")
    model = backbone.model
    if device is not None:
        model.to(torch.device(device))
    dev = next(model.parameters()).device
    per_model = _CACHE.setdefault(model, {})
    for key in [k for k, e in per_model.items() if e.images() is None]:
        del per_model[key]  # that split's images are gone
    images_key = (images.data_ptr(), tuple(images.shape), images._version)
    weights_key = _weights_key([model.get_submodule(s) for s in backbone.body_stages])
    entry = per_model.get(id(images))
    stale = entry is None or entry.images() is not images or (entry.images_key, entry.weights_key) != (
        images_key, weights_key)
    if stale:
        entry = _Entry(weakref.ref(images), images_key, weights_key, {})
        per_model[id(images)] = entry
    missing = [s for s in names if s not in entry.features]
    if missing:
        backbone.check_input_size(int(images.shape[-1]))
        chunks: dict[str, list[torch.Tensor]] = {s: [] for s in missing}
        with torch.no_grad(), tap(model, missing, transform=backbone.pooled) as acts:
            for lo in range(0, len(images), batch_size):
                model.forward_range(backbone.normalize(images[lo : lo + batch_size].to(dev)), end=missing[-1])
                for s in missing:
                    chunks[s].append(acts[s].float().cpu())
        for s in missing:
            array = torch.cat(chunks[s]).numpy() if chunks[s] else np.zeros((0, 0), np.float32)
            array.setflags(write=False)
            entry.features[s] = array
    return {s: entry.features[s] for s in names}


# ---- linear probes ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StageProbe:
    """One stage's linear probe: accuracies on each split, feature width, and the C chosen on val."""

    stage: str
    index: int
    dim: int
    C: float
    train_acc: float
    val_acc: float
    val_loss: float
    test_acc: float


@dataclass(frozen=True)
class ProbeResult:
    """Linear-probe accuracy per stage, beside the raw-pixel baseline. ``str()`` prints a table."""

    backbone: str
    pretrained: bool
    dataset: str
    shots: int | None
    image_size: int
    baseline_test_acc: float | None
    probes: tuple[StageProbe, ...]

    @property
    def best_stage(self) -> str:
        """The stage with the best validation accuracy (ties: lower validation loss). Never chosen on test."""
        if any(np.isnan(p.val_acc) for p in self.probes):
            raise ValueError("best_stage is chosen on the val split, which is empty; load data with val_per_class > 0")
        return max(self.probes, key=lambda p: (p.val_acc, -p.val_loss)).stage

    def curve(self, split: Literal["train", "val", "test"] = "test") -> dict[str, float]:
        """Accuracy per stage on one split, in forward order: the depth curve a lesson plots."""
        if split not in ("train", "val", "test"):
            raise ValueError(f"split must be 'train', 'val' or 'test', got {split!r}")
        return {p.stage: getattr(p, f"{split}_acc") for p in self.probes}

    def to_records(self) -> list[dict]:
        """One dict per stage, with the run's context on every row (for plots and tables)."""
        context = {"backbone": self.backbone, "pretrained": self.pretrained, "dataset": self.dataset,
                   "shots": self.shots, "image_size": self.image_size, "baseline_test_acc": self.baseline_test_acc}
        return [{**dataclasses.asdict(p), **context} for p in self.probes]

    def __str__(self) -> str:
        weights = "pretrained" if self.pretrained else "random init"
        shots = f"{self.shots}-shot" if self.shots else "all data"
        lines = [f"linear probes: {self.backbone} ({weights}) on {self.dataset}, {shots}, {self.image_size} px",
                 f"{'stage':<12}{'dim':>6}{'C':>7}{'train':>8}{'val':>7}{'test':>7}"]
        best = None if any(np.isnan(p.val_acc) for p in self.probes) else self.best_stage
        for p in self.probes:
            mark = "  <- best on val" if p.stage == best else ""
            accs = f"{p.train_acc:>8.3f}{p.val_acc:>7.3f}{p.test_acc:>7.3f}"
            lines.append(f"{p.stage:<12}{p.dim:>6}{p.C:>7g}{accs}{mark}")
        if self.baseline_test_acc is not None:
            lines.append(f"raw pixels (logistic regression): test {self.baseline_test_acc:.3f}")
        return "\n".join(lines)


def probe_stages(
    backbone: Backbone,
    data: DatasetSplits,
    stages: str | Sequence[str] | None = None,
    *,
    C: float | None = None,
    baseline: bool = True,
    max_iter: int = 5000,
) -> ProbeResult:
    """Fit a linear probe (logistic regression) on each stage's pooled, standardised features.

    Why: a probe measures how linearly readable the classes are at each depth, which is what a frozen head can
    exploit. ``C`` (inverse L2 strength) is chosen per stage from :data:`C_GRID` by validation accuracy (ties:
    lower validation log-loss), never on test; pass ``C`` to fix it (with no val split sklearn's 1.0 is used).
    ``baseline`` adds ``tl_lab.data.baseline(data)["test_acc"]`` (logistic regression on raw pixels).

    Example::

        >>> result = probe_stages(load_backbone(), load_dataset("digits", shots=10))
        >>> result.curve("test")["stage5"], result.baseline_test_acc     # a mid stage beats raw pixels
        (0.90..., 0.87...)
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    names = _body_stages(backbone, stages)
    feats = {split: stage_features(backbone, getattr(data, split), names) for split in ("train", "val", "test")}
    labels = {split: _numpy(getattr(data, split).labels) for split in ("train", "val", "test")}
    if len(np.unique(labels["train"])) < 2:
        raise ValueError("the training split needs at least two classes for a probe; load more shots or classes")
    has_val = len(labels["val"]) > 0
    grid = (float(C),) if C is not None else (C_GRID if has_val else (1.0,))
    probes = []
    for stage in names:
        scaler = StandardScaler().fit(feats["train"][stage])
        x = {split: scaler.transform(feats[split][stage]) if len(labels[split]) else None for split in feats}
        best = None
        for c in grid:
            # One BLAS thread: these problems are tiny; threaded BLAS was ~50x slower on a shared 2-core machine.
            with threadpool_limits(limits=1, user_api="blas"):
                clf = LogisticRegression(C=c, max_iter=max_iter).fit(x["train"], labels["train"])
            val_acc, val_loss = _scores(clf, x["val"], labels["val"]) if has_val else (float("nan"),) * 2
            if best is None or (val_acc, -val_loss) > (best[1], -best[2]):
                best = (clf, val_acc, val_loss, c)
        clf, val_acc, val_loss, c = best
        probes.append(StageProbe(
            stage=stage, index=backbone.stages.index(stage), dim=int(feats["train"][stage].shape[1]), C=c,
            train_acc=float(clf.score(x["train"], labels["train"])), val_acc=val_acc, val_loss=val_loss,
            test_acc=_scores(clf, x["test"], labels["test"])[0] if len(labels["test"]) else float("nan"),
        ))
    base = None
    if baseline:
        from tl_lab.data import baseline as raw_pixel_baseline

        base = float(raw_pixel_baseline(data)["test_acc"])
    meta = getattr(data, "meta", None) or {}
    return ProbeResult(
        backbone=backbone.name, pretrained=bool(backbone.meta.get("pretrained", True)), dataset=data.name,
        shots=meta.get("shots"), image_size=int(data.train.images.shape[-1]), baseline_test_acc=base,
        probes=tuple(probes),
    )


def _scores(clf: Any, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Accuracy and mean log-loss (a class the probe never saw gets probability 1e-12)."""
    proba = clf.predict_proba(x)
    col = {c: i for i, c in enumerate(clf.classes_)}
    p_true = np.array([proba[i, col[t]] if t in col else 0.0 for i, t in enumerate(y)])
    acc = float(np.mean(clf.classes_[proba.argmax(1)] == y))
    return acc, float(-np.mean(np.log(np.clip(p_true, 1e-12, 1.0))))


def _numpy(x: Any) -> np.ndarray:
    return x.detach().cpu().numpy() if torch.is_tensor(x) else np.asarray(x)


# ---- cutting a network at a stage ------------------------------------------------------------------------------


def cut_at(backbone: Backbone, stage: str, num_classes: int, *, seed: int = 0) -> Backbone:
    """A new Backbone: copies of the stages up to ``stage``, then a fresh head (global pool + Linear).

    Why: when a middle stage probes best (data far from ImageNet), training on top of it beats training on the
    final features, and the smaller network is faster too. The result works with ``fit`` and every analysis here;
    the original backbone is left untouched. ``meta["cut_at"]`` records the stage.

    Example::

        >>> cut = cut_at(load_backbone(), "stage5", num_classes=10)
        >>> cut.stages
        ('stem', 'stage1', 'stage2', 'stage3', 'stage4', 'stage5', 'head')
        >>> run = fit(cut, load_dataset("digits", shots=10), plan=FreezePlan("head"), progress=False)
    """
    if stage not in backbone.body_stages:
        raise ValueError(f"cannot cut at {stage!r}; choose a body stage: {', '.join(backbone.body_stages)}")
    if not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    prefix = backbone.body_stages[: backbone.body_stages.index(stage) + 1]
    spec = backbone.spec
    size = spec.input_size if spec.fixed_input_size else max(spec.min_input_size, 64)
    shape = backbone.stage_shapes(size)[stage]

    def assemble(source: StagedModel, *, copy_modules: bool) -> StagedModel:
        take = (lambda m: copy.deepcopy(m)) if copy_modules else (lambda m: m)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            head = _new_head(shape, num_classes)
        model = StagedModel([*((s, take(source.get_submodule(s))) for s in prefix), ("head", head)])
        return model.to(next(source.parameters()).device)

    model = assemble(backbone.model, copy_modules=True)
    model.train(backbone.model.training)
    new_spec = dataclasses.replace(
        spec,
        stages=(*prefix, "head"),
        gradcam_layer=stage,
        build=lambda pretrained: assemble(spec.build(pretrained), copy_modules=False),
        description=f"{spec.description} Cut after {stage!r}, with a new linear head.",
    )
    params = {s: sum(p.numel() for p in model.get_submodule(s).parameters()) for s in new_spec.stages}
    meta = {**backbone.meta, "cut_at": stage, "num_classes": num_classes, "categories": None,
            "parameters": params, "total_parameters": sum(params.values()),
            "description": new_spec.description}
    return Backbone(name=backbone.name, model=model, stages=new_spec.stages, head="head",
                    transform=backbone.transform, input_size=backbone.input_size, meta=meta, spec=new_spec)


def _new_head(shape: tuple[int, ...], num_classes: int) -> ClassifierHead:
    if len(shape) == 3:  # (C, H, W)
        return ClassifierHead(nn.Linear(shape[0], num_classes))
    if len(shape) == 2:  # ViT tokens (T, D)
        return ClassifierHead(nn.Linear(shape[1], num_classes), pool=TokenPool())
    return ClassifierHead(nn.Linear(shape[0], num_classes), pool=nn.Identity())


# ---- 2-D embeddings --------------------------------------------------------------------------------------------


def embed(features: Any, method: Literal["pca", "tsne"] = "pca", *, seed: int = 0) -> np.ndarray:
    """Project features (N, D) to (N, 2) for a scatter plot, after standardising each feature.

    ``"pca"``: the two directions of largest variance (linear, fast, faithful to global distances). ``"tsne"``:
    t-SNE (van der Maaten & Hinton 2008, JMLR 9) keeps neighbourhoods and shows clusters, but distances between
    clusters mean little; perplexity is min(30, (N - 1) / 3), init "pca", so a seed gives the same picture.
    t-SNE runs on one thread: on a shared 2-core machine that was 4-6x faster than threaded (60 and 1000 points).

    Example::

        >>> xy = embed(stage_features(bb, data.test)["stage5"], "tsne")
        >>> xy.shape                                  # the 539 test digits
        (539, 2)
    """
    from sklearn.preprocessing import StandardScaler

    if method not in ("pca", "tsne"):
        raise ValueError(f"method must be 'pca' or 'tsne', got {method!r}")
    x = _numpy(features).astype(np.float64).reshape(len(features), -1)
    if len(x) < 3:
        raise ValueError(f"embed needs at least 3 points, got {len(x)}")
    x = StandardScaler().fit_transform(x)
    if method == "pca":
        from sklearn.decomposition import PCA

        xy = PCA(n_components=min(2, x.shape[1]), random_state=seed).fit_transform(x)
        return np.pad(xy, ((0, 0), (0, 2 - xy.shape[1]))).astype(np.float32)
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    perplexity = float(min(30.0, max(1.0, (len(x) - 1) / 3)))
    with threadpool_limits(limits=1):
        xy = TSNE(2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(x)
    return xy.astype(np.float32)
