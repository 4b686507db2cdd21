"""Tests for tl_lab.data: splits, determinism, the embedded sets, a learner's messy folder, offline errors."""

from __future__ import annotations

import dataclasses
import io
import json
import struct
import urllib.error
import urllib.request
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tl_lab.data import imagefiles, sources
from tl_lab.data.baseline import baseline
from tl_lab.data.datasets import ImageSplit, list_datasets, load_dataset
from tl_lab.data.sources import DatasetUnavailableError

OFFLINE = ("clipart", "digits", "shapes", "textures")


def _ids(split: ImageSplit) -> set[int]:
    return set(split.ids.tolist())


# ---- registry and the in-memory format ---------------------------------------------------------------------------


def test_list_datasets_names_every_kind():
    names = list_datasets()
    for name in (*OFFLINE, "folder", "flowers102", "oxford_pets", "cifar10", "eurosat", "dtd"):
        assert name in names


def test_unknown_dataset_and_option_name_the_fix():
    with pytest.raises(ValueError, match="choose one of: clipart"):
        load_dataset("clipartt")
    with pytest.raises(TypeError, match="options for 'digits': test_fraction"):
        load_dataset("digits", per_class=3)
    with pytest.raises(ValueError, match="takes no root"):
        load_dataset("digits", root="/tmp")


@pytest.mark.parametrize("name", OFFLINE)
def test_tensors_have_documented_shapes_and_dtypes(name):
    data = load_dataset(name, shots=2)
    assert data.name == name and len(data.train) == 2 * len(data.classes)  # exactly 2 shots per class
    size = {"clipart": 128}.get(name, 64)
    assert data.image_size == size
    for split in (data.train, data.val, data.test):
        assert split.images.dtype == torch.uint8 and split.images.shape[1:] == (3, size, size)
        assert split.labels.dtype == torch.int64 and split.labels.shape == (len(split),)
        assert split.classes == data.classes
    x, y = data.train[0]
    assert x.dtype == torch.float32 and x.shape == (3, size, size)
    assert type(y) is int and y == int(data.train.labels[0])
    torch.testing.assert_close(x, data.train.images[0].float() / 255, rtol=0, atol=0)  # pixels / 255, exactly
    assert (data.train.masks is not None) == (name == "shapes")


def test_image_size_resizes_embedded_sets():
    data = load_dataset("clipart", shots=1, image_size=224)
    assert data.train.images.shape[-2:] == (224, 224) and data.image_size == 224
    assert load_dataset("digits", shots=1, image_size=32).test.images.shape[-1] == 32


def test_image_split_helpers_and_validation():
    split = load_dataset("shapes", shots=3).train
    assert split.counts() == {c: 3 for c in split.classes}
    sub = split.subset([4, 0])
    assert torch.equal(sub.images[1], split.images[0]) and torch.equal(sub.masks[0], split.masks[4])
    assert sub.ids.tolist() == [split.ids[4].item(), split.ids[0].item()]
    with pytest.raises(ValueError, match="uint8"):
        ImageSplit(split.images.float(), split.labels, split.classes)
    with pytest.raises(ValueError, match="labels must lie"):
        ImageSplit(split.images, split.labels + 10, split.classes)


# ---- splits ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", OFFLINE)
@pytest.mark.parametrize("shots", [1, 5])
def test_exact_shots_per_class(name, shots):
    data = load_dataset(name, shots=shots, seed=3)
    assert data.train.counts() == {c: shots for c in data.classes}
    assert data.meta["shots"] == shots and data.meta["seed"] == 3
    assert data.meta["counts"]["train"] == data.train.counts()


@pytest.mark.parametrize("name", OFFLINE)
def test_train_val_test_are_disjoint_and_test_is_fixed(name):
    reference = load_dataset(name, shots=1, seed=0)
    test_ids = _ids(reference.test)
    assert len(test_ids) == len(reference.test)
    for shots in (1, 5, 10, None):
        for seed in (0, 1):
            data = load_dataset(name, shots=shots, seed=seed)
            train, val = _ids(data.train), _ids(data.val)
            assert not train & val and not train & test_ids and not val & test_ids
            assert torch.equal(data.test.ids, reference.test.ids)
            assert torch.equal(data.test.images, reference.test.images)
    assert len(reference.val) == 10 * len(reference.classes)


@pytest.mark.parametrize("name", OFFLINE)
def test_shots_are_nested_and_seeds_differ(name):
    five, ten = load_dataset(name, shots=5, seed=7), load_dataset(name, shots=10, seed=7)
    assert _ids(five.train) < _ids(ten.train)
    assert torch.equal(five.val.ids, ten.val.ids)
    other = load_dataset(name, shots=5, seed=8)
    assert _ids(other.train) != _ids(five.train)


def test_same_seed_gives_identical_bytes_even_after_regenerating():
    first = load_dataset("shapes", shots=4, seed=2, per_class=30)
    sources.shapes_pool.cache_clear()
    second = load_dataset("shapes", shots=4, seed=2, per_class=30)
    for a, b in zip((first.train, first.val, first.test), (second.train, second.val, second.test)):
        assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels) and torch.equal(a.masks, b.masks)
    t1 = load_dataset("textures", shots=2, seed=0, per_class=30).train.images
    sources.textures_pool.cache_clear()
    assert torch.equal(t1, load_dataset("textures", shots=2, seed=0, per_class=30).train.images)
    # image i of class c is drawn from its own generator: a smaller pool starts with the same pictures
    small, full = sources.shapes_pool(64, 30), sources.shapes_pool(64, 40)
    assert np.array_equal(small.images[:30], full.images[:30]) and np.array_equal(small.masks[:30], full.masks[:30])


def test_too_many_shots_names_the_maximum():
    data = load_dataset("clipart")  # shots=None: every training image
    most = min(data.train.counts().values())
    assert load_dataset("clipart", shots=most).train.counts() == {c: most for c in data.classes}
    with pytest.raises(ValueError, match=f"use shots <= {most}"):
        load_dataset("clipart", shots=most + 1)
    with pytest.raises(ValueError, match="positive int"):
        load_dataset("digits", shots=0)


def test_val_per_class_is_respected():
    data = load_dataset("digits", shots=5, val_per_class=3)
    assert data.val.counts() == {c: 3 for c in data.classes}
    assert len(load_dataset("digits", shots=5, val_per_class=0).val) == 0


# ---- the datasets themselves ---------------------------------------------------------------------------------------


def test_clipart_is_curated_public_domain_and_small():
    data = load_dataset("clipart")
    totals = {c: data.train.counts()[c] + data.val.counts()[c] + data.test.counts()[c] for c in data.classes}
    assert len(data.classes) >= 6 and min(totals.values()) >= 60
    assert "public domain" in data.meta["license"].lower()
    folder = Path(sources.ASSETS) / "clipart"
    assert sum(p.stat().st_size for p in folder.iterdir()) < 8_000_000
    manifest = json.loads((folder / "manifest.json").read_text())
    assert len(manifest["images"]) == sum(totals.values())
    assert all(entry["source"].startswith("openclipart-png:") and entry["sha1"] for entry in manifest["images"])
    # ids index the manifest: the category recorded there is the label
    for split in (data.train, data.test):
        for i, label in zip(split.ids.tolist()[:20], split.labels.tolist()[:20]):
            assert manifest["images"][i]["category"] == data.classes[label]
    # no drawing appears twice (exact duplicates were removed at build time)
    digests = {bytes(img.numpy().tobytes()) for s in (data.train, data.val, data.test) for img in s.images}
    assert len(digests) == sum(totals.values())
    # drawings are composited on white: the corners are white
    assert (data.test.images[:, :, 0, 0] >= 250).float().mean() > 0.9


def test_digits_are_dark_ink_on_white():
    data = load_dataset("digits", shots=1)
    images = data.test.images.float()
    assert images[:, :, 0, 0].mean() > 240  # background corner
    assert images.amin(dim=(1, 2, 3)).mean() < 60  # the ink
    assert torch.equal(images[:, 0], images[:, 1]) and torch.equal(images[:, 1], images[:, 2])


def test_shapes_masks_align_with_the_objects():
    data = load_dataset("shapes", shots=20)
    images, masks = data.train.images.float(), data.train.masks
    assert masks.dtype == torch.bool and masks.shape == (len(images), 64, 64)
    area = masks.flatten(1).float().mean(1)
    assert (area > 0.01).all() and (area < 0.5).all()
    for image, mask in zip(images, masks):
        inside = image[:, mask]  # (3, n): the object is one flat colour plus a little noise
        assert inside.std(dim=1).max() < 12
        # the ring of pixels just outside the object is a different colour
        grown = torch.nn.functional.max_pool2d(mask[None, None].float(), 5, 1, 2)[0, 0].bool()
        ring = image[:, grown & ~mask]
        assert (inside.mean(1) - ring.mean(1)).norm() > 40


def test_textures_differ_only_in_texture():
    data = load_dataset("textures", shots=10)
    means = data.train.images.float().mean(dim=(2, 3))  # per-image mean colour
    per_class = [means[data.train.labels == c].mean(0) for c in range(len(data.classes))]
    spread = torch.stack(per_class).std(0).max()
    assert spread < 25  # class-average colours are alike: colour is not a cue


# ---- baseline ----------------------------------------------------------------------------------------------------


def test_baseline_digits_reaches_reference():
    result = baseline(load_dataset("digits", shots=10, seed=0))
    assert result["test_acc"] >= 0.85
    assert result["train_acc"] >= result["test_acc"]
    assert "logistic regression" in result["method"] and result["seconds"] > 0
    assert result["C"] == 1.0  # the grid value with the best val accuracy here (measured; see the reference test)


def test_baseline_textures_is_near_chance():
    result = baseline(load_dataset("textures", shots=10, seed=0))
    assert result["chance"] == pytest.approx(1 / 6)
    assert result["test_acc"] < 0.3


def test_baseline_without_val_uses_cross_validation():
    result = baseline(load_dataset("digits", shots=6, val_per_class=0), C=(0.01, 1.0))
    assert result["C"] in (0.01, 1.0) and np.isnan(result["val_acc"])


@pytest.mark.slow
def test_baseline_equals_a_direct_sklearn_computation():
    """The same numbers from plain scikit-learn: area-shrunk pixels, scaler + logistic regression, C chosen on val."""
    import torch.nn.functional as F
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    data = load_dataset("digits", shots=4, seed=1)  # 64 px: shrunk to 32 px
    grid = (0.01, 0.1, 1.0)
    result = baseline(data, C=grid)

    def pixels(split):
        return F.interpolate(split.images.float() / 255, size=(32, 32), mode="area").reshape(len(split), -1).numpy()

    x = {s: pixels(getattr(data, s)) for s in ("train", "val", "test")}
    y = {s: getattr(data, s).labels.numpy() for s in ("train", "val", "test")}
    fits = [make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=3000)).fit(x["train"], y["train"])
            for c in grid]
    val = [m.score(x["val"], y["val"]) for m in fits]
    best = int(np.argmax(val))  # first maximum: the stronger regularisation among ties
    assert result["C"] == grid[best] and result["val_acc"] == pytest.approx(val[best], abs=1e-12)
    assert result["test_acc"] == pytest.approx(fits[best].score(x["test"], y["test"]), abs=1e-12)
    assert result["train_acc"] == pytest.approx(fits[best].score(x["train"], y["train"]), abs=1e-12)
    assert (result["n_train"], result["n_test"], result["chance"]) == (40, len(data.test), 0.1)


def test_baseline_is_memoised_per_dataset_object(monkeypatch):
    import gc
    import importlib
    import weakref

    baseline_module = importlib.import_module("tl_lab.data.baseline")  # the module (tl_lab.data.baseline is the function)

    fits = []
    real = baseline_module._fit_baseline
    monkeypatch.setattr(baseline_module, "_fit_baseline", lambda *a, **k: fits.append(1) or real(*a, **k))
    data = load_dataset("digits", shots=3, seed=0, image_size=32)
    first = baseline(data, C=(0.01, 1.0))
    assert baseline(data, C=(1.0, 0.01)) is first and len(fits) == 1  # same data, same grid: the same dict
    assert baseline(data, C=0.01) is not first and len(fits) == 2  # other arguments: another entry
    copy = dataclasses.replace(data)  # another object (same tensors): computed again, the same numbers
    again = baseline(copy, C=(0.01, 1.0))
    assert again is not first and again["test_acc"] == first["test_acc"] and len(fits) == 3
    edited = dataclasses.replace(data, train=dataclasses.replace(data.train, images=data.train.images.clone()))
    before = baseline(edited, C=(0.01, 1.0))
    edited.train.images[:, :, :8] = 0  # an in-place edit bumps the tensor's version: the cache misses
    after = baseline(edited, C=(0.01, 1.0))
    assert after is not before and len(fits) == 5
    assert baseline(edited, C=(0.01, 1.0)) is after and len(fits) == 5
    gone = weakref.ref(copy)
    n = len(baseline_module._MEMO)
    del copy, again
    gc.collect()
    assert gone() is None and len(baseline_module._MEMO) == n - 1  # the cache does not keep data alive


# ---- a learner's messy folder ------------------------------------------------------------------------------------


def _jpeg(image: Image.Image, **kw) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", **kw)
    return buffer.getvalue()


def _png(image: Image.Image, **kw) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", **kw)
    return buffer.getvalue()


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height pixels (a decompression bomb for a naive reader)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    body = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + body


@pytest.fixture
def messy_folder(tmp_path):
    """Two usable classes full of awkward files, an empty class, a class with only broken files, and junk."""
    root = tmp_path / "photos"
    cats, dogs = root / "cats", root / "dogs"
    for folder in (cats, dogs, root / "empty_class", root / "broken_only", root / "__MACOSX" / "cats"):
        folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(8):  # ordinary images so that every split has something
        for folder, colour in ((cats, (200, 120, 40)), (dogs, (40, 90, 200))):
            noise = rng.integers(0, 30, size=(48, 64, 3), dtype=np.uint8)
            pixels = np.clip(np.array(colour) + noise, 0, 255).astype(np.uint8)
            (folder / f"ok_{i}.jpg").write_bytes(_jpeg(Image.fromarray(pixels)))
    good = _jpeg(Image.new("RGB", (64, 48), (10, 200, 10)))
    (cats / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (cats / "zero.jpg").write_bytes(b"")
    (cats / "notes.jpg").write_text("this is not a picture\n")
    (cats / "readme.txt").write_text("labels by hand\n")
    (cats / "cmyk.jpg").write_bytes(_jpeg(Image.new("CMYK", (40, 40), (0, 255, 255, 0))))
    (cats / "gray16.png").write_bytes(_png(Image.fromarray(np.full((40, 40), 30000, dtype=np.uint16))))
    palette = Image.new("P", (40, 40), 1)
    palette.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    palette.paste(0, (0, 0, 40, 20))  # top half uses index 0, declared transparent
    (cats / "palette.png").write_bytes(_png(palette, transparency=0))
    rgba = Image.new("RGBA", (40, 40), (0, 0, 255, 255))
    rgba.paste((0, 0, 0, 0), (0, 0, 40, 20))  # top half fully transparent
    (cats / "rgba.png").write_bytes(_png(rgba))
    (dogs / "la.png").write_bytes(_png(Image.new("LA", (30, 30), (50, 128))))
    (dogs / "gray.png").write_bytes(_png(Image.new("L", (30, 30), 90)))
    wide = Image.new("RGB", (200, 100), (255, 0, 0))
    wide.paste((0, 0, 255), (100, 0, 200, 100))  # left red, right blue
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    (dogs / "phone.jpg").write_bytes(_jpeg(wide, exif=exif.tobytes(), quality=95))
    webp = io.BytesIO()
    Image.new("RGB", (50, 40), (120, 60, 30)).save(webp, format="WEBP")
    (dogs / "picture.webp").write_bytes(webp.getvalue())
    (dogs / "actually_png.jpg").write_bytes(_png(Image.new("RGB", (30, 30), (1, 2, 3))))
    (dogs / "bomb.png").write_bytes(_png_header_only(40_000, 40_000))
    (dogs / "big.jpg").write_bytes(_jpeg(Image.new("RGB", (1600, 1200), (0, 128, 0))))
    (dogs / "big.png").write_bytes(_png(Image.new("RGB", (1600, 1200), (0, 128, 0))))
    (root / "broken_only" / "bad.jpg").write_bytes(good[:100])
    for junk in (cats / ".hidden.jpg", cats / ".DS_Store", dogs / "Thumbs.db", dogs / "desktop.ini"):
        junk.write_bytes(good)
    (root / ".DS_Store").write_bytes(good)
    (root / "__MACOSX" / "cats" / "._ok_0.jpg").write_bytes(b"\0\5\26\7")
    (cats / ".ipynb_checkpoints").mkdir()
    (cats / ".ipynb_checkpoints" / "x-checkpoint.jpg").write_bytes(good)
    (root / "labels.csv").write_text("file,label\n")
    return root


def test_messy_folder_loads_or_reports_every_file(messy_folder, monkeypatch):
    # a low decode limit stands in for a 60-megapixel photo: big.jpg is drafted down, big.png is refused
    monkeypatch.setattr(imagefiles, "MAX_DECODE_PIXELS", 1_000_000)
    data = load_dataset("folder", root=messy_folder, image_size=32, shots=None)
    assert data.classes == ("cats", "dogs")
    reasons = {Path(s.path).name: s.reason for s in data.report}
    ignored = {".hidden.jpg", ".DS_Store", "Thumbs.db", "desktop.ini", "._ok_0.jpg", "x-checkpoint.jpg"}
    assert sorted(reasons) == sorted(["bad.jpg", "big.png", "bomb.png", "broken_only", "empty_class", "labels.csv",
                                      "notes.jpg", "readme.txt", "truncated.jpg", "zero.jpg", *ignored])
    assert len(data.report) == len(reasons) + 1  # each skipped file once; two .DS_Store files share a name
    assert "truncated" in reasons["truncated.jpg"]
    assert "empty file" in reasons["zero.jpg"]
    assert "not an image" in reasons["notes.jpg"]
    assert "not an image file" in reasons["readme.txt"]
    assert "too large" in reasons["bomb.png"]
    assert "decode limit" in reasons["big.png"]
    assert "empty class folder" in reasons["empty_class"]
    assert "no readable image" in reasons["broken_only"] and "bad.jpg" in reasons
    assert "class folders" in reasons["labels.csv"]
    files = [Path(f).name for f in data.meta["files"]]
    loaded = {"cmyk.jpg", "gray16.png", "palette.png", "rgba.png", "la.png", "gray.png", "phone.jpg", "picture.webp",
              "actually_png.jpg", "big.jpg"}
    assert loaded <= set(files)
    assert len(files) == 16 + len(loaded)
    assert not ignored & set(files)  # never loaded, but named in the report with the reason (issue 19)
    assert "hidden file" in reasons[".hidden.jpg"] and "system file" in reasons["Thumbs.db"]
    assert "__MACOSX" in reasons["._ok_0.jpg"] and ".ipynb_checkpoints" in reasons["x-checkpoint.jpg"]
    assert data.meta["ignored_files"] == 7  # two .DS_Store, .hidden.jpg, Thumbs.db, desktop.ini and two in folders

    every = {}
    for split in (data.train, data.val, data.test):
        for i, image in zip(split.ids.tolist(), split.images):
            every[files[i]] = image.permute(1, 2, 0).numpy().astype(int)
    assert abs(every["gray16.png"][..., 0].mean() - 30000 / 65535 * 255) < 2  # rescaled, not clipped to 255
    assert (every["palette.png"][:12] >= 250).all()  # transparent half is white
    assert (every["rgba.png"][:12] >= 250).all() and every["rgba.png"][-8:, :, 2].mean() > 240
    assert every["cmyk.jpg"][..., 0].mean() > 200 and every["cmyk.jpg"][..., 1:].mean() < 60  # CMYK red
    phone = every["phone.jpg"]  # upright after EXIF rotation: red on top, blue below
    assert phone[2, 16, 0] > 200 and phone[2, 16, 2] < 60 and phone[-3, 16, 2] > 200 and phone[-3, 16, 0] < 60
    assert every["actually_png.jpg"].max() < 10 and every["big.jpg"][..., 1].mean() > 100


@pytest.mark.slow
def test_real_108_megapixel_files_load_or_are_refused_without_exhausting_memory(tmp_path):
    Image.new("RGB", (12_000, 9_000), (10, 120, 200)).save(tmp_path / "huge.jpg", quality=80)
    Image.new("L", (12_000, 9_000), 7).save(tmp_path / "huge.png", compress_level=1)
    image = imagefiles.read_image(tmp_path / "huge.jpg", size=64)  # decoded at 1/8 scale
    assert image.shape == (64, 64, 3) and abs(int(image[0, 0, 2]) - 200) < 4
    with pytest.raises(imagefiles.UnreadableImageError, match="12000x9000 .108 MP., over the 50 MP decode limit"):
        imagefiles.read_image(tmp_path / "huge.png", size=64)


def test_folder_with_one_class_says_which_layout_is_expected(tmp_path):
    (tmp_path / "only").mkdir()
    Image.new("RGB", (20, 20)).save(tmp_path / "only" / "a.png")
    with pytest.raises(ValueError, match="expected layout: root/<class name>/<images>"):
        load_dataset("folder", root=tmp_path)
    flat = tmp_path / "flat"
    flat.mkdir()
    Image.new("RGB", (20, 20)).save(flat / "a.png")
    with pytest.raises(ValueError, match="0 class folder"):
        load_dataset("folder", root=flat)


def test_missing_folder_names_the_path(tmp_path):
    missing = tmp_path / "no_such_folder"
    with pytest.raises(FileNotFoundError, match="no_such_folder"):
        load_dataset("folder", root=missing)
    with pytest.raises(ValueError, match="needs root"):
        load_dataset("folder")


def test_folder_train_test_layout_uses_the_given_test_images(tmp_path):
    for split, n in (("train", 6), ("test", 3), ("val", 2)):
        for k, cls in enumerate(("ant", "bee")):
            folder = tmp_path / split / cls
            folder.mkdir(parents=True)
            for i in range(n):
                Image.new("RGB", (24, 24), (40 * i, 100 * k, 0)).save(folder / f"{split}_{i}.png")
    data = load_dataset("folder", root=tmp_path, shots=4, image_size=24)
    files = data.meta["files"]
    assert data.meta["layout"] == "train/test"
    assert {Path(files[i]).parent.parent.name for i in data.test.ids.tolist()} == {"test"}
    assert {Path(files[i]).parent.parent.name for i in data.val.ids.tolist()} == {"val"}
    assert data.test.counts() == {"ant": 3, "bee": 3} and data.train.counts() == {"ant": 4, "bee": 4}


def test_folder_with_train_and_val_only_holds_out_the_val_folder(tmp_path):
    for split, n in (("train", 5), ("val", 2)):
        for k, cls in enumerate(("ant", "bee")):
            folder = tmp_path / split / cls
            folder.mkdir(parents=True)
            for i in range(n):
                Image.new("RGB", (24, 24), (40 * i, 100 * k, 0)).save(folder / f"{split}_{i}.png")
    data = load_dataset("folder", root=tmp_path, image_size=24)
    assert data.classes == ("ant", "bee") and "val folder used as test" in data.meta["layout"]
    assert {Path(data.meta["files"][i]).parent.parent.name for i in data.test.ids.tolist()} == {"val"}


# ---- torchvision sets without a network --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["flowers102", "oxford_pets", "cifar10", "eurosat", "dtd"])
def test_torchvision_missing_files_give_a_clear_offline_error(name, tmp_path, no_network):
    with pytest.raises(DatasetUnavailableError) as error:
        load_dataset(name, root=tmp_path, download=False)
    message = str(error.value)
    assert str(tmp_path) in message and "download=True" in message
    assert "https://" in message and "clipart, digits, shapes, textures" in message


def test_torchvision_failed_download_is_reported(tmp_path, no_network, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(DatasetUnavailableError, match="downloading it failed .*URLError") as error:
        load_dataset("cifar10", root=tmp_path, download=True)
    assert "cifar-10-python.tar.gz" in str(error.value) and "clipart" in str(error.value)


def test_summary_and_repr_are_readable():
    data = load_dataset("clipart", shots=5)
    text = data.summary()
    assert "clipart: 7 classes, 128 px, shots=5" in text and "animal" in text and "Public domain" in text
    assert repr(data).startswith("DatasetSplits('clipart', classes=7") and "train=35" in repr(data)
    assert repr(data.train) == "ImageSplit(35 images, 7 classes, 128 px)"


class _FakeTorchvisionSet:
    """Stands in for a downloaded torchvision dataset: ``targets``, ``classes`` and PIL images."""

    classes = ["a", "b", "c"]

    def __init__(self, per_class: int, shade: int):
        self.targets = [c for c in range(3) for _ in range(per_class)]
        self.shade = shade

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int):
        return Image.new("RGB", (40, 30), (self.shade, i % 256, 0)), self.targets[i]


def test_torchvision_sets_are_capped_and_split(monkeypatch, tmp_path):
    def spec(name, splits, builder):
        return sources._Spec(name, builder, splits, "fake", "https://example.invalid/fake.tgz", "test only", "fake")

    fakes = {
        "cifar10": spec("cifar10", {"train": True, "test": False},
                        lambda root, split, download: _FakeTorchvisionSet(20 if split else 9, 200 * (not split))),
        "eurosat": spec("eurosat", {"train": None}, lambda root, split, download: _FakeTorchvisionSet(30, 0)),
    }
    monkeypatch.setattr(sources, "_specs", lambda: fakes)
    data = load_dataset("cifar10", root=tmp_path, max_per_class=12, test_per_class=5, image_size=16)
    assert data.test.counts() == {"a": 5, "b": 5, "c": 5}
    assert (data.test.images[:, 0] == 200).all() and (data.train.images[:, 0] == 0).all()  # official test split
    assert all(data.train.counts()[c] + data.val.counts()[c] == 12 for c in data.classes)
    few = load_dataset("cifar10", root=tmp_path, max_per_class=12, test_per_class=5, image_size=16, shots=4, seed=1)
    assert few.train.counts() == {"a": 4, "b": 4, "c": 4} and torch.equal(few.test.images, data.test.images)
    single = load_dataset("eurosat", root=tmp_path, max_per_class=10, test_per_class=6, image_size=16)
    assert single.test.counts() == {"a": 6, "b": 6, "c": 6}
    assert all(single.train.counts()[c] + single.val.counts()[c] == 10 for c in single.classes)
    assert "official" not in single.meta["test_split"] and "official" in data.meta["test_split"]


# ---- every file is accounted for (issue 19) -------------------------------------------------------------------


def _files_under(root: Path) -> set[str]:
    return {str(p) for p in root.rglob("*") if p.is_symlink() or not p.is_dir()}


def test_every_file_that_is_not_a_sample_is_named_with_its_reason(messy_folder, tmp_path):
    cats = messy_folder / "cats"
    (cats / "gone.jpg").symlink_to(tmp_path / "deleted_long_ago.jpg")  # a link that leads nowhere
    (cats / "loop").symlink_to(cats, target_is_directory=True)  # a link back to a folder already read
    Image.new("RGB", (1, 1)).save(cats / "pixel.gif")  # a tracking pixel
    Image.new("RGB", (5, 60)).save(cats / "sliver.png")
    data = load_dataset("folder", root=messy_folder, image_size=32, shots=None)
    samples = set(data.meta["files"])
    reasons = {s.path: s.reason for s in data.report}
    unaccounted = _files_under(messy_folder) - samples - set(reasons)
    assert unaccounted == set()
    assert not samples & set(reasons)
    assert "leads nowhere" in reasons[str(cats / "gone.jpg")] and "deleted_long_ago.jpg" in reasons[str(cats / "gone.jpg")]
    assert "already read" in reasons[str(cats / "loop")]
    assert reasons[str(cats / "pixel.gif")].startswith("image too small (1x1 px")
    assert reasons[str(cats / "sliver.png")].startswith("image too small (5x60 px")
    assert len(samples) + len(set(reasons) & _files_under(messy_folder)) == len(_files_under(messy_folder))


def test_split_layout_names_what_lies_outside_its_folders_and_classes_dropped_later(tmp_path):
    root = tmp_path / "mine"
    for split, per in (("train", 3), ("test", 2)):
        for c in ("a", "b", "c"):
            (root / split / c).mkdir(parents=True)
            for i in range(per):
                colour = (50 * "abc".index(c), 100, 20 * i)
                Image.new("RGB", (20, 20), colour).save(root / split / c / f"{i}.png")
    for i in range(3):  # class c's training images are all broken, so c is dropped: its test images too
        (root / "train" / "c" / f"{i}.png").write_bytes(b"not a png")
    (root / "notes.txt").write_text("where I found them")
    (root / "extra").mkdir()
    Image.new("RGB", (20, 20)).save(root / "extra" / "x.png")
    data = load_dataset("folder", root=root, image_size=16, shots=None)
    assert data.classes == ("a", "b")
    reasons = {s.path: s.reason for s in data.report}
    assert _files_under(root) - set(data.meta["files"]) - set(reasons) == set()
    assert "outside the test/, train/ folder(s)" in reasons[str(root / "notes.txt")]
    assert "outside" in reasons[str(root / "extra" / "x.png")]
    assert "class 'c' was left out" in reasons[str(root / "test" / "c" / "0.png")]


def test_missing_folder_names_the_absolute_path_and_the_working_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError) as error:
        load_dataset("folder", root="my_photos")
    assert str(error.value) == (
        f"dataset folder not found: my_photos (absolute path {tmp_path / 'my_photos'}; working folder {tmp_path})"
    )
