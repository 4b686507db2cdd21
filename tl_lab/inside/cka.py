"""How similar are two networks' representations, stage by stage? Linear centered kernel alignment (CKA).

Why: "fine-tuning barely changes the low layers" is a measurable claim. CKA compares two sets of activations for
the same images, even of different widths, and is invariant to rotations and isotropic scaling of either (so two
runs that learned the same features in a different channel order still score 1), but not to arbitrary linear
maps (Kornblith, Norouzi, Lee & Hinton 2019, "Similarity of Neural Network Representations Revisited", ICML,
arXiv:1905.00414). With K = X Xᵀ, L = Y Yᵀ and the centering matrix H = I - 11ᵀ/n::

    HSIC(K, L) = tr(K H L H) / (n - 1)²        CKA = HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L))

For activations too large to hold at once, :class:`MinibatchCKA` averages the *unbiased* HSIC estimator (Song et
al. 2012, JMLR 13) over minibatches, as Nguyen, Raghu & Kornblith 2021 ("Do Wide and Deep Networks Learn the Same
Things?", ICLR, arXiv:2010.15327) do; the biased full-batch value and the minibatch value agree for large n.

Example::

    >>> import numpy as np
    >>> x = np.random.default_rng(0).normal(size=(500, 64))
    >>> round(cka(x, x), 6), round(cka(x, 3 * x @ np.linalg.qr(np.random.randn(64, 64))[0]), 6)
    (1.0, 1.0)
    >>> data = tl_lab.load_dataset("digits", shots=10)
    >>> run = tl_lab.fit("efficientnet_lite0", data, plan=tl_lab.FreezePlan.fine_tune())   # doctest: +SKIP
    >>> sim = compare_stages(tl_lab.load_backbone(), run.backbone, data)   # doctest: +SKIP
    >>> sim.per_stage["stem"], sim.matrix.shape     # pretrained vs fine-tuned, per stage  # doctest: +SKIP
    (0.99..., (9, 9))
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from tl_lab.backbones.registry import Backbone
from tl_lab.inside.stage_features import stage_features
from tl_lab.inside.taps import tap

if TYPE_CHECKING:
    from tl_lab.data.datasets import DatasetSplits, ImageSplit

__all__ = ["MinibatchCKA", "StageSimilarity", "cka", "cka_matrix", "cka_minibatch", "compare_stages"]


def _matrix(x: Any, name: str) -> np.ndarray:
    """(N, ...) numpy or torch -> float64 (N, p); extra dimensions are flattened into features."""
    a = x.detach().cpu().double().numpy() if torch.is_tensor(x) else np.asarray(x, dtype=np.float64)
    if a.ndim < 2:
        raise ValueError(f"{name} must have shape (N, features...), got {a.shape}; add a feature axis with x[:, None]")
    return a.reshape(a.shape[0], -1)


def _pair(x: Any, y: Any, minimum: int) -> tuple[np.ndarray, np.ndarray]:
    a, b = _matrix(x, "x"), _matrix(y, "y")
    if len(a) != len(b):
        raise ValueError(f"x and y must hold the same examples (rows): got {len(a)} and {len(b)}")
    if len(a) < minimum:
        raise ValueError(f"CKA needs at least {minimum} examples, got {len(a)}")
    return a, b


def _centered_gram(a: np.ndarray) -> np.ndarray:
    c = a - a.mean(axis=0)
    return c @ c.T  # = H (a aᵀ) H


def _ratio(xy: float, xx: float, yy: float) -> float:
    denom = np.sqrt(xx * yy)
    return float(xy / denom) if denom > 0 else float("nan")  # a constant representation has no similarity


def cka(x: Any, y: Any, *, unbiased: bool = False) -> float:
    """Linear CKA between activations x (N, p…) and y (N, q…) of the same N examples; in [0, 1].

    Computed in float64, with whichever is cheaper of the feature-space form ‖Yᵀ X‖²_F / (‖Xᵀ X‖_F ‖Yᵀ Y‖_F)
    (centered columns) and the N x N Gram form; both equal the HSIC formula above. ``unbiased=True`` uses the
    unbiased HSIC estimator instead (what :class:`MinibatchCKA` averages; needs N >= 4). A representation with no
    variance (e.g. a constant feature) gives NaN.

    Example::

        >>> cka(torch.randn(100, 8), torch.randn(100, 32)) < 0.5     # unrelated features: low
        True
    """
    a, b = _pair(x, y, 4 if unbiased else 2)
    if unbiased:
        k, l = a @ a.T, b @ b.T
        return _ratio(_hsic_unbiased(k, l), _hsic_unbiased(k, k), _hsic_unbiased(l, l))
    n, p, q = len(a), a.shape[1], b.shape[1]
    if n * n * (p + q) < n * (p * q + p * p + q * q):
        k, l = _centered_gram(a), _centered_gram(b)
        return _ratio(float(np.vdot(k, l)), float(np.vdot(k, k)), float(np.vdot(l, l)))
    ac, bc = a - a.mean(axis=0), b - b.mean(axis=0)
    xy = np.linalg.norm(bc.T @ ac) ** 2
    return _ratio(xy, np.linalg.norm(ac.T @ ac) ** 2, np.linalg.norm(bc.T @ bc) ** 2)


def cka_matrix(xs: Sequence[Any], ys: Sequence[Any]) -> np.ndarray:
    """CKA of every x in ``xs`` against every y in ``ys`` (all for the same N examples): (len(xs), len(ys)).

    Each centered Gram matrix is built once and normalised, so the whole matrix costs one N x N product per entry.
    """
    grams = []
    for group in (xs, ys):
        normed = []
        for i, x in enumerate(group):
            k = _centered_gram(_matrix(x, f"representation {i}"))
            norm = np.linalg.norm(k)
            normed.append(k / norm if norm > 0 else np.full_like(k, np.nan))
        grams.append(normed)
    sizes = {len(k) for g in grams for k in g}
    if len(sizes) > 1:
        raise ValueError(f"every representation must hold the same examples (rows); got sizes {sorted(sizes)}")
    return np.array([[float(np.vdot(k, l)) for l in grams[1]] for k in grams[0]], dtype=np.float64).reshape(
        len(xs), len(ys)
    )


def _hsic_unbiased(k: np.ndarray, l: np.ndarray) -> float:
    """Song et al. 2012, eq. 5: unbiased HSIC from Gram matrices whose diagonals are ignored."""
    n = len(k)
    k, l = k.copy(), l.copy()
    np.fill_diagonal(k, 0.0)
    np.fill_diagonal(l, 0.0)
    k1, l1 = k.sum(axis=0), l.sum(axis=0)
    value = np.vdot(k, l) + k1.sum() * l1.sum() / ((n - 1) * (n - 2)) - 2.0 * np.dot(k1, l1) / (n - 2)
    return float(value / (n * (n - 3)))


class MinibatchCKA:
    """Accumulate linear CKA over minibatches: mean unbiased HSIC(X_i, Y_i) / sqrt(mean HSIC(X_i, X_i) · …(Y_i)).

    Why: spatial activations (N, C·H·W) of a whole dataset rarely fit in memory, but batches of them do. Every
    batch needs at least 4 examples; equal batch sizes weight batches equally (as in Nguyen et al. 2021).

    Example::

        >>> x = torch.randn(1024, 32, generator=torch.Generator().manual_seed(0))
        >>> y = x @ torch.randn(32, 16, generator=torch.Generator().manual_seed(1))   # a linear map of x
        >>> acc = MinibatchCKA()
        >>> for xb, yb in zip(x.split(256), y.split(256)):
        ...     _ = acc.update(xb, yb)
        >>> round(acc.value(), 2), round(cka(x.numpy(), y.numpy()), 2)   # minibatch vs full batch: they agree
        (0.55, 0.55)
    """

    def __init__(self) -> None:
        self._xy = self._xx = self._yy = 0.0
        self.batches = 0
        self.examples = 0

    def update(self, x: Any, y: Any) -> MinibatchCKA:
        a, b = _pair(x, y, 4)
        k, l = a @ a.T, b @ b.T
        self._xy += _hsic_unbiased(k, l)
        self._xx += _hsic_unbiased(k, k)
        self._yy += _hsic_unbiased(l, l)
        self.batches += 1
        self.examples += len(a)
        return self

    def value(self) -> float:
        if not self.batches:
            raise ValueError("no batches yet; call update(x_batch, y_batch) first")
        return _ratio(self._xy, self._xx, self._yy)


def cka_minibatch(batches: Iterable[tuple[Any, Any]]) -> float:
    """Linear CKA from an iterable of ``(x_batch, y_batch)`` pairs, streamed through :class:`MinibatchCKA`."""
    acc = MinibatchCKA()
    for x, y in batches:
        acc.update(x, y)
    return acc.value()


# ---- stage by stage, between two backbones ---------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class StageSimilarity:
    """CKA between two backbones on the same images.

    ``per_stage``: stage -> CKA of the pooled features of that stage in a and in b (1 = the same representation up to
    rotation and scale). ``matrix`` (len(stages_a), len(stages_b)): every stage of a against every stage of b.
    ``spatial``: stage -> minibatch CKA of the flattened (C·H·W) activations, when asked for.
    """

    names: tuple[str, str]
    stages: tuple[str, ...]
    per_stage: dict[str, float]
    stages_a: tuple[str, ...]
    stages_b: tuple[str, ...]
    matrix: np.ndarray
    spatial: dict[str, float] | None
    n_images: int

    def to_records(self) -> list[dict]:
        """One dict per compared stage: ``stage``, ``cka`` (pooled), ``cka_spatial`` (or None), ``a``, ``b``."""
        spatial = self.spatial or {}
        return [
            {"stage": s, "cka": self.per_stage[s], "cka_spatial": spatial.get(s), "a": self.names[0],
             "b": self.names[1], "n_images": self.n_images}
            for s in self.stages
        ]

    def matrix_records(self) -> list[dict]:
        """One dict per cell of ``matrix`` (``stage_a``, ``stage_b``, ``cka``), for heatmaps."""
        return [
            {"stage_a": sa, "stage_b": sb, "cka": float(self.matrix[i, j])}
            for i, sa in enumerate(self.stages_a)
            for j, sb in enumerate(self.stages_b)
        ]

    def __str__(self) -> str:
        lines = [f"CKA {self.names[0]} vs {self.names[1]} on {self.n_images} images",
                 f"{'stage':<12}{'pooled':>8}" + (f"{'spatial':>9}" if self.spatial else "")]
        for s in self.stages:
            extra = f"{self.spatial[s]:>9.3f}" if self.spatial else ""
            lines.append(f"{s:<12}{self.per_stage[s]:>8.3f}{extra}")
        return "\n".join(lines)


def compare_stages(
    model_a: Backbone,
    model_b: Backbone,
    data_or_split: DatasetSplits | ImageSplit | torch.Tensor,
    stages: Sequence[str] | None = None,
    *,
    max_images: int | None = 500,
    spatial: bool = False,
    batch_size: int = 64,
    names: tuple[str, str] | None = None,
) -> StageSimilarity:
    """CKA between two backbones, stage by stage (e.g. pretrained vs the same network after fine-tuning).

    Images: the test split of a DatasetSplits (held out from training), or the given ImageSplit / uint8 tensor,
    thinned to ``max_images`` evenly spaced images. Each backbone preprocesses them its own way. ``stages``
    (default: a's body stages) must exist in both for ``per_stage``; the ``matrix`` compares ``stages`` of a with
    b's body stages (the same names when b has them all). ``spatial=True`` adds the minibatch CKA of flattened
    spatial activations (slower: every stage's full maps, batch by batch). ``names`` labels a and b (default: from
    each backbone's meta, e.g. ``"efficientnet_lite0 (pretrained)"``).

    Example::

        >>> sim = compare_stages(tl_lab.load_backbone(), run.backbone, data)   # doctest: +SKIP
        >>> [round(sim.per_stage[s], 2) for s in sim.stages]     # falls with depth after fine-tuning  # doctest: +SKIP
        [0.99, ..., 0.8]
    """
    images = _images(data_or_split)
    if max_images is not None and len(images) > max_images:
        if max_images < 4:
            raise ValueError(f"max_images must be at least 4, got {max_images}")
        images = images[np.unique(np.linspace(0, len(images) - 1, max_images).round().astype(np.int64))]
    if len(images) < 4:
        raise ValueError(f"compare_stages needs at least 4 images, got {len(images)}")
    stages_a = tuple(stages) if stages is not None else model_a.body_stages
    stages_b = stages_a if set(stages_a) <= set(model_b.body_stages) else model_b.body_stages
    common = tuple(s for s in stages_a if s in stages_b)
    if stages is not None and not common:
        raise ValueError(
            f"none of {list(stages)} is a stage of both backbones; b's body stages: {', '.join(model_b.body_stages)}"
        )
    feats_a = stage_features(model_a, images, stages_a, batch_size=batch_size)
    feats_b = stage_features(model_b, images, stages_b, batch_size=batch_size)
    matrix = cka_matrix([feats_a[s] for s in stages_a], [feats_b[s] for s in stages_b])
    per_stage = {s: float(matrix[stages_a.index(s), stages_b.index(s)]) for s in common}
    return StageSimilarity(
        names=tuple(names) if names is not None else (_label(model_a), _label(model_b)),
        stages=common,
        per_stage=per_stage,
        stages_a=stages_a,
        stages_b=stages_b,
        matrix=matrix,
        spatial=_spatial_cka(model_a, model_b, images, common, batch_size) if spatial and common else None,
        n_images=len(images),
    )


def _images(data: Any) -> torch.Tensor:
    if torch.is_tensor(data):
        images = data
    elif hasattr(data, "test") and hasattr(data, "train"):
        images = data.test.images
    elif hasattr(data, "images"):
        images = data.images
    else:
        raise TypeError(f"expected DatasetSplits, an ImageSplit or a uint8 image tensor; got {type(data).__name__}")
    if images.dtype != torch.uint8 or images.dim() != 4:
        raise ValueError(f"expected uint8 images (N, 3, H, W), got {images.dtype} {tuple(images.shape)}")
    return images


def _label(backbone: Backbone) -> str:
    meta = backbone.meta
    weights = "pretrained" if meta.get("pretrained", True) else "random init"
    cut = f", cut at {meta['cut_at']}" if meta.get("cut_at") else ""
    return f"{backbone.name} ({weights}{cut})"


@torch.no_grad()
def _spatial_cka(a: Backbone, b: Backbone, images: torch.Tensor, stages: tuple[str, ...], batch_size: int) -> dict:
    accs = {s: MinibatchCKA() for s in stages}
    batch_size = max(batch_size, 4)
    dev_a, dev_b = (next(m.model.parameters()).device for m in (a, b))
    last_a = max(stages, key=a.stages.index)
    last_b = max(stages, key=b.stages.index)
    with tap(a.model, stages) as acts_a, tap(b.model, stages) as acts_b:
        for lo in range(0, len(images), batch_size):
            batch = images[lo : lo + batch_size]
            if len(batch) < 4:  # the unbiased estimator needs 4 examples; a tiny last batch is skipped
                break
            a.model.forward_range(a.normalize(batch.to(dev_a)), end=last_a)
            b.model.forward_range(b.normalize(batch.to(dev_b)), end=last_b)
            for s in stages:
                accs[s].update(acts_a[s].flatten(1), acts_b[s].flatten(1))
    return {s: acc.value() for s, acc in accs.items()}
