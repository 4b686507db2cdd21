"""Seeing the mistakes: run.mistakes / find_mistakes checked against predictions recomputed directly, the figures,
the label decisions file that load_dataset('folder') honours, and the cleaner and mistakes widgets."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from tl_lab.data.datasets import load_dataset
from tl_lab.data.label_fixes import (
    LABELS_FILE,
    LabelFixes,
    LabelFixesError,
    read_label_fixes,
    write_label_fixes,
)
from tl_lab.inside.mistakes import explain_mistakes, find_mistakes, top_loss_images
from tl_lab.plots.mistakes import confusion_figure, top_loss_figure
from tl_lab.plots.static import describe
from tl_lab.training.mistakes import confusion_counts, mistakes_from_logits

CLASSES = ("cat", "dog", "fox")


def _by_hand(logits: torch.Tensor, y: torch.Tensor, k: int):
    pred = logits.argmax(1)
    matrix = np.zeros((k, k), int)
    for t, p in zip(y.tolist(), pred.tolist()):
        matrix[t][p] += 1
    return pred, matrix, F.cross_entropy(logits, y, reduction="none")


def test_mistakes_match_predictions_recomputed_by_hand():
    g = torch.Generator().manual_seed(0)
    logits, y = torch.randn(40, 3, generator=g) * 2, torch.randint(0, 3, (40,), generator=g)
    m = mistakes_from_logits(logits, y, CLASSES, split="val", top=None)
    pred, matrix, losses = _by_hand(logits, y, 3)
    assert m.confusion.sum() == 40 == m.n and m.confusion.tolist() == matrix.tolist()
    assert m.accuracy == pytest.approx((pred == y).float().mean().item())
    for k, row in enumerate(m.per_class):
        mask = y == k
        assert row == {"class": CLASSES[k], "count": int(mask.sum()), "correct": int((pred[mask] == k).sum()),
                       "accuracy": pytest.approx((pred[mask] == k).float().mean().item())}
    got = [r["loss"] for r in m.top_losses]
    assert got == sorted(got, reverse=True) and len(got) == 40
    for r in m.top_losses:
        i = r["index"]
        assert r["loss"] == pytest.approx(losses[i].item(), rel=1e-6)
        assert (r["true"], r["predicted"]) == (CLASSES[y[i]], CLASSES[pred[i]])
        assert r["prob_true"] == pytest.approx(torch.exp(-losses[i]).item(), rel=1e-5)
        assert r["prob_pred"] == pytest.approx(logits[i].softmax(0).max().item(), rel=1e-6)
    counts = [c for _, _, c in m.confused_pairs]
    assert counts == sorted(counts, reverse=True) and all(t != p for t, p, _ in m.confused_pairs)
    assert sum(counts) == 40 - int(np.trace(matrix))
    assert {(t, p): c for t, p, c in m.confused_pairs} == {
        (CLASSES[t], CLASSES[p]): int(matrix[t][p]) for t in range(3) for p in range(3) if t != p and matrix[t][p]}
    assert mistakes_from_logits(logits, y, CLASSES).top_losses == m.top_losses[:12]  # default top=12
    text = m.summary()
    assert f"accuracy {m.accuracy:.3f}" in text and "most confused" in text and m.table().splitlines()[0].startswith(
        "class")


def test_mistakes_refuse_mismatched_inputs():
    with pytest.raises(ValueError, match=r"logits must be \(N, 3\) for 3 classes; got shape \(4, 2\)"):
        mistakes_from_logits(torch.zeros(4, 2), torch.zeros(4, dtype=torch.long), CLASSES)
    with pytest.raises(ValueError, match=r"targets must be \(N,\) = \(4,\)"):
        mistakes_from_logits(torch.zeros(4, 3), torch.zeros(3, dtype=torch.long), CLASSES)
    with pytest.raises(ValueError, match="top must be an int >= 0 or None"):
        mistakes_from_logits(torch.zeros(4, 3), torch.zeros(4, dtype=torch.long), CLASSES, top=-1)


def test_one_confusion_matrix_for_few_shot_and_mistakes():
    import tl_lab.inside.prototypes as prototypes

    assert prototypes.confusion_counts is confusion_counts
    assert confusion_counts([0, 1, 1], [1, 1, 0], 2).tolist() == [[0, 1], [1, 1]]
    with pytest.raises(ValueError, match=r"pred holds class indices outside \[0, 2\)"):
        confusion_counts([0, 1], [0, 2], 2)


class _Scores:
    """A classifier with ``.logits(images)`` and ``.data``, like the nearest_mean and zero_shot results."""

    def __init__(self, data, seed=0):
        self.data = data
        self._seed = seed

    def logits(self, split):
        g = torch.Generator().manual_seed(self._seed + len(split))
        return torch.randn(len(split), len(split.classes), generator=g)


def test_find_mistakes_takes_a_logits_classifier_a_split_name_or_a_function(tmp_path):
    data = load_dataset("folder", root=_folder(tmp_path / "photos", per_class=16), image_size=16, val_per_class=1)
    clf = _Scores(data)
    m = find_mistakes(clf, "test")
    pred, matrix, losses = _by_hand(clf.logits(data.test), data.test.labels, 2)
    assert m.split == "test" and m.confusion.tolist() == matrix.tolist() and m.n == len(data.test)
    assert [r["loss"] for r in m.top_losses] == pytest.approx(sorted(losses.tolist(), reverse=True)[:12], rel=1e-6)
    assert all(Path(r["file"]).parent.name == r["true"] for r in m.top_losses)  # each row names its file
    assert find_mistakes(lambda x: clf.logits(data.train), data.train).confusion.sum() == len(data.train)
    images = top_loss_images(m, data.test)
    assert torch.equal(images[0], data.test.images[m.top_losses[0]["index"]])
    with pytest.raises(ValueError, match="split must be 'train', 'val' or 'test'"):
        find_mistakes(clf, "validation")
    with pytest.raises(ValueError, match="pass data= "):
        find_mistakes(lambda x: x, "test")
    with pytest.raises(ValueError, match="explain_mistakes explains a trained run's own classes; a _Scores scores"):
        explain_mistakes(clf, m)  # prototypes and zero-shot have no output per class to attribute
    with pytest.raises(ValueError, match="unknown attribution method 'gradcam'; choose one of: saliency"):
        explain_mistakes(clf, m, method="gradcam")


# ---- figures ------------------------------------------------------------------------------------------------------


def test_figures_have_one_panel_per_image_and_map_and_a_text_alternative():
    g = torch.Generator().manual_seed(1)
    m = mistakes_from_logits(torch.randn(20, 3, generator=g), torch.randint(0, 3, (20,), generator=g), CLASSES, top=3)
    images = np.random.default_rng(0).integers(0, 255, (3, 3, 24, 24), dtype=np.uint8)
    fig = top_loss_figure(m, images, attributions=np.random.default_rng(1).random((3, 24, 24)))
    assert [t.type for t in fig.data] == ["image"] * 6 and fig.layout.width == 848
    first = m.top_losses[0]
    assert fig.layout.annotations[0].text.startswith(f"{first['true']} → {first['predicted']}")
    assert f"loss {first['loss']:.2f}" in fig.layout.annotations[0].text
    alt = describe(fig)
    assert alt.startswith("Which images does the model get most wrong?") and "6 images" in alt
    assert len(top_loss_figure(m, images).data) == 3  # without maps: the images alone
    conf = confusion_figure(m)
    assert conf.data[0].type == "heatmap" and np.asarray(conf.data[0].customdata).sum() == 20
    assert "Which classes does the model confuse?" in describe(conf)
    with pytest.raises(ValueError, match=r"attributions must be \(N, H, W\) = \(3, 24, 24\)"):
        top_loss_figure(m, images, attributions=np.zeros((3, 8, 8)))


# ---- the label decisions file ---------------------------------------------------------------------------------


def _folder(root: Path, per_class: int = 6) -> Path:
    rng = np.random.default_rng(0)
    for c, colour in (("cat", (200, 60, 60)), ("dog", (60, 60, 200))):
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            pixels = np.full((16, 16, 3), colour, np.uint8) + rng.integers(0, 40, (16, 16, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / c / f"{i}.png")
    return root


def _files(root: Path) -> list[tuple[str, bytes]]:
    return sorted((p.relative_to(root).as_posix(), p.read_bytes()) for p in root.rglob("*.png"))


def test_label_fixes_round_trip_and_are_written_the_same_twice(tmp_path):
    fixes = LabelFixes({"dog/0.png": "cat", "cat\\3.png": "dog"}, ("cat/1.png", "cat/1.png"))
    path = write_label_fixes(tmp_path, fixes)
    first = path.read_bytes()
    assert json.loads(first) == {"version": 1, "relabel": {"cat/3.png": "dog", "dog/0.png": "cat"},
                                 "leave_out": ["cat/1.png"]}
    assert read_label_fixes(tmp_path) == fixes and write_label_fixes(tmp_path, fixes).read_bytes() == first
    assert [p.name for p in tmp_path.iterdir()] == [LABELS_FILE]  # no temporary file left behind
    assert read_label_fixes(tmp_path / "nowhere") == LabelFixes() and not LabelFixes()


@pytest.mark.parametrize("text, message", [
    ("{nope", "is not valid JSON (line 1: Expecting property name enclosed in double quotes); fix that line, or "
              "delete the file to drop every decision"),
    ('{"version": 2}', "version must be 1; got 2"),
    ('{"version": 1, "remove": []}', "has unknown key(s) ['remove']; it holds only 'version', 'relabel' and "
                                     "'leave_out'"),
    ('{"version": 1, "relabel": ["dog/0.png"]}', 'relabel must map file paths (relative to the folder) to class '
                                                 'names, e.g. {"dog/img1.jpg": "cat"}; got list'),
    ('{"version": 1, "leave_out": "dog/0.png"}', 'leave_out must be a list of file paths relative to the folder, '
                                                 'e.g. ["dog/blurry.png"]; got str'),
    ('{"version": 1, "leave_out": ["../outside.png"]}', "file paths in tl_lab_labels.json are relative to the "
                                                        "folder, like 'dog/img1.jpg'; got '../outside.png'"),
    ('{"version": 1, "relabel": {"dog/0.png": "cat"}, "leave_out": ["dog/0.png"]}',
     "'dog/0.png' is both relabelled and left out; keep one decision for each file"),
])
def test_a_bad_decisions_file_is_refused_naming_the_fix(tmp_path, text, message):
    (tmp_path / LABELS_FILE).write_text(text)
    with pytest.raises(LabelFixesError) as info:
        read_label_fixes(tmp_path)
    assert str(info.value).endswith(message), str(info.value)


def test_load_dataset_honours_the_decisions_and_reports_them_without_touching_a_file(tmp_path):
    root = _folder(tmp_path / "photos")
    before = _files(root)
    plain = load_dataset("folder", root=root, image_size=16, val_per_class=1)
    assert plain.report == () and sum(map(len, (plain.train, plain.val, plain.test))) == 12
    write_label_fixes(root, LabelFixes({"dog/0.png": "cat"}, ("cat/1.png", "cat/gone.png")))
    (root / "cat" / "notes.txt").write_text("not an image")
    data = load_dataset("folder", root=root, image_size=16, val_per_class=1)
    files = data.meta["files"]
    label_of = {}
    for split in (data.train, data.val, data.test):
        for i, y in zip(split.ids.tolist(), split.labels.tolist()):
            label_of[Path(files[i]).relative_to(root).as_posix()] = data.classes[y]
    assert len(label_of) == 11 and "cat/1.png" not in label_of  # left out
    assert label_of["dog/0.png"] == "cat" and sum(c == "cat" for c in label_of.values()) == 6
    assert data.meta["label_fixes"] == {"file": LABELS_FILE, "relabelled": ["dog/0.png"], "left_out": ["cat/1.png"],
                                        "missing": ["cat/gone.png"]}
    assert [str(r) for r in data.report] == [
        f"{root / 'cat/notes.txt'}: not an image file (extension '.txt')",
        f"{root / 'dog/0.png'}: relabelled as 'cat' (was 'dog') by your {LABELS_FILE}",
        f"{root / 'cat/1.png'}: left out by your {LABELS_FILE}",
        f"{root / 'cat/gone.png'}: named in {LABELS_FILE}, but no image of that name was read (moved, renamed or "
        "unreadable); its decision is not used. Remove it from the file"]
    assert (f"your {LABELS_FILE}: 1 relabelled, 1 left out, 1 for files not found (see .report)"
            in data.summary()) and f"skipped 1 file(s); see .report, e.g. {root / 'cat/notes.txt'}" in data.summary()
    assert _files(root) == before  # nothing moved, renamed or deleted
    write_label_fixes(root, LabelFixes({"dog/0.png": "kat"}))
    with pytest.raises(LabelFixesError, match=r"relabels 'dog/0.png' as 'kat', which is not a class of this folder; "
                                              r"classes: cat, dog\. Change it to one of them"):
        load_dataset("folder", root=root, image_size=16)


# ---- the cleaner widget (a stand-in classifier: no model to run) ----------------------------------------------


def test_cleaner_saves_decisions_idempotently_and_shows_them_when_reopened(tmp_path):
    from tl_lab.widgets.cleaner import LEAVE_OUT, LabelCleaner

    root = _folder(tmp_path / "photos")
    data = load_dataset("folder", root=root, image_size=16, val_per_class=1)
    cleaner = LabelCleaner(_Scores(data), top=4)
    assert cleaner.wait(30) and cleaner.status.kind == "ok", cleaner.status.text
    expected = find_mistakes(_Scores(data), "train").top_losses[:4]
    keys = list(cleaner.menus)
    assert keys == [Path(r["file"]).relative_to(root).as_posix() for r in expected]
    relabel_key, out_key = keys[0], keys[1]
    other = "dog" if relabel_key.startswith("cat/") else "cat"
    cleaner.mark(relabel_key, other)
    cleaner.mark(out_key, LEAVE_OUT)
    first = cleaner.save().read_bytes()
    assert cleaner.save().read_bytes() == first
    assert json.loads(first) == {"version": 1, "relabel": {relabel_key: other}, "leave_out": [out_key]}
    with pytest.raises(ValueError, match="choose 'keep', 'leave out' or a class \\(cat, dog\\); got 'bird'"):
        cleaner.mark(relabel_key, "bird")
    again = LabelCleaner(_Scores(data), top=4)  # the same data: the same images, now with their saved decisions
    again.wait(30)
    assert again.decisions[relabel_key] == other and again.decisions[out_key] == LEAVE_OUT
    assert "2 decision(s) already saved" in again.status.text
    fixed = load_dataset("folder", root=root, image_size=16, val_per_class=1)
    assert fixed.meta["label_fixes"]["relabelled"] == [relabel_key] and fixed.meta["label_fixes"]["left_out"] == [out_key]
    with pytest.raises(ValueError, match="LabelCleaner cleans the labels of your own folder; this data is 'digits'"):
        LabelCleaner(replace(data, name="digits", meta={**data.meta, "kind": "embedded"}))


# ---- real classifiers (a trained run, prototypes, zero-shot) ----------------------------------------------------


@pytest.fixture(scope="module")
def digits_run():
    import tl_lab

    data = load_dataset("digits", shots=3, image_size=32)
    return tl_lab.fit("efficientnet_lite0", data, epochs=1, progress=False, save_checkpoints=False)


@pytest.mark.slow
def test_run_mistakes_match_the_runs_own_predictions(digits_run):
    run = digits_run
    m = run.mistakes("test", top=None)
    probs = run.predict(run.data.test.images)  # the run's own predictions, through another path
    y = run.data.test.labels
    assert m.n == len(y) == int(m.confusion.sum())
    assert m.confusion.tolist() == confusion_counts(y.numpy(), probs.argmax(1).numpy(), 10).tolist()
    losses = -torch.log(probs[torch.arange(len(y)), y])
    assert [r["loss"] for r in m.top_losses] == pytest.approx(sorted(losses.tolist(), reverse=True), rel=1e-4,
                                                              abs=1e-5)
    assert m.accuracy == pytest.approx(run.evaluate("test")["acc"]) == pytest.approx(run.best["test_acc"])  # kept model
    assert run.mistakes("val").split == "val" and len(run.mistakes("train", top=3).top_losses) == 3


@pytest.mark.slow
def test_prototypes_and_zero_shot_have_the_same_mistakes_call():
    import tl_lab

    bb = tl_lab.load_backbone()
    data = load_dataset("clipart", shots=1, image_size=64)
    nm = tl_lab.nearest_mean(bb, data)
    m = nm.mistakes("test")
    assert m.accuracy == pytest.approx(nm.test_acc) and m.confusion.sum() == len(data.test)
    assert m.predictions.tolist() == nm.predict(data.test).tolist()
    zs = tl_lab.zero_shot(bb, data, class_map={"electronics": ["electronic equipment", "computer"]})
    z = zs.mistakes("test")
    assert z.accuracy == pytest.approx(zs.test_acc) and z.predictions.tolist() == zs.test_predictions.tolist()
    scores = zs.scores(data.test)
    y = data.test.labels.numpy()
    by_hand = -np.log(scores[np.arange(len(y)), y] / scores.sum(1))  # cross-entropy of the renormalised scores
    assert z.top_losses[0]["loss"] == pytest.approx(by_hand.max(), rel=1e-5)
    assert find_mistakes(nm, "val").split == "val"


@pytest.mark.slow
def test_mistakes_view_shows_the_latest_run_with_attributions(digits_run):
    from tl_lab.widgets import LabState, MistakesView
    from tl_lab.widgets.snapshot import snapshot_html

    state = LabState(dataset="digits")  # the dashboard's shared state (its 9 Mistakes tab: tests/test_widgets.py)
    view = MistakesView(state=state)
    assert "no run yet" in view.run_label.value
    view.method.value = "saliency"
    state.add_run(digits_run)  # a run trained in the Train tab: the view follows it
    assert view.wait(120) and view.status.kind == "ok", view.status.text
    m = view.mistakes
    assert m.accuracy == pytest.approx(digits_run.evaluate("test")["acc"])
    gallery = view.gallery.figure
    assert [t.type for t in gallery.data].count("image") == 2 * len(m.top_losses)
    assert "Saliency" in gallery.layout.title.text and view.confusion.figure.data[0].type == "heatmap"
    assert f"{m.per_class[0]['correct']:,}" in view.table.value
    snap = snapshot_html(view)
    assert "tl-plotly" in snap and "Which images does the model get most wrong?" in snap
    view.method.value = "none"
    view.wait(60)
    assert [t.type for t in view.gallery.figure.data].count("image") == len(m.top_losses)


@pytest.mark.slow
def test_cleaner_of_a_run_trained_on_the_folder_shows_its_highest_training_losses(tmp_path):
    import tl_lab
    from tl_lab.widgets.cleaner import LabelCleaner

    root = _folder(tmp_path / "photos", per_class=5)
    data = load_dataset("folder", root=root, image_size=32, val_per_class=1)
    run = tl_lab.fit("efficientnet_lite0", data, epochs=1, progress=False, save_checkpoints=False)
    cleaner = LabelCleaner(run, top=3)
    assert cleaner.wait(60) and cleaner.status.kind == "ok", cleaner.status.text
    expected = run.mistakes("train", top=3).top_losses  # the run's own training losses, highest first
    assert list(cleaner.menus) == [Path(r["file"]).relative_to(root).as_posix() for r in expected]
    assert all(v == "keep" for v in cleaner.decisions.values()) and not (root / LABELS_FILE).exists()
