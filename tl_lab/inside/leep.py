"""LEEP (Nguyen, Hassner, Seeger & Archambeau 2020, "LEEP: A New Measure to Evaluate Transferability of Learned
Representations", ICML, arXiv:2002.12462): how well the source classifier's own predictions, re-labelled through
the data, predict the target labels.

With ``theta(x)`` the source head's probabilities over its Z classes (ImageNet's 1000) for each of the n target
images and ``y_i`` their target labels:

- empirical joint:        P(y, z) = 1/n sum_{i: y_i = y} theta(x_i)_z
- empirical conditional:  P(y | z) = P(y, z) / sum_y' P(y', z)
- LEEP = 1/n sum_i log( sum_z P(y_i | z) theta(x_i)_z )

the mean log-likelihood of the "expected empirical predictor", a classifier built without any training. It is
always <= 0; higher = better. Needs the source head (its ImageNet probabilities), so a backbone whose head was
replaced (``num_classes=...``) cannot be scored.

Example::

    >>> y = np.repeat(np.arange(2), 5)
    >>> sharp = np.eye(4)[y * 2]                    # source classes 0 and 2 <-> target 0 and 1
    >>> leep(sharp, y), round(leep(np.full((10, 4), 0.25), y), 3)
    (0.0, -0.693)
"""

from __future__ import annotations

import numpy as np

__all__ = ["leep"]


def leep(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """LEEP from source probabilities ``theta`` (n, Z) (rows sum to 1) and target labels (n,). Higher = better."""
    theta = np.asarray(probabilities, dtype=np.float64)
    y = np.asarray(labels).reshape(-1).astype(np.int64)
    if theta.ndim != 2 or theta.shape[0] != y.shape[0]:
        raise ValueError(f"probabilities must be (n, Z) with one label per row; got {theta.shape}, {y.shape[0]} labels")
    if not np.allclose(theta.sum(1), 1.0, atol=1e-4) or (theta < 0).any():
        raise ValueError("probabilities must be non-negative rows that sum to 1 (apply softmax to the logits)")
    n = len(y)
    classes, index = np.unique(y, return_inverse=True)
    joint = np.zeros((len(classes), theta.shape[1]))
    np.add.at(joint, index, theta / n)  # P(y, z)
    marginal = joint.sum(0, keepdims=True)  # P(z)
    conditional = np.divide(joint, marginal, out=np.zeros_like(joint), where=marginal > 0)  # P(y | z)
    eep = np.einsum("nz,nz->n", theta, conditional[index])  # sum_z P(y_i | z) theta(x_i)_z
    return float(np.mean(np.log(np.maximum(eep, 1e-300))))
