"""2-D projections of features (PCA, t-SNE) for scatter plots."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from tl_lab.inside.probes import _numpy

# ---- 2-D embeddings --------------------------------------------------------------------------------------------


def embed(features: Any, method: Literal["pca", "tsne"] = "pca", *, seed: int = 0) -> np.ndarray:
    """Project features (N, D) to (N, 2) for a scatter plot, after standardising each feature.

    ``"pca"``: the two directions of largest variance (linear, fast, faithful to global distances). ``"tsne"``:
    t-SNE (van der Maaten & Hinton 2008, JMLR 9) keeps neighbourhoods and shows clusters, but distances between
    clusters mean little; perplexity is min(30, (N - 1) / 3), init "pca", so a seed gives the same picture.
    t-SNE runs on one thread: on a shared 2-core machine that was 4-6x faster than threaded (60 and 1000 points).

    Example::

        >>> from tl_lab.inside.stage_features import stage_features
        >>> bb, data = tl_lab.load_backbone(), tl_lab.load_dataset("digits", shots=10)
        >>> xy = embed(stage_features(bb, data.train)["stage5"], "tsne")
        >>> xy.shape                                  # the 100 training digits
        (100, 2)
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
