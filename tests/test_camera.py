"""Camera capture and live classification without a browser: frames into class folders, checks, undo, replies.

The browser half (getUserMedia, the fake camera, the messages) is tests/browser/test_camera.py.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from tl_lab.data.capture import CaptureFolder, InvalidFrameError, check_class_name, decode_frame, top_k


def frame(color=(200, 30, 30), size=32, fmt="JPEG") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), color).save(buf, format=fmt)
    return buf.getvalue()


# ---- class names --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, fragment", [
    ("", "the class name is empty"),
    ("   ", "the class name is empty"),
    ("../x", "contains '/'"),
    ("a/b", "contains '/'"),
    ("..\\x", "contains '\\\\'"),
    ("..", "starts with '.'"),
    (".hidden", "starts with '.'"),
    ("__MACOSX", "tool folder name"),
    ("train", "reserved: load_dataset reads folders named train, val and test as splits"),
    ("Test", "reserved"),
    ("a\x00b", "control character"),
    ("x" * 81, "keep it under 80"),
])
def test_bad_class_names_are_refused_with_the_reason(name, fragment):
    with pytest.raises(ValueError) as err:
        check_class_name(name)
    assert fragment in str(err.value)


def test_class_names_are_trimmed_and_kept():
    assert check_class_name("  my cup ") == "my cup"
    assert check_class_name("Ünïcode-_1") == "Ünïcode-_1"


def test_a_bad_class_name_writes_nothing(tmp_path):
    folder = CaptureFolder(tmp_path / "photos")
    with pytest.raises(ValueError, match="contains '/'"):
        folder.save("../escape", frame())
    assert not (tmp_path / "escape").exists() and not (tmp_path / "photos").exists()


# ---- frames -------------------------------------------------------------------------------------------------------

def test_frames_land_in_class_folders_as_valid_images_with_unique_names(tmp_path):
    folder = CaptureFolder(tmp_path)
    paths = [folder.save("a", frame((10 * i, 0, 0))) for i in range(3)] + [folder.save("b", frame(fmt="PNG"))]
    assert [p.parent for p in paths] == [tmp_path / "a"] * 3 + [tmp_path / "b"]
    assert len({p.name for p in paths}) == 4
    assert [p.suffix for p in paths] == [".jpg"] * 3 + [".png"]
    for p in paths:
        with Image.open(p) as im:
            im.load()
            assert im.size == (32, 32)
    assert Image.open(paths[3]).convert("RGB").getpixel((5, 5)) == (200, 30, 30)  # PNG: the exact pixels
    assert folder.counts() == {"a": 3, "b": 1}
    assert not [p for p in tmp_path.rglob("*") if p.name.startswith(".")]  # no temporary file left behind


def test_the_same_bytes_twice_are_two_files(tmp_path):
    folder = CaptureFolder(tmp_path)
    data = frame()
    a, b = folder.save("a", data), folder.save("a", data)
    assert a != b and a.read_bytes() == b.read_bytes() == data


@pytest.mark.parametrize("data, fragment", [
    (b"", "empty frame"),
    (b"not an image at all", "not a valid image"),
    (frame()[:200], "not a valid image"),  # a truncated JPEG
    (frame(size=4), "only 4x4 pixels"),
    (frame(fmt="GIF"), "is a GIF image; the camera widget sends PNG or JPEG"),
])
def test_corrupt_or_odd_frames_are_refused_and_not_written(tmp_path, data, fragment):
    folder = CaptureFolder(tmp_path)
    with pytest.raises(InvalidFrameError) as err:
        folder.save("a", data)
    assert fragment in str(err.value)
    assert not (tmp_path / "a").exists() or not any((tmp_path / "a").iterdir())


def test_decode_frame_gives_rgb():
    im = decode_frame(frame(fmt="PNG"))
    assert im.mode == "RGB" and np.asarray(im)[0, 0].tolist() == [200, 30, 30]


def test_undo_deletes_only_what_this_folder_wrote_newest_first(tmp_path):
    (tmp_path / "a").mkdir()
    own = tmp_path / "a" / "my_photo.png"
    own.write_bytes(frame(fmt="PNG"))
    folder = CaptureFolder(tmp_path)
    first, second = folder.save("a", frame()), folder.save("b", frame())
    assert folder.counts() == {"a": 2, "b": 1}
    assert folder.undo() == second and not second.exists()
    first.unlink()  # the learner deleted it by hand: nothing of theirs is undone instead
    assert folder.undo() is None
    assert own.exists() and folder.counts() == {"a": 1, "b": 0}


def test_counts_follow_what_load_dataset_reads(tmp_path):
    folder = CaptureFolder(tmp_path)
    for _ in range(2):
        folder.save("cat", frame())
    folder.save("dog", frame())
    (tmp_path / "dog" / "notes.txt").write_text("x")
    (tmp_path / ".ipynb_checkpoints").mkdir()
    assert folder.counts(["bird"]) == {"bird": 0, "cat": 2, "dog": 1}
    from tl_lab.data.imagefiles import scan_class_folders

    scan = scan_class_folders(tmp_path)
    assert scan.classes == ("cat", "dog") and len(scan.files) == 3


def test_top_k_against_a_sort():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(7))
    names = [f"c{i}" for i in range(7)]
    expected = sorted(zip(names, probs.tolist()), key=lambda t: -t[1])[:3]
    assert top_k(probs, names, k=3) == expected
    assert top_k([0.5, 0.5], ["x", "y"], k=5) == [("x", 0.5), ("y", 0.5)]
    with pytest.raises(ValueError, match="3 probabilities for 2 classes"):
        top_k([0.1, 0.2, 0.7], ["a", "b"])


# ---- the widgets' Python side (messages as the browser sends them) ------------------------------------------------

class Sent:
    def __init__(self, widget):
        self.messages = []
        widget.send = lambda content, buffers=None: self.messages.append(content)


def test_capture_widget_messages_save_undo_and_report(tmp_path):
    from tl_lab.widgets.camera import CameraCapture
    from tl_lab.widgets.snapshot import snapshot_html

    cam = CameraCapture(tmp_path, classes=["a"])
    sent = Sent(cam)
    for _ in range(3):
        cam._on_message(cam, {"type": "capture", "class_name": "a"}, [memoryview(frame())])
    cam._on_message(cam, {"type": "add-class", "name": " b "}, [])
    for _ in range(2):
        cam._on_message(cam, {"type": "capture", "class_name": "b"}, [frame(fmt="PNG")])
    cam._on_message(cam, {"type": "undo"}, [])
    assert cam.counts == {"a": 3, "b": 1} and cam.classes == ["a", "b"] and cam.current_class == "b"
    assert [m["type"] for m in sent.messages] == ["saved"] * 3 + ["class-added"] + ["saved"] * 2 + ["undone"]
    assert sent.messages[2]["count"] == 3 and sent.messages[-1]["file"].startswith("b/cam-")
    cam._on_message(cam, {"type": "capture", "class_name": "../x"}, [frame()])
    cam._on_message(cam, {"type": "capture", "class_name": "a"}, [b"junk"])
    assert [m["type"] for m in sent.messages[-2:]] == ["capture-failed"] * 2
    assert "contains '/'" in sent.messages[-2]["message"] and "not a valid image" in cam.message
    assert cam.counts == {"a": 3, "b": 1}
    snap = snapshot_html(cam)
    assert "<td>a</td><td style=\"text-align:right\">3</td>" in snap
    assert snap.count('alt="last frame captured for') == 4  # the undone frame's thumbnail went with it


def test_capture_widget_offers_existing_class_folders(tmp_path):
    from tl_lab.widgets.camera import CameraCapture

    (tmp_path / "zebra").mkdir()
    (tmp_path / "zebra" / "z.png").write_bytes(frame(fmt="PNG"))
    cam = CameraCapture(tmp_path, classes=["cat"])
    assert cam.classes == ["cat", "zebra"] and cam.counts == {"cat": 0, "zebra": 1}
    with pytest.raises(ValueError, match="reserved"):
        CameraCapture(tmp_path, classes=["train"])


class _StubData:
    classes = ("cat", "dog", "owl", "yak")
    image_size = 16


class _StubRun:
    """The part of a Run the classifier uses: predict on a PIL image -> (1, classes) probabilities."""
    data, tasks, label = _StubData(), None, "stub"

    def predict(self, image):
        import torch

        assert image.size == (32, 32)
        red = np.asarray(image)[..., 0].mean() / 255
        return torch.tensor([[0.1, red, 0.2, 0.05]]).softmax(1)


def test_classifier_replies_with_the_top_classes_of_the_run():
    from tl_lab.widgets.camera import CameraClassifier

    clf = CameraClassifier(_StubRun())
    assert clf.size == 16 and clf.mode == "classify"
    sent = Sent(clf)
    clf._on_message(clf, {"type": "classify", "id": 7}, [frame((255, 0, 0), fmt="PNG")])
    assert clf.wait(10)
    import torch

    p = torch.tensor([0.1, 1.0, 0.2, 0.05]).softmax(0).tolist()
    (reply,) = sent.messages
    assert reply["type"] == "prediction" and reply["id"] == 7
    assert [n for n, _ in reply["top"]] == ["dog", "owl", "cat"]
    assert [v for _, v in reply["top"]] == pytest.approx([p[1], p[2], p[0]])
    clf._on_message(clf, {"type": "classify", "id": 8}, [b"junk"])
    assert clf.wait(10)
    assert sent.messages[-1]["type"] == "error" and "not a valid image" in sent.messages[-1]["message"]


def test_classifier_refuses_a_multitask_run():
    from tl_lab.widgets.camera import CameraClassifier

    class Multi(_StubRun):
        tasks = object()

    with pytest.raises(ValueError, match="multi-task run"):
        CameraClassifier(Multi())


@pytest.mark.slow
def test_classifier_with_a_real_run_matches_run_predict():
    """The live view's answer is the run's own predict on the decoded frame (embedded Lite0, a one-epoch fit)."""
    import torch

    import tl_lab
    from tl_lab.widgets.camera import CameraClassifier

    torch.manual_seed(0)
    data = tl_lab.load_dataset("digits", shots=2, image_size=32)
    run = tl_lab.fit("efficientnet_lite0", data, epochs=1, progress=False, save_checkpoints=False)
    clf = CameraClassifier(run)
    assert clf.size == 32
    pixels = (data.test.images[0].permute(1, 2, 0).numpy()).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    top = clf.classify(buf.getvalue())
    probs = run.predict(data.test.images[:1])[0]
    best = probs.argsort(descending=True)[:3].tolist()
    assert [n for n, _ in top] == [data.classes[i] for i in best]
    assert [v for _, v in top] == pytest.approx(probs[best].tolist(), abs=1e-5)
