"""The LabelCleaner in a real browser: on a learner's folder, mark one image "relabel as ..." and one "leave out",
Save, Save again (the same file, written again), then check the file's content and that load_dataset('folder')
honours it, and that no image was moved or deleted. (fast.ai's cleaner has open bugs in exactly these clicks:
fastai#3084, fastbook#359.)"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.browser

FOLDER = "cleaner_photos"
ITEM = ".tl-cleaner .tl-cleaner-item"


def _make_folder(root: Path) -> None:
    rng = np.random.default_rng(0)
    for c, colour in (("cat", (200, 60, 60)), ("dog", (60, 60, 200))):
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(6):
            pixels = np.full((64, 64, 3), colour, np.uint8) + rng.integers(0, 60, (64, 64, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / c / f"{i}.png")


def test_mark_save_twice_and_load_dataset_honours_it(lab):
    from tl_lab.data.datasets import load_dataset
    from tl_lab.data.label_fixes import LABELS_FILE

    root = lab.server.root / FOLDER
    _make_folder(root)
    images_before = sorted((p.relative_to(root).as_posix(), p.read_bytes()) for p in root.rglob("*.png"))
    lab.run_new_notebook("browser_cleaner.ipynb", [
        "import tl_lab\nfrom tl_lab.widgets import LabelCleaner\n"
        f"data = tl_lab.load_dataset('folder', root='{FOLDER}', image_size=64, val_per_class=1)\n"
        "cleaner = LabelCleaner(data, top=4)\ncleaner",
    ], timeout=120)  # fmt: skip
    lab.page.wait_for_function("(s) => document.querySelectorAll(s).length === 4", arg=ITEM, timeout=60_000)
    items = lab.page.locator(ITEM)
    keys = [t.strip() for t in lab.page.locator(f"{ITEM} .tl-cleaner-file code").all_inner_texts()]
    assert len(keys) == 4 and all(k.split("/")[0] in ("cat", "dog") for k in keys), keys
    other = "dog" if keys[0].startswith("cat/") else "cat"
    items.nth(0).locator("select").select_option(label=f"relabel as {other}")
    items.nth(1).locator("select").select_option(label="leave out")
    save = lab.page.locator(".tl-cleaner .tl-cleaner-save")
    path = root / LABELS_FILE
    save.click()
    lab.page.wait_for_selector(".tl-cleaner .tl-cleaner-saved", timeout=15_000)
    lab.page.wait_for_function("() => document.querySelector('.tl-cleaner .tl-cleaner-saved').innerText"
                               ".includes('saved 1 relabel(s) and 1 left out')", timeout=15_000)
    first, first_inode = path.read_bytes(), path.stat().st_ino
    save.click()  # again: the file is written again (a new inode: written atomically) with the same bytes
    for _ in range(100):  # the kernel writes it; wait (at most 10 s) for the new file
        if path.stat().st_ino != first_inode:
            break
        lab.page.wait_for_timeout(100)
    assert path.stat().st_ino != first_inode, "the second Save did not write the file"
    assert path.read_bytes() == first
    assert json.loads(first) == {"version": 1, "relabel": {keys[0]: other}, "leave_out": [keys[1]]}
    assert [p.name for p in root.iterdir() if p.is_file()] == [LABELS_FILE]  # no temporary file left
    data = load_dataset("folder", root=root, image_size=64, val_per_class=1)
    assert data.meta["label_fixes"] == {"file": LABELS_FILE, "relabelled": [keys[0]], "left_out": [keys[1]],
                                        "missing": []}
    files = [Path(f).relative_to(root).as_posix() for f in data.meta["files"]]
    assert keys[1] not in files and len(files) == 11
    i = files.index(keys[0])
    label = next(s.labels[s.ids.tolist().index(i)] for s in (data.train, data.val, data.test) if i in s.ids.tolist())
    assert data.classes[int(label)] == other
    assert sorted((p.relative_to(root).as_posix(), p.read_bytes()) for p in root.rglob("*.png")) == images_before
    lab.screenshot("cleaner", lab.page.locator(".tl-cleaner"))
    lab.assert_clean_console()
