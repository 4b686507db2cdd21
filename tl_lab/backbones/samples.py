"""Four real photos that ship with tl_lab, and the 1000 ImageNet class names, both available offline.

Why: a lesson that says "a pretrained network recognises this cat" needs a cat photo that is always there (on
Binder, in CI, on a laptop with no network) and whose licence lets a course page show it. The photos come from
the data images bundled with scikit-image, each released as CC0 or into the public domain; ``LICENSES.json`` beside
them records the original file, source, licence, credit, how the copy was made, and the ImageNet classes a
pretrained classifier should answer.

    >>> from tl_lab.backbones.samples import sample_photo, imagenet_categories
    >>> cat = sample_photo("cat")
    >>> cat.image().size, cat.license                       # PIL image, (width, height)
    ((400, 266), 'CC0-1.0')
    >>> [imagenet_categories()[i] for i in cat.imagenet_classes]
    ['tabby', 'tiger cat', 'Egyptian cat']
"""

from __future__ import annotations

import json
import pathlib
from dataclasses import dataclass
from functools import lru_cache

from PIL import Image

__all__ = ["SamplePhoto", "sample_photos", "sample_photo", "imagenet_categories", "PHOTOS_DIR"]

PHOTOS_DIR = pathlib.Path(__file__).resolve().parents[1] / "assets" / "photos"
_LICENSES = PHOTOS_DIR / "LICENSES.json"


@dataclass(frozen=True)
class SamplePhoto:
    """One shipped photo and where it came from.

    ``imagenet_classes`` are indices in the standard 1000-class ImageNet order (``imagenet_categories()``); a
    pretrained classifier's top-1 answer should be one of them (several ImageNet classes fit one photo: the cat is
    equally a "tabby", a "tiger cat" or an "Egyptian cat" to most models).

        >>> photo = sample_photo("coffee")
        >>> photo.imagenet_names
        ('espresso', 'cup', 'coffee mug')
    """

    name: str
    path: pathlib.Path
    license: str
    credit: str
    source: str
    imagenet_classes: tuple[int, ...]

    def image(self) -> Image.Image:
        """The photo as an RGB ``PIL.Image`` (grayscale originals come back with three equal channels)."""
        with Image.open(self.path) as im:
            return im.convert("RGB")

    @property
    def imagenet_names(self) -> tuple[str, ...]:
        """The ImageNet class names of ``imagenet_classes``, in the same order."""
        categories = imagenet_categories()
        return tuple(categories[i] for i in self.imagenet_classes)


@lru_cache(maxsize=1)
def sample_photos() -> tuple[SamplePhoto, ...]:
    """All shipped photos, in the order of ``LICENSES.json`` (cat, coffee, rocket, camera).

        >>> [p.name for p in sample_photos()]
        ['cat', 'coffee', 'rocket', 'camera']
    """
    try:
        records = json.loads(_LICENSES.read_text(encoding="utf-8"))["photos"]
    except FileNotFoundError:
        raise FileNotFoundError(
            f"tl_lab's sample photos are missing ({_LICENSES} not found); reinstall with "
            "`pip install --force-reinstall --no-deps tl-lab`"
        ) from None
    photos = []
    for filename, rec in records.items():
        path = PHOTOS_DIR / filename
        if not path.is_file():
            raise FileNotFoundError(
                f"sample photo {filename!r} is listed in {_LICENSES.name} but missing from {PHOTOS_DIR}; reinstall "
                "with `pip install --force-reinstall --no-deps tl-lab`"
            )
        photos.append(
            SamplePhoto(
                name=rec["name"],
                path=path,
                license=rec["license"],
                credit=rec["credit"],
                source=rec["source"],
                imagenet_classes=tuple(int(i) for i in rec["imagenet_classes"]),
            )
        )
    return tuple(photos)


def sample_photo(name: str) -> SamplePhoto:
    """The shipped photo called ``name``; an unknown name raises ``ValueError`` listing the valid ones.

        >>> sample_photo("rocket").imagenet_names
        ('missile', 'projectile')
    """
    photos = sample_photos()
    for photo in photos:
        if photo.name == name:
            return photo
    valid = ", ".join(repr(p.name) for p in photos)
    raise ValueError(f"unknown sample photo {name!r}; choose one of: {valid}")


@lru_cache(maxsize=1)
def imagenet_categories() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class names in the standard index order, with no network access.

    Why torchvision's list: every torchvision ImageNet classifier (and the embedded EfficientNet-Lite0) outputs
    logits in this order, so ``imagenet_categories()[logits.argmax()]`` names a prediction. The names are the ones
    in ``torchvision.models.ResNet18_Weights.IMAGENET1K_V1.meta["categories"]`` (shipped in torchvision's code,
    not downloaded).

        >>> imagenet_categories()[281]
        'tabby'
    """
    from torchvision.models import ResNet18_Weights

    categories = tuple(ResNet18_Weights.IMAGENET1K_V1.meta["categories"])
    if len(categories) != 1000:  # a torchvision that changed its metadata: fail loudly rather than mislabel
        raise RuntimeError(
            f"torchvision lists {len(categories)} ImageNet categories, expected 1000; reinstall torchvision with "
            "`pip install --force-reinstall --no-deps torchvision`"
        )
    return categories
