"""The FewShot widget only displays: its numbers are the library's (prototypes, baseline, zero-shot); every pick ends
in a table that matches the picks shown, even with clicks faster than the raw-pixel fit; the confusion matrix's saved
widget state (what a reloaded page draws) follows the picks; errors of the background fit show in the status line."""

from __future__ import annotations

import re
import threading
from dataclasses import replace

import numpy as np
import pytest

from tl_lab.data.baseline import baseline
from tl_lab.data.datasets import load_dataset
from tl_lab.inside.prototypes import class_counts, confusion_counts, raw_pixel_accuracy, score_prototypes
from tl_lab.inside.zero_shot import DEFAULT_CLASS_MAPS, zero_shot

RAW = "Raw pixels on the same images"


def raw_cell(few) -> str:
    """The raw-pixel row's accuracy cell, as the table shows it."""
    return re.search(r"raw pixels \(same examples\)</td><td[^>]*>([^<]*)<", few.table.value).group(1)


@pytest.fixture(scope="module")
def few_digits():
    """One FewShot on digits (stage5: cheap features), shared: each test sets the picks it needs."""
    from tl_lab.widgets.few_shot import FewShot

    few = FewShot(dataset="digits", stage="stage5")
    few.wait()
    yield few
    few.wait()


@pytest.fixture
def fresh(few_digits, monkeypatch):
    """The shared widget with no picks, and the real raw-pixel fit unless a test replaces it."""
    few_digits.clear()
    few_digits.wait()
    yield few_digits
    monkeypatch.undo()
    few_digits.wait()


def pick_one_per_class(few) -> None:
    """Click the first gallery image of every class, one click at a time (as a learner does)."""
    for c in few.data.classes:
        few.toggle(c, 0)


# ---- the numbers are the library's -------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_raw_pixel_number_shown_is_the_baseline_on_the_picked_images(fresh):
    few = fresh
    few.pick_first(1)  # the first gallery image of a class is its 1-shot training image
    direct = baseline(load_dataset("digits", shots=1))["test_acc"]  # C chosen on the validation split, as always
    assert few.raw_acc == direct
    assert f"{RAW}: {direct:.3f}." in few.status.text and raw_cell(few) == f"{direct:.3f}"
    # two examples of '3': the baseline on exactly those eleven images (gallery order: class by class)
    few.toggle("3", 1)
    few.wait()
    full = few.data
    labels = full.train.labels.numpy()
    rows = [int(i) for k in range(10) for i in np.flatnonzero(labels == k)[: 2 if k == 3 else 1]]
    direct = baseline(replace(full, train=full.train.subset(rows)))["test_acc"]
    assert few.raw_acc == direct and raw_cell(few) == f"{direct:.3f}"
    assert f"Prototypes from 11 examples: test accuracy {few.accuracy:.3f}" in few.status.text


def test_the_prototype_numbers_are_score_prototypes_on_the_picked_features(fresh):
    from tl_lab.inside.prototypes import nearest_mean

    few = fresh
    few.pick_first(1)
    # against the library on the 1-shot split (features computed apart, so equal up to float rounding) ...
    assert few.accuracy == pytest.approx(nearest_mean(few.state.backbone(), load_dataset("digits", shots=1),
                                                      "stage5").test_acc)
    # ... and exactly score_prototypes on the picked gallery features, in the table, the status and the matrix
    labels = few._gallery.labels.numpy()
    rows = [int(np.flatnonzero(labels == k)[0]) for k in range(10)]
    direct = score_prototypes(few._feats["gallery"][rows], labels[rows], few._feats["test"],
                              few.data.test.labels.numpy(), 10)
    assert few.accuracy == direct.accuracy and f"test accuracy {direct.accuracy:.3f}" in few.status.text
    assert f"<td>{direct.accuracy:.3f}</td>" in few.table.value
    np.testing.assert_array_equal(few.scores.confusion, direct.confusion)
    np.testing.assert_array_equal(np.asarray(few.figure.widget.data[0].customdata), direct.confusion)


# ---- every pick ends in a table consistent with the picks shown --------------------------------------------------


def test_picks_made_during_the_raw_pixel_fit_are_not_lost_and_a_stale_result_is_never_shown(fresh, monkeypatch):
    """Issue 23: after quick clicks the table showed the raw-pixel accuracy of earlier picks beside the new ones."""
    import tl_lab.widgets.few_shot as module

    few = fresh
    gate = threading.Event()
    fitted: list[int] = []

    def slow_first_fit(data, images, labels):
        fitted.append(len(images))
        if len(fitted) == 1:
            assert gate.wait(30), "the test never released the first fit"
        return 0.5 + len(images) / 1000  # 10 picks -> 0.510, 12 -> 0.512

    monkeypatch.setattr(module, "raw_pixel_accuracy", slow_first_fit)
    shown: list[str] = []
    tables: list[str] = []

    def on_status(change):
        shown.append(change["new"])

    def on_table(change):
        tables.append(change["new"])

    few.status.line.observe(on_status, names="value")
    few.table.observe(on_table, names="value")
    try:
        pick_one_per_class(few)  # the tenth click starts the first fit, which waits for the gate
        few.toggle("3", 1)  # clicks while it runs: the fit for 11 picks is replaced by the one for 12
        few.toggle("4", 1)
        assert few.raw_acc is None and raw_cell(few) == "computing…"
        gate.set()
        few.wait()
    finally:
        gate.set()
        few.status.line.unobserve(on_status, names="value")
        few.table.unobserve(on_table, names="value")
    assert fitted == [10, 12]  # the fits in between are skipped, never the last one
    assert few.raw_acc == 0.512 and raw_cell(few) == "0.512"
    assert few.status.text.startswith("Prototypes from 12 examples") and few.status.text.endswith(f"{RAW}: 0.512.")
    assert few.counts()["3"] == 2 and few.counts()["4"] == 2
    # the first fit's result (for 10 picks) arrived after the picks changed: it never reached the page
    assert not any("0.510" in v for v in shown) and not any(">0.510<" in t for t in tables)


def test_an_error_in_the_raw_pixel_fit_shows_in_the_status_line(fresh, monkeypatch):
    import tl_lab.widgets.few_shot as module

    few = fresh

    def broken(data, images, labels):
        raise RuntimeError("the raw-pixel fit broke")

    monkeypatch.setattr(module, "raw_pixel_accuracy", broken)
    few.pick_first(1)
    assert few.status.kind == "error" and isinstance(few.raw_error, RuntimeError)
    assert few.status.text.startswith(f"Prototypes from 10 examples: test accuracy {few.accuracy:.3f}")
    assert f"{RAW} failed: RuntimeError: the raw-pixel fit broke" in few.status.text
    assert few.status.details_box.layout.display == ""  # the traceback is one click away
    assert raw_cell(few) == "failed (see the status line)"
    monkeypatch.setattr(module, "raw_pixel_accuracy", raw_pixel_accuracy)  # the next pick fits again
    few.toggle("3", 1)
    few.wait()
    assert few.status.kind == "ok" and few.raw_error is None and few.raw_acc is not None


# ---- the saved widget state follows the picks ---------------------------------------------------------------------


def test_the_confusion_matrix_saved_state_carries_the_latest_picks(fresh):
    """Issue 23: after a reload the matrix showed '7 picked' under a status of 8: the state a reloaded page draws
    (the synced traits, ``get_state()``) was the first figure's."""
    few = fresh
    few.pick_first(1)
    first = np.asarray(few.figure.widget.data[0].customdata)
    few.toggle("3", 1)
    few.wait()
    fw = few.figure.widget
    state = fw.get_state()
    trace, layout = state["_widget_data"][0], state["_widget_layout"]
    assert "Prototypes from 11 picked images" in layout["title"]["text"]
    assert not np.array_equal(first, np.asarray(fw.data[0].customdata))  # else the old state would pass below
    np.testing.assert_array_equal(np.asarray(trace["customdata"]), np.asarray(fw.data[0].customdata))
    np.testing.assert_array_equal(np.asarray(trace["z"]), np.asarray(fw.data[0].z))
    # and what it shows is this pick's confusion counts, as fractions of each true class
    np.testing.assert_array_equal(np.asarray(trace["customdata"]), few.scores.confusion)
    np.testing.assert_allclose(np.asarray(trace["z"]),
                               few.scores.confusion / few.scores.confusion.sum(axis=1, keepdims=True))
    # a class left without an example: no prototypes, and the matrix says so instead of showing the last picks
    few.toggle("3", 0)
    few.toggle("3", 1)
    state = few.figure.widget.get_state()
    assert few.accuracy is None and "still missing: 3" in few.status.text and raw_cell(few) == "-"
    assert state["_widget_layout"]["title"]["text"].startswith("No prototypes")
    assert np.asarray(state["_widget_data"][0]["customdata"]).sum() == 0


# ---- compute helpers the widget calls ----------------------------------------------------------------------------


def test_confusion_and_class_counts_against_hand_counts():
    truth = np.array([0, 0, 1, 2, 2, 2])
    pred = np.array([0, 1, 1, 2, 0, 2])
    assert confusion_counts(truth, pred, 3).tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]
    assert class_counts([0, 2, 2], 4).tolist() == [1, 0, 2, 0]
    with pytest.raises(ValueError, match="same shape"):
        confusion_counts(truth, pred[:3], 3)


def test_raw_pixel_accuracy_is_baseline_with_the_training_split_replaced():
    data = load_dataset("digits", shots=2)
    one = load_dataset("digits", shots=1)
    assert raw_pixel_accuracy(data, one.train.images, one.train.labels.numpy()) == baseline(one)["test_acc"]
    with pytest.raises(ValueError, match="one label per image: got 10 images and 3 labels"):
        raw_pixel_accuracy(data, one.train.images, np.arange(3))


# ---- zero-shot on clip art ---------------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_zero_shot_row_on_clipart_shows_a_number_with_the_default_terms(lite0):
    """Issue 23: the row said 'n/a' on clip art, with no way to give the tab terms."""
    from tl_lab.widgets.few_shot import FewShot

    few = FewShot(dataset="clipart")
    few.wait()
    direct = zero_shot(lite0, load_dataset("clipart", shots=1), DEFAULT_CLASS_MAPS["clipart"])
    assert few.zero_shot_acc == direct.test_acc and few.zero_shot_acc > 2 * (1 / 7)
    assert re.search(rf"zero-shot \(no examples\)</td><td[^>]*>{direct.test_acc:.3f}<", few.table.value)
    assert "Zero-shot terms: electronics: electronic equipment, computer (the default for clipart" in \
        few.terms_note.value


@pytest.mark.slow
def test_the_dashboard_passes_its_class_map_to_the_few_shot_tab(tmp_path, lite0):
    from tl_lab.widgets import TransferLab

    given = {"plant": ["plant.n.02", "vegetable"]}
    lab = TransferLab(dataset="clipart", shots=1, run_dir=tmp_path, class_map=given)
    few = lab.few_shot.build()
    few.wait()
    assert few.class_map == given
    assert few.zero_shot_terms == {"electronics": ("electronic equipment", "computer"),  # the default, kept
                                   "plant": ("plant.n.02", "vegetable")}
    direct = zero_shot(lite0, load_dataset("clipart", shots=1), few.zero_shot_terms)
    assert few.zero_shot_acc == direct.test_acc


@pytest.mark.slow
def test_terms_that_collect_nothing_are_named_under_the_table(lite0):
    from tl_lab.inside.zero_shot import ZeroShotTermWarning
    from tl_lab.widgets.few_shot import FewShot

    given = {"prepared_food": ["food", "cake", "candy"]}
    with pytest.warns(ZeroShotTermWarning):  # raised in the widget's thread while this waits for it
        few = FewShot(dataset="clipart", class_map=given)
        few.wait()
    assert few.zero_shot_acc is not None
    assert "Left out of prepared_food, no ImageNet class below: cake, candy." in few.terms_note.value
