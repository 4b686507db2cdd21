"""LogME (You, Liu, Wang & Long 2021, "LogME: Practical Assessment of Pre-trained Models for Transfer Learning",
ICML, arXiv:2102.11005): how well a Bayesian linear model on frozen features explains the labels.

For each class c the labels become a 0/1 target ``y`` (N,) and the features ``F`` (N, D) are the regressors of
``y = F w + noise`` with prior ``w ~ N(0, 1/alpha I)`` and noise ``N(0, 1/beta)``. The evidence (marginal
likelihood) integrates ``w`` out::

    log p(y | F, alpha, beta) = D/2 log alpha + N/2 log beta - N/2 log 2 pi
                                - beta/2 ||y - F m||^2 - alpha/2 ||m||^2 - 1/2 log |A|,
    A = alpha I + beta F^T F,   m = beta A^-1 F^T y                      (the posterior mean)

which equals ``log N(y; 0, 1/beta I + 1/alpha F F^T)``. alpha and beta are set by the paper's fixed-point
iteration (MacKay's evidence maximisation, the paper's Algorithm 1)::

    gamma = sum_i beta s_i / (alpha + beta s_i)     (s_i: eigenvalues of F^T F)
    alpha = gamma / ||m||^2,   beta = (N - gamma) / ||y - F m||^2

LogME is the mean over classes of the maximised evidence divided by N: higher means the labels are easier to
explain linearly from these features, which predicts fine-tuned accuracy without training. Everything runs in
the basis of one thin SVD of F, so a score costs milliseconds after the forward pass.

Where tl_lab differs from the reference code (thuml/LogME): features are divided by their root-mean-square first
(the evidence is invariant to that scaling, and it keeps the reference's 1e-5 guards from mattering for tiny
random-init activations); the iteration runs to a relative change of 1e-6 in alpha/beta (the reference stops at
1e-3 or 11 steps); when N < D the zero eigenvalues of F^T F contribute their (D - k)/2 log alpha to log |A|, as the
paper's definition (and the reference's original ``_fit_icml``) has it.

Example::

    >>> rng = np.random.default_rng(0); y = np.repeat(np.arange(3), 20)
    >>> logme(np.eye(3)[y] + 0.1 * rng.normal(size=(60, 3)), y) > logme(rng.normal(size=(60, 3)), y)
    True
"""

from __future__ import annotations

import numpy as np

__all__ = ["logme", "logme_evidence"]


def logme(features: np.ndarray, labels: np.ndarray, *, tol: float = 1e-6, max_iter: int = 200) -> float:
    """Mean over classes of the maximised log evidence per sample (see the module docstring). Higher = better.

    ``features`` (N, D) float, ``labels`` (N,) ints in [0, C).
    """
    f, y = _check(features, labels)
    n, d = f.shape
    rms = float(np.sqrt(np.mean(f * f)))
    f = f / rms if rms > 0 else f
    u, s, _ = np.linalg.svd(f, full_matrices=False)
    keep = s > s.max(initial=0.0) * max(n, d) * np.finfo(np.float64).eps if s.size else s > 0
    u, sigma = u[:, keep], s[keep] ** 2  # eigenvalues of F^T F that are not zero
    evidences = []
    for c in np.unique(y):
        target = (y == c).astype(np.float64)
        x = u.T @ target  # target in the basis of F's left singular vectors
        alpha, beta = _fixed_point(x, float(target @ target), sigma, n, tol, max_iter)
        evidences.append(_evidence(x, float(target @ target), sigma, n, d, alpha, beta) / n)
    return float(np.mean(evidences))


def logme_evidence(features: np.ndarray, target: np.ndarray, alpha: float, beta: float) -> float:
    """``log p(target | features, alpha, beta)`` for one real-valued target (N,), by the SVD formula above."""
    f = np.asarray(features, dtype=np.float64)
    t = np.asarray(target, dtype=np.float64)
    u, s, _ = np.linalg.svd(f, full_matrices=False)
    keep = s > 0
    return _evidence(u[:, keep].T @ t, float(t @ t), s[keep] ** 2, f.shape[0], f.shape[1], alpha, beta)


def _fixed_point(x: np.ndarray, yy: float, sigma: np.ndarray, n: int, tol: float, max_iter: int) -> tuple[float, float]:
    alpha, beta = 1.0, 1.0
    x2 = x * x
    # Keep alpha/beta within 1e-10..1e10 of the largest eigenvalue: the optimum can lie at a boundary (labels fit
    # exactly when N <= rank, or features that carry nothing), where the updates would run to 0 or infinity.
    top = float(sigma.max(initial=1.0))
    lo, hi = 1e-10 * top, 1e10 * top
    for _ in range(max_iter):
        t = alpha / beta
        gamma = float(np.sum(sigma / (sigma + t)))
        m2 = float(np.sum(sigma * x2 / (sigma + t) ** 2))  # ||m||^2
        res2 = float(np.sum(x2 * (t / (sigma + t)) ** 2)) + (yy - float(x2.sum()))  # ||y - F m||^2
        alpha = max(gamma, 1e-12) / max(m2, 1e-300)
        beta = max(n - gamma, 1e-12) / max(res2, 1e-300)
        if alpha / beta > hi:
            alpha = beta * hi
        elif alpha / beta < lo:
            beta = alpha / lo
        if abs(alpha / beta - t) <= tol * t:
            break
    return alpha, beta


def _evidence(x: np.ndarray, yy: float, sigma: np.ndarray, n: int, d: int, alpha: float, beta: float) -> float:
    t = alpha / beta
    x2 = x * x
    m2 = float(np.sum(sigma * x2 / (sigma + t) ** 2))
    res2 = float(np.sum(x2 * (t / (sigma + t)) ** 2)) + max(yy - float(x2.sum()), 0.0)
    logdet_a = float(np.sum(np.log(alpha + beta * sigma))) + (d - len(sigma)) * np.log(alpha)
    return float(d / 2 * np.log(alpha) + n / 2 * np.log(beta) - n / 2 * np.log(2 * np.pi)
                 - beta / 2 * res2 - alpha / 2 * m2 - logdet_a / 2)


def _check(features: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    f = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels).reshape(-1)
    if f.ndim != 2 or f.shape[0] != y.shape[0]:
        raise ValueError(f"features must be (N, D) with one label per row; got {f.shape} and {y.shape[0]} labels")
    if not np.all(np.isfinite(f)):
        raise ValueError("features contain NaN or inf; check the backbone's input normalisation")
    return f, y.astype(np.int64)
