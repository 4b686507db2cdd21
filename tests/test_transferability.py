"""Transferability scores: LogME and LEEP against direct implementations of their definitions, obvious orderings,
the real backbones on embedded data, and errors that name the fix."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from tl_lab.inside.leep import leep
from tl_lab.inside.logme import logme, logme_evidence
from tl_lab.inside.transferability import transferability

# ---- LogME against its definition --------------------------------------------------------------------------------


def _logme_direct(f: np.ndarray, y: np.ndarray) -> float:
    """LogME straight from You et al. 2021: per class, MacKay's fixed-point updates with explicit matrices (A, its
    inverse, the posterior mean), then the evidence as the Gaussian marginal log N(y; 0, I/beta + F F^T/alpha)
    with an explicit N x N covariance. Slow; for a few dozen samples only."""
    n, d = f.shape
    gram = f.T @ f
    evidences = []
    for c in sorted(set(y.tolist())):
        t = np.array([1.0 if label == c else 0.0 for label in y])
        alpha, beta = 1.0, 1.0
        for _ in range(500):
            a = alpha * np.eye(d) + beta * gram
            a_inv = np.linalg.inv(a)
            m = beta * a_inv @ f.T @ t
            gamma = d - alpha * np.trace(a_inv)  # = sum_i beta s_i / (alpha + beta s_i)
            new_alpha = gamma / float(m @ m)
            new_beta = (n - gamma) / float(np.sum((t - f @ m) ** 2))
            done = abs(new_alpha / new_beta - alpha / beta) <= 1e-9 * alpha / beta
            alpha, beta = new_alpha, new_beta
            if done:
                break
        cov = np.eye(n) / beta + f @ f.T / alpha
        _, logdet = np.linalg.slogdet(cov)
        log_marginal = -0.5 * (n * math.log(2 * math.pi) + logdet + t @ np.linalg.solve(cov, t))
        evidences.append(log_marginal / n)
    return float(np.mean(evidences))


@pytest.mark.parametrize(("n", "d"), [(40, 6), (24, 50)])  # more samples than features, and fewer (as in practice)
def test_logme_matches_the_direct_definition(n, d):
    rng = np.random.default_rng(n + d)
    y = np.arange(n) % 3
    f = np.eye(3)[y] @ rng.normal(size=(3, d)) + rng.normal(size=(n, d))
    assert logme(f, y) == pytest.approx(_logme_direct(f, y), rel=1e-6, abs=1e-7)


def test_logme_evidence_is_the_gaussian_marginal_likelihood():
    rng = np.random.default_rng(1)
    f, t = rng.normal(size=(15, 30)), rng.normal(size=15)
    alpha, beta = 0.7, 2.5
    cov = np.eye(15) / beta + f @ f.T / alpha
    direct = -0.5 * (15 * math.log(2 * math.pi) + np.linalg.slogdet(cov)[1] + t @ np.linalg.solve(cov, t))
    assert logme_evidence(f, t, alpha, beta) == pytest.approx(direct, rel=1e-9)


def test_logme_is_invariant_to_feature_scale_and_ranks_informative_features_first():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(4), 10)
    informative = np.eye(4)[y] @ rng.normal(size=(4, 16)) + 0.3 * rng.normal(size=(40, 16))
    weak = np.eye(4)[y] @ rng.normal(size=(4, 16)) + 3.0 * rng.normal(size=(40, 16))
    noise = rng.normal(size=(40, 16))
    assert logme(informative, y) > logme(weak, y) > logme(noise, y)
    assert logme(informative * 1e-9, y) == pytest.approx(logme(informative, y), rel=1e-9)


# ---- LEEP against its definition ---------------------------------------------------------------------------------


def _leep_direct(theta: np.ndarray, y: np.ndarray) -> float:
    """Nguyen et al. 2020, eqs. (1)-(2), with loops: joint P(y, z), marginal P(z), conditional P(y|z), then the mean
    log of the expected empirical prediction."""
    n, z_count = theta.shape
    labels = sorted(set(y.tolist()))
    joint = {(yy, z): sum(theta[i, z] for i in range(n) if y[i] == yy) / n for yy in labels for z in range(z_count)}
    marginal = {z: sum(joint[(yy, z)] for yy in labels) for z in range(z_count)}
    total = 0.0
    for i in range(n):
        eep = sum(joint[(y[i], z)] / marginal[z] * theta[i, z] for z in range(z_count))
        total += math.log(eep)
    return total / n


def test_leep_matches_the_direct_definition():
    rng = np.random.default_rng(0)
    y = np.array([0, 0, 1, 1, 1, 2, 2, 0, 2, 1])
    theta = rng.dirichlet(np.ones(7), size=10)
    assert leep(theta, y) == pytest.approx(_leep_direct(theta, y), rel=1e-12)


def test_leep_ranks_label_determined_predictions_first_and_has_known_extremes():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 8)
    determined = np.eye(6)[y * 2] * 0.9 + 0.1 / 6  # each target class lights up its own source class
    noisy = rng.dirichlet(np.ones(6), size=24)
    assert leep(determined, y) > leep(noisy, y) >= math.log(1 / 3) - 1e-9
    assert leep(np.eye(6)[y * 2], y) == 0.0  # a perfect re-labelling
    assert leep(np.full((24, 6), 1 / 6), y) == pytest.approx(math.log(1 / 3))  # uninformative: the prior
    with pytest.raises(ValueError, match="apply softmax"):
        leep(np.ones((24, 6)), y)


# ---- on real backbones and embedded data -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def clipart():
    from tl_lab.data.datasets import load_dataset

    return load_dataset("clipart", shots=5, image_size=64, val_per_class=5)


def test_pretrained_lite0_scores_above_its_random_init_on_clipart(lite0, clipart):
    """Measured (5 shots, 64 px): LogME -0.34 vs -0.41, LEEP -0.25 vs -1.95 (= log 1/7), probe 0.46 vs 0.20."""
    from tl_lab.backbones.registry import load_backbone

    random_init = load_backbone("efficientnet_lite0", pretrained=False)
    scores = {m: (transferability(lite0, clipart, m), transferability(random_init, clipart, m))
              for m in ("logme", "leep", "probe")}
    for metric, (pretrained, random) in scores.items():
        assert isinstance(pretrained, float) and pretrained > random, (metric, scores)
    assert scores["leep"][0] <= 0.0 and scores["leep"][1] == pytest.approx(math.log(1 / 7), abs=0.02)
    assert 0.0 <= scores["probe"][1] <= 1.0


def test_leep_by_name_uses_the_imagenet_head_from_the_cached_features(lite0, clipart):
    """The head applied to the pooled features equals the full network's output (global average pooling)."""
    import torch

    from tl_lab.inside.transferability import source_probabilities

    probs = source_probabilities(lite0, clipart.train.images[:6])
    lite0.model.eval()
    with torch.no_grad():
        full = torch.softmax(lite0.model(lite0.normalize(clipart.train.images[:6])).double(), 1).numpy()
    assert probs.shape == (6, 1000) and np.allclose(probs, full, atol=1e-5)
    assert transferability("efficientnet_lite0", clipart, "leep") == pytest.approx(
        transferability(lite0, clipart, "leep"), abs=1e-9)


def test_errors_name_the_fix(lite0, clipart):
    from tl_lab.backbones.registry import load_backbone
    from tl_lab.data.datasets import load_dataset

    with pytest.raises(ValueError, match=r"unknown metric 'h_score'; choose one of: logme, leep, probe"):
        transferability(lite0, clipart, "h_score")
    one_class = dataclasses.replace(clipart, train=clipart.train.subset(np.flatnonzero(clipart.train.labels == 0)))
    with pytest.raises(ValueError, match="at least two classes in the training split"):
        transferability(lite0, one_class, "logme")
    one_shot = load_dataset("clipart", shots=1, image_size=64)
    with pytest.raises(ValueError, match=r"at least two training images per class; .*load the data with shots >= 2"):
        transferability(lite0, one_shot, "logme")
    new_head = load_backbone("efficientnet_lite0", num_classes=7)
    with pytest.raises(ValueError, match=r"LEEP needs the source head's ImageNet probabilities.*num_classes=None"):
        transferability(new_head, clipart, "leep")
    no_val = dataclasses.replace(clipart, val=clipart.val.subset([]))
    with pytest.raises(ValueError, match="val_per_class > 0"):
        transferability(lite0, no_val, "probe")
