"""Linear CKA against its formula (Kornblith et al. 2019), its invariances, the minibatch estimator, and what it
shows on real weights: fine-tuning Lite0 on 10-shot digits changes the late stages far more than the early ones."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tl_lab.backbones.registry import load_backbone
from tl_lab.data.datasets import load_dataset
from tl_lab.inside.cka import (
    MinibatchCKA,
    StageSimilarity,
    cka,
    cka_matrix,
    cka_minibatch,
    compare_stages,
)
from tl_lab.training.freeze import FreezePlan
from tl_lab.training.loop import fit


def reference_cka(x: np.ndarray, y: np.ndarray) -> float:
    """The paper's definition, written out: HSIC(K, L) = tr(K H L H) / (n - 1)^2 with K = X Xᵀ, L = Y Yᵀ."""
    n = len(x)
    h = np.eye(n) - np.ones((n, n)) / n
    k, l = x @ x.T, y @ y.T

    def hsic(a, b):
        return np.trace(a @ h @ b @ h) / (n - 1) ** 2

    return hsic(k, l) / np.sqrt(hsic(k, k) * hsic(l, l))


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def _orthogonal(rng, d):
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    return q


def test_cka_of_a_representation_with_itself_is_one(rng):
    x = rng.normal(size=(50, 12))
    assert cka(x, x) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("n, p, q", [(40, 5, 70), (30, 200, 300), (200, 8, 3)])  # Gram and feature-space paths
def test_cka_agrees_with_the_formula_for_different_widths(rng, n, p, q):
    x = rng.normal(size=(n, p))
    y = np.tanh(x @ rng.normal(size=(p, q))) + 0.3 * rng.normal(size=(n, q))
    assert cka(x, y) == pytest.approx(reference_cka(x, y), rel=1e-9)
    assert cka(x, y) == pytest.approx(cka(y, x), rel=1e-12)  # symmetric


def test_cka_is_invariant_to_orthogonal_maps_and_isotropic_scaling_but_not_to_general_linear_maps(rng):
    x = rng.normal(size=(100, 10))
    y = x @ rng.normal(size=(10, 16)) + 0.5 * rng.normal(size=(100, 16))
    base = cka(x, y)
    assert cka(x @ _orthogonal(rng, 10), y) == pytest.approx(base, rel=1e-9)
    assert cka(x, 7.5 * y @ _orthogonal(rng, 16)) == pytest.approx(base, rel=1e-9)
    assert cka(x + 3.0, y - 2.0) == pytest.approx(base, rel=1e-9)  # centering removes offsets
    stretch = np.diag(np.geomspace(0.05, 20, 10)) @ rng.normal(size=(10, 10))  # anisotropic, not orthogonal
    assert abs(cka(x @ stretch, y) - base) > 0.05


def test_cka_takes_torch_tensors_and_flattens_extra_dimensions(rng):
    x = rng.normal(size=(20, 4, 3, 3)).astype(np.float32)
    y = rng.normal(size=(20, 7)).astype(np.float32)
    expected = reference_cka(x.reshape(20, -1).astype(np.float64), y.astype(np.float64))
    assert cka(torch.from_numpy(x), torch.from_numpy(y)) == pytest.approx(expected, rel=1e-6)
    assert np.isnan(cka(np.ones((10, 3)), y[:10]))  # no variance: undefined, not an error
    with pytest.raises(ValueError, match="same examples"):
        cka(x, y[:10])


def test_cka_matrix_matches_pairwise_cka(rng):
    xs = [rng.normal(size=(60, d)) for d in (3, 8, 20)]
    ys = [xs[0] @ rng.normal(size=(3, 5)), rng.normal(size=(60, 4))]
    m = cka_matrix(xs, ys)
    assert m.shape == (3, 2)
    np.testing.assert_allclose(m, [[cka(x, y) for y in ys] for x in xs], rtol=1e-9)
    np.testing.assert_allclose(np.diag(cka_matrix(xs, xs)), 1.0)


def test_minibatch_cka_of_one_batch_is_the_unbiased_estimate_and_close_to_full_batch_for_large_n(rng):
    x = rng.normal(size=(64, 6))
    y = x @ rng.normal(size=(6, 9)) + rng.normal(size=(64, 9))
    assert MinibatchCKA().update(x, y).value() == pytest.approx(cka(x, y, unbiased=True), rel=1e-12)

    n = 6000
    x = rng.normal(size=(n, 30))
    y = np.tanh(x @ rng.normal(size=(30, 40)) / 3) + 0.5 * rng.normal(size=(n, 40))
    full = cka(x, y)
    streamed = cka_minibatch(zip(np.array_split(x, 12), np.array_split(y, 12)))
    assert 0.2 < full < 0.95
    assert streamed == pytest.approx(full, abs=0.02)
    acc = MinibatchCKA()
    with pytest.raises(ValueError, match="call update"):
        acc.value()
    with pytest.raises(ValueError, match="at least 4 examples"):
        acc.update(x[:3], y[:3])


def test_compare_stages_of_a_backbone_with_itself_is_one_everywhere(lite0):
    images = load_dataset("digits", shots=2).test.images
    sim = compare_stages(lite0, lite0, images, max_images=32, spatial=True, batch_size=16)
    assert type(sim) is StageSimilarity and sim.n_images == 32 and sim.per_stage.keys() == set(lite0.body_stages)
    assert sim.stages == lite0.body_stages and sim.matrix.shape == (9, 9)
    np.testing.assert_allclose(list(sim.per_stage.values()), 1.0, atol=1e-9)
    np.testing.assert_allclose(list(sim.spatial.values()), 1.0, atol=1e-9)
    np.testing.assert_allclose(sim.matrix, sim.matrix.T, atol=1e-9)
    records = sim.to_records()
    assert records[0]["stage"] == "stem" and records[0]["cka"] == pytest.approx(1.0)
    assert len(sim.matrix_records()) == 81


@pytest.mark.slow
def test_fine_tuning_changes_late_stages_more_than_early_ones(tmp_path):
    data = load_dataset("digits", shots=10)
    run = fit(load_backbone(num_classes=10), data, plan=FreezePlan.fine_tune(), epochs=3, progress=False,
              run_dir=tmp_path)
    sim = compare_stages(load_backbone(), run.backbone, data, max_images=200, names=("pretrained", "fine-tuned"))
    print(sim)
    per = [sim.per_stage[s] for s in sim.stages]
    assert sim.stages[0] == "stem" and sim.stages[-1] == "conv_head"
    assert per[0] > 0.99, "the stem barely moves when fine-tuning"
    assert per[0] - per[-1] > 0.1, "the last body stage moves most"
    assert np.mean(per[:3]) > np.mean(per[-3:])
