"""Nearest class mean (Snell et al. 2017; SimpleShot's CL2N, Wang et al. 2019) against a direct numpy version."""

from __future__ import annotations

import numpy as np
import pytest

from tl_lab.data.datasets import load_dataset
from tl_lab.inside.prototypes import fit_prototypes, nearest_mean
from tl_lab.inside.stage_features import stage_features


def reference_predict(train: np.ndarray, labels: np.ndarray, test: np.ndarray, k: int) -> np.ndarray:
    """SimpleShot CL2N + nearest centroid, written out with loops from the paper's definition."""
    mu = train.mean(axis=0)
    def z(v):
        c = v - mu
        return c / np.sqrt((c * c).sum())
    centroids = [np.mean([z(train[i]) for i in range(len(train)) if labels[i] == c], axis=0) for c in range(k)]
    out = []
    for v in test:
        d = [float(((z(v) - centroids[c]) ** 2).sum()) for c in range(k)]
        out.append(int(np.argmin(d)))
    return np.array(out)


def test_prototypes_match_a_direct_implementation_on_synthetic_data():
    rng = np.random.default_rng(0)
    k, d = 4, 16
    centres = rng.normal(size=(k, d)) * 2 + 5  # far from the origin: centring matters
    labels = np.repeat(np.arange(k), 3)
    train = centres[labels] + rng.normal(size=(len(labels), d))
    test_labels = rng.integers(0, k, 200)
    test = centres[test_labels] + rng.normal(size=(200, d)) * 1.5
    p = fit_prototypes(train, labels, k)
    np.testing.assert_allclose(p.mean, train.mean(axis=0))
    np.testing.assert_allclose(np.linalg.norm(p.transform(test), axis=1), 1.0)
    pred = p.predict(test)
    assert np.array_equal(pred, reference_predict(train, labels, test, k))
    assert (pred == test_labels).mean() > 0.8
    # without CL2N it is the plain nearest mean: compare with squared distances to the raw class means
    raw = fit_prototypes(train, labels, k, center=False, normalize=False)
    means = np.stack([train[labels == c].mean(axis=0) for c in range(k)])
    assert np.array_equal(raw.predict(test), ((test[:, None] - means[None]) ** 2).sum(2).argmin(1))


def test_prototypes_refuse_a_class_without_examples():
    with pytest.raises(ValueError, match=r"classes \[2\] have none"):
        fit_prototypes(np.eye(3), np.array([0, 1, 1]), 3)


def test_nearest_mean_on_digits_uses_the_cached_stage_features(lite0):
    data = load_dataset("digits", shots=5)
    nm = nearest_mean(lite0, data, "stage5")
    feats = stage_features(lite0, data.train, ["stage5"])["stage5"]
    test = stage_features(lite0, data.test, ["stage5"])["stage5"]
    expected = reference_predict(feats.astype(np.float64), data.train.labels.numpy(), test.astype(np.float64), 10)
    assert nm.test_acc == pytest.approx((expected == data.test.labels.numpy()).mean())
    assert nm.test_acc > 0.5 and nm.prototypes.centroids.shape == (10, 112)
    assert np.array_equal(nm.predict(data.test.images[:7]), expected[:7])
    assert nearest_mean(lite0, data).stage == "conv_head"
    with pytest.raises(ValueError, match=r"unknown stage 'head'; choose a body stage: stem, stage1"):
        nearest_mean(lite0, data, "head")


@pytest.mark.slow
def test_the_few_shot_widget_matches_nearest_mean_and_updates_from_cached_features():
    import time

    from tl_lab.widgets.few_shot import FewShot

    few = FewShot(dataset="digits", stage="stage5")
    few.wait()
    assert few.accuracy is None and "still missing: 0, 1" in few.status.text
    assert few.zero_shot_acc is None and few.zero_shot_note == "ImageNet has no class that is a digit"
    few.pick_first(1)  # the first gallery image of a class is its 1-shot training image
    data = load_dataset("digits", shots=1)
    assert few.accuracy == pytest.approx(nearest_mean(few.state.backbone(), data, "stage5").test_acc)
    assert few.raw_acc is not None and "Raw pixels on the same images: 0." in few.status.text
    start = time.perf_counter()
    few.toggle("3", 1)
    assert time.perf_counter() - start < 1.0 and few.counts()["3"] == 2 and few.counts()["4"] == 1
    # an uploaded image joins the class chosen beside the Upload button, resized to the dataset's size
    import io

    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(data.test.images[0].permute(1, 2, 0).numpy()).resize((200, 150)).save(buf, format="PNG")
    few.upload_class.value = "7"
    few._on_upload({"new": [{"name": "my_seven.png", "content": buf.getvalue()}]})
    assert few.counts()["7"] == 2 and few._uploads[0][1].shape == (3, 64, 64)
    with pytest.raises(ValueError, match=r"could not read 'notes.txt' as an image"):
        few._on_upload({"new": [{"name": "notes.txt", "content": b"hello"}]})
    few.wait()


@pytest.mark.slow
def test_the_dashboard_builds_its_few_shot_tab_when_first_shown(tmp_path):
    from tl_lab.widgets import FewShot, TransferLab

    lab = TransferLab(dataset="digits", shots=5, run_dir=tmp_path)
    assert lab.tabs.get_title(6) == "7 Few-shot" and lab.few_shot.widget is None  # nothing computed yet
    lab.tabs.selected_index = 6
    few = lab.few_shot.widget
    assert isinstance(few, FewShot) and few.state is lab.state and lab.few_shot.children == (few,)
    few.wait()
    assert few.data.name == "digits" and lab.few_shot.build() is few
