"""Rebuild the embedded ``clipart`` dataset from Debian's ``openclipart-png`` package.

Why this script exists: the flagship offline dataset of ``tl_lab`` is a curated subset of the Open Clip Art
Library (public-domain drawings). Shipping the drawings themselves keeps lessons offline; shipping this script
keeps the subset honest and reproducible: anyone with the Debian package can rebuild the same bytes and read,
in one place, which folders and keywords make each category and why a drawing was left out.

What it does, per category:

1. collect PNGs from the listed folders (or single files), dropping names that match the category's exclude
   pattern (flags, signs, diagrams, people, objects of another category);
2. drop exact duplicates (the same file bytes appear in several folders) and near-duplicates: recoloured or
   black-and-white copies of one drawing (silhouettes overlap and edge maps correlate), and variants in a
   numbered series (``dog_head_01``/``_02``, ``lemon_simple``/``lemon_simple_bw``) that look alike. One file
   per group is kept (the most colourful), so that train and test never share copies of one drawing;
3. composite transparency on white, crop to the drawing's extent, pad to a square on white and resize to
   128 px (Lanczos);
4. drop blank or tiny drawings and images larger than 40 megapixels (never decoded);
5. keep at most ``MAX_PER_CLASS`` drawings per category, chosen by a hash of the path (stable, unbiased by
   folder order).

Output (``tl_lab/assets/clipart/``): ``clipart.npz`` holding every image as PNG bytes (``png_bytes`` uint8
concatenated, ``png_offsets`` int64 of length N+1), ``labels`` (N,) int64 and ``classes``; ``manifest.json``
with the per-image source path, SHA-1, title and author (from the PNG's own text chunks), the category rules,
what was skipped and why, and the license text.

Example::

    python scripts/build_clipart.py                 # writes tl_lab/assets/clipart/
    python scripts/build_clipart.py --preview /tmp  # also writes one contact sheet per category
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import re
import sys
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

SOURCE_ROOT = Path("/usr/share/openclipart/png")
COPYRIGHT_FILE = Path("/usr/share/doc/openclipart-png/copyright")
OUT_DIR = Path(__file__).resolve().parents[1] / "tl_lab" / "assets" / "clipart"
SIZE = 128
MAX_PER_CLASS = 100
MIN_PER_CLASS = 60
MAX_SOURCE_PIXELS = 40_000_000  # a few drawings are 168 MP canvases; they are skipped, never decoded
MIN_CONTENT_SIDE = 24  # px in the source image
MIN_INK_FRACTION = 0.03  # of the 128 px square
# Near-duplicate test, calibrated by eye on contact sheets of candidate pairs: two drawings are one when their
# 32 px ink masks overlap (IoU) and their edge maps correlate. Recoloured and black-and-white copies score
# edges >= 0.74; distinct drawings of round fruit or filled badges overlap just as much but score < 0.6.
MASK_IOU_SIMILAR = 0.6
EDGE_CORR_DUPLICATE = 0.74  # any two names
EDGE_CORR_SAME_NAME = 0.45  # names that differ only by a counter or colour tag (or IoU >= MASK_IOU_SAME_NAME)
MASK_IOU_SAME_NAME = 0.8

LICENSE_SUMMARY = (
    "Public domain. Every drawing comes from the Open Clip Art Library (openclipart.org) as packaged by Debian "
    "(openclipart-png); the authors dedicated them to the public domain under the Creative Commons Public Domain "
    "Dedication / Public Domain Certification. Author names are recorded per image where the PNG carried them."
)


@dataclass(frozen=True)
class Category:
    """One class of the dataset: where its drawings come from and what is left out.

    ``sources`` are folders relative to the openclipart root (every PNG below them) or single ``.png`` files.
    ``exclude`` is a regular expression searched in each file's stem (lower case).
    """

    name: str
    sources: tuple[str, ...]
    exclude: str = r"^$"


# Categories whose drawings are distinct objects ImageNet features should separate. Order matters: a file that
# several categories could claim goes to the first one. Tools, birds, musical instruments, clothing and sports
# gear were tried and left out: fewer than 60 distinct drawings each after removing near-duplicates.
CATEGORIES: tuple[Category, ...] = (
    Category(
        name="animal",
        sources=(
            "animals",
            "unsorted/cammello.png",
            "unsorted/elefante_in_corsa.png",
            "unsorted/elefantone.png",
            "unsorted/mucca.png",
            "unsorted/pecorella.png",
            "unsorted/anatra.png",
            "unsorted/colombo.png",
            "unsorted/pinguino1.png",
            "unsorted/papera.png",
            "unsorted/struzzo.png",
            "unsorted/gabbiano_piccolo.png",
            "unsorted/pennuto01.png",
            "unsorted/ape_miele.png",
            "unsorted/pescetto.png",
        ),
        # not one animal: icons, mascots, symbols, scenes, footprints, microbes, fantasy creatures, a padlock
        exclude=r"fantasy|dragon|lindworm|mermaid|cymru|flag|emule|mhooo|shaezy|skoynk|squeek|scrathing"
        r"|le_mie_tigri|tux|mascot|manager|mirjam|ralf_ark|simbolo_egizio|stormo|wing_mitchell|dove_symbol"
        r"|bird_of_peace|turkey_on_platter|lucchetto|tante_orme|three_eyes|architetto_francesco_ro|punaisa"
        r"|kallisti|amibe|virus|paesaggio|tatoo|sailor_monkey|quattro_farfalle|cigni_bianchi|dog_on_leash"
        r"|mostriciattolo|2_dead_frogs|orme|duck_yellow_ii",
    ),
    Category(
        name="fruit_vegetable",
        sources=(
            "food/fruit",
            "food/vegetables",
            "food/pomodori_architetto_fran_01.png",
            "food/pumpkin2_yemu_01.png",
            "food/pumpkin_erik_postma_01.png",
            "food/zucca_architetto_frances_01.png",
            "food/grapes_leif_lodahl_02.png",
            "plants/cayennepepperrevisited_d_01.png",
            "plants/potato_nicu_buculei_01.png",
        ),
        exclude=r"juice|pie_|candied|tree|collection|turkey|straw_tote|tile_orange|kallisti|gumnut|champignon"
        r"|slate|salad|what_s_up",
    ),
    Category(
        name="prepared_food",
        sources=(
            "food",
            "unsorted/cornetto.png",
            "unsorted/tramezzino.png",
        ),
        exclude=r"chef|menu|libro|come_si|plate|picnic|toque|thanksgiving|meatgrinder|frullatore|frying_pan"
        r"|fuoco|sugarbox|bowl_chaspo|crawfish|beverages|alcohol|apple|grape|pomodori|pumpkin|zucca|watermelon"
        r"|gumnut|food_leif|honey|fruit|vegetable|juice|turkey|mcoon|dairy|champignon",
    ),
    Category(
        name="vehicle",
        sources=(
            "transportation/vehicles",
                        "transportation/ambulans_romus_01.png",
            "transportation/autos_01.png",
            "transportation/bicycle_philippe_colin_01.png",
            "transportation/big_truck_01.png",
            "transportation/bike_tobias_jakobs_.png",
            "transportation/blazer_01.png",
            "transportation/bmw_z_from_top_aubanel_.png",
            "transportation/bus_01.png",
            "transportation/bus1_jarno_vasamaa_01.png",
            "transportation/bus2_jarno_vasamaa_01.png",
            "transportation/car_jamin_ellis_.png",
            "transportation/dodge_neon_green_ganson.png",
            "transportation/fire_engine_romus_01.png",
            "transportation/formula_one_car_gerald_g_01.png",
            "transportation/m1_abrams_main_battle_tank_01.png",
            "transportation/motorcycle_jarno_vasama_.png",
            "transportation/old_car_lumen_design_st_r.png",
            "transportation/old_truck_indana_model__01.png",
            "transportation/pallone_aerestatico_arch_01.png",
            "transportation/plane_in_the_sky_mo_01.png",
            "transportation/redcar_marcelo_caiafa_.png",
            "transportation/shelby_cobra_blueprint_i_01.png",
            "transportation/skoda_car_alejandro_teja_.png",
            "transportation/small_truck_steffen_gluc_01.png",
            "transportation/soviet_shuttle_mo_01.png",
            "transportation/sportcar_sergio_luiz_ara_01.png",
            "transportation/toyota_land_cruiser_ganson.png",
            "transportation/tramway_lumen_design_stu_01.png",
            "transportation/truck_jarno_vasamaa1.png",
            "transportation/truck_jarno_vasamaa_.png",
            "transportation/boating/boat_jarno_vasamaa1.png",
            "transportation/boating/boat_jarno_vasamaa_.png",
            "transportation/boating/sailboat_illustration.png",
            "people/fire_engine_mimooh_01.png",
            "recreation/toys/kiddy_train_orlando_kara_.png",
            "unsorted/ambulanza.png",
            "unsorted/betoniera.png",
            "unsorted/caterpillar.png",
        ),
        exclude=r"crossroads|curve_ahead|cycle_lane|cycle_route|parking|quay_sign|lighthouse|wing_mitchell"
        r"|bus_symbol|road_runner|toy_paper_plane|^4wd$",
    ),
    Category(
        name="plant",
        sources=(
            "plants",
            "unsorted/rosa1.png",
            "unsorted/rosa2.png",
            "unsorted/rose.png",
            "unsorted/foglie_verdi.png",
            "unsorted/van_gogh_s_sun_flower_en_01.png",
            "recreation/holiday/christmas/christmas_tree_01.png",
        ),
        exclude=r"cayenne|champignon|mushroom|toadstool|human_humain|potato|fall_scene|christmas_balls|bowsaw"
        r"|bypasspruner|mirjam|cannabis",
    ),
    Category(
        name="building",
        sources=(
            "buildings",
            "education/school_in_fall_abiclipar_01.png",
            "computer/residential_house_zazou.png",
            "computer/building_zazou.png",
            "unsorted/condominio.png",
            "unsorted/grattacieli_grigi.png",
            "unsorted/igloo.png",
            "unsorted/fattoria.png",
            "computer/home1.png",
            "computer/home5.png",
            "computer/home6.png",
            "computer/home13.png",
            "office/fabbrica_architetto_fran_01.png",
            "education/school_country__abiclipa_01.png",
            "recreation/sand_castle_nathan_hawke_01.png",
            "signs_and_symbols/map_symbols/castle_-_rpg_map_elemen_01.png",
            "unsorted/profilo_della_citta.png",
            "transportation/lighthouse_matthew_gates_.png",
            "transportation/vehicles/lighthouse_01.png",
        ),
        exclude=r"furniture|brick|capitello|demolizione|old_sign|school_hallway|^wall",
    ),
    Category(
        name="electronics",
        sources=(
            "computer/hardware",
            "electronics",
            "office/telephone",
            "computer/crt_monitor_01.png",
            "computer/green_computer_merzok_01.png",
            "computer/pc_speaker_joel_montes_d_01.png",
            "computer/webcam_mazdac_01.png",
            "computer/pda_toh_yen_cheng_01.png",
            "computer/pda_2_toh_yen_cheng_01.png",
            "computer/nikon_coolpix_auban_.png",
            "computer/tft_screen_zazou.png",
            "computer/tv_zazou.png",
            "computer/joypad_the_mad_processor_.png",
            "computer/thin_client_risto_pekkal_01.png",
            "office/calculator.png",
            "office/simple_calculator_01.png",
            "office/calcolatrice_architetto__01.png",
            "office/printer1.png",
            "recreation/music/boombox_linda_kim_01.png",
            "recreation/music/headphones_davide_pesent_.png",
            "recreation/tv_01.png",
            "recreation/televisore_telecomando_a_01.png",
            "buildings/furniture/television_peterm_.png",
        ),
        exclude=r"keyboardlayout|8port|hub|racked|various_servers|firewall|gnome|rhythmbox|workstation_hash"
        r"|doublesight|bobine|capacitor|diodes|resistors|transistor|battery|bulb|filmphoto|navigation_display"
        r"|pfd_01|zinf|saku_robot|numero_verde|telephone_lutte|telephone_sauvetage|telefono_email|^cd$"
        r"|compact_disc|antenna|cassette",
    ),
)


@dataclass(frozen=True)
class Drawing:
    """One candidate drawing after rendering."""

    rel_path: str
    sha1: str
    title: str
    author: str
    source_size: tuple[int, int]
    image: np.ndarray  # (SIZE, SIZE, 3) uint8
    ink: np.ndarray  # (32, 32) bool, filled silhouette of the drawing
    edges: np.ndarray  # (1024,) float32, unit-norm centred edge map at 32 px
    colourfulness: float


def _stem_key(rel_path: str) -> str:
    """File stem without counters and colour tags: ``dog_head_nicu_buculei_01``/``_02`` -> ``dog_head_nicu_buculei``,
    ``lemon_simple_bw`` -> ``lemon_simple``, ``glace_01_bw_jean-victor__01`` -> ``glace_01_jean-victor``."""
    stem = Path(rel_path).stem.lower()
    stem = re.sub(r"(_(bw|b_w|colou?r))+(?=_|$)", "", stem)
    stem = re.sub(r"_(bw|b_w|colou?r)_", "_", stem)
    stem = re.sub(r"(_\d{1,2}r?|_r|_s|_)+$", "", stem)
    return stem


def _list_sources(category: Category) -> list[str]:
    exclude = re.compile(category.exclude)
    found: list[str] = []
    for source in category.sources:
        path = SOURCE_ROOT / source
        if source.endswith(".png"):
            matches = [p for p in path.parent.glob("*.png") if p.name.lower() == path.name.lower()]
            if not matches:
                raise FileNotFoundError(f"category {category.name!r}: source {path} does not exist; fix CATEGORIES")
            paths = matches
        else:
            if not path.is_dir():
                raise FileNotFoundError(f"category {category.name!r}: folder {path} does not exist; fix CATEGORIES")
            paths = sorted(path.rglob("*.png"))
        for p in paths:
            rel = p.relative_to(SOURCE_ROOT).as_posix()
            if exclude.search(p.stem.lower()) or exclude.search(rel.lower()):
                continue
            found.append(rel)
    return sorted(set(found))


def _render(rel_path: str) -> Drawing | str:
    """Render one PNG to a white-backed square, or return the reason it is skipped."""
    path = SOURCE_ROOT / rel_path
    data = path.read_bytes()
    with warnings.catch_warnings():
        # the size is checked below before anything is decoded; the warning on open adds nothing
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        im = Image.open(io.BytesIO(data))
    with im:
        width, height = im.size
        if width * height > MAX_SOURCE_PIXELS:
            return f"{width}x{height} px canvas is larger than {MAX_SOURCE_PIXELS // 1_000_000} MP"
        info = {k: v for k, v in im.info.items() if isinstance(v, str)}
        rgba = im.convert("RGBA")
    arr = np.asarray(rgba).astype(np.float32) / 255.0
    alpha = arr[..., 3:4]
    rgb = arr[..., :3] * alpha + (1.0 - alpha)  # composite on white
    ink = (alpha[..., 0] > 0.03) & (rgb.min(axis=2) < 0.96)
    ys, xs = np.nonzero(ink)
    if len(ys) == 0:
        return "blank (no drawn pixels)"
    top, bottom, left, right = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    if min(bottom - top, right - left) < MIN_CONTENT_SIDE:
        return f"drawing only {right - left}x{bottom - top} px"
    crop = rgb[top:bottom, left:right]
    side = int(max(crop.shape[:2]) * 1.06) + 2
    canvas = np.ones((side, side, 3), dtype=np.float32)
    oy, ox = (side - crop.shape[0]) // 2, (side - crop.shape[1]) // 2
    canvas[oy : oy + crop.shape[0], ox : ox + crop.shape[1]] = crop
    square = Image.fromarray(np.round(canvas * 255).astype(np.uint8))
    small = np.asarray(square.resize((SIZE, SIZE), Image.Resampling.LANCZOS, reducing_gap=3.0))
    small_ink = small.min(axis=2) < 245
    if small_ink.mean() < MIN_INK_FRACTION:
        return f"nearly blank at {SIZE} px ({small_ink.mean():.1%} drawn)"
    # Fill the holes so that an outline-only (black-and-white) copy has the silhouette of its coloured original.
    silhouette = ndimage.binary_fill_holes(small_ink)
    ink32 = np.asarray(Image.fromarray(silhouette.astype(np.uint8) * 255).resize((32, 32), Image.Resampling.BOX)) > 64
    grey = np.asarray(Image.fromarray(small).convert("L").resize((64, 64), Image.Resampling.BOX)).astype(np.float32)
    grad = np.abs(np.diff(grey, axis=1, prepend=grey[:, :1])) + np.abs(np.diff(grey, axis=0, prepend=grey[:1]))
    edges = grad.reshape(32, 2, 32, 2).mean(axis=(1, 3)).ravel()
    edges = edges - edges.mean()
    edges = edges / (np.linalg.norm(edges) + 1e-6)
    hsv = np.asarray(Image.fromarray(small).convert("HSV")).astype(np.float32)
    colourfulness = float((hsv[..., 1] * small_ink).sum() / max(small_ink.sum(), 1))
    return Drawing(
        rel_path=rel_path,
        sha1=hashlib.sha1(data).hexdigest(),
        title=info.get("Title", "").strip(),
        author=info.get("Author", "").strip(),
        source_size=(width, height),
        image=small,
        ink=ink32,
        edges=edges.astype(np.float32),
        colourfulness=colourfulness,
    )


def _group_duplicates(drawings: list[Drawing]) -> list[list[Drawing]]:
    """Union-find over 'same bytes' and 'looks like the same drawing' (see the thresholds at the top)."""
    parent = list(range(len(drawings)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def union(i: int, j: int) -> None:
        parent[find(i)] = find(j)

    by_sha: dict[str, int] = {}
    for i, d in enumerate(drawings):
        if d.sha1 in by_sha:
            union(i, by_sha[d.sha1])
        by_sha.setdefault(d.sha1, i)
    inks = np.stack([d.ink.ravel() for d in drawings]).astype(np.float32)
    inter = inks @ inks.T
    sizes = inks.sum(axis=1)
    iou = inter / np.maximum(sizes[:, None] + sizes[None, :] - inter, 1.0)
    edges = np.stack([d.edges for d in drawings])
    corr = edges @ edges.T
    same_name = _same_name_matrix([_stem_key(d.rel_path) for d in drawings])
    similar = iou >= MASK_IOU_SIMILAR
    duplicate = (similar & (corr >= EDGE_CORR_DUPLICATE)) | (
        same_name & ((similar & (corr >= EDGE_CORR_SAME_NAME)) | (iou >= MASK_IOU_SAME_NAME))
    )
    for i, j in zip(*np.nonzero(np.triu(duplicate, k=1))):
        union(int(i), int(j))
    groups: dict[int, list[Drawing]] = {}
    for i, d in enumerate(drawings):
        groups.setdefault(find(i), []).append(d)
    return list(groups.values())


def _same_name_matrix(keys: list[str]) -> np.ndarray:
    """Names match when the keys are equal, or when one key of two or more words is a prefix of the other: the
    Debian file names are truncated at different lengths, so ``glace_01_jean-victor`` and
    ``glace_01_jean-victor_bal`` are one series, while ``orange`` and ``orange_simple`` are not."""
    n = len(keys)
    out = np.zeros((n, n), dtype=bool)
    for i, a in enumerate(keys):
        for j in range(i, n):
            b = keys[j]
            short, long = (a, b) if len(a) <= len(b) else (b, a)
            out[i, j] = out[j, i] = short == long or (long.startswith(short) and "_" in short.strip("_"))
    return out


def _stable_rank(text: str) -> str:
    return hashlib.sha1(f"tl_lab-clipart:{text}".encode()).hexdigest()


def build(out_dir: Path, preview_dir: Path | None = None) -> dict:
    """Build the subset into ``out_dir``; return the manifest."""
    if not SOURCE_ROOT.is_dir():
        raise FileNotFoundError(
            f"{SOURCE_ROOT} not found; install Debian's openclipart-png package (apt-get install openclipart-png)"
        )
    claimed: dict[str, str] = {}  # rel_path -> category
    for category in CATEGORIES:
        for rel in _list_sources(category):
            claimed.setdefault(rel, category.name)

    skipped: list[dict[str, str]] = []
    rendered: list[tuple[str, Drawing]] = []
    for rel, cat in sorted(claimed.items()):
        result = _render(rel)
        if isinstance(result, str):
            skipped.append({"path": rel, "category": cat, "reason": result})
        else:
            rendered.append((cat, result))

    # Duplicates are grouped across all categories; a group belongs to the first category that claims it.
    priority = {c.name: i for i, c in enumerate(CATEGORIES)}
    groups = _group_duplicates([d for _, d in rendered])
    category_of = {d.rel_path: cat for cat, d in rendered}
    chosen: dict[str, list[Drawing]] = {c.name: [] for c in CATEGORIES}
    for group in groups:
        group.sort(key=lambda d: (-d.colourfulness, -d.source_size[0] * d.source_size[1], d.rel_path))
        keep, *dropped = group
        # a drawing filed under two categories goes to the one listed first in CATEGORIES
        category = min((category_of[d.rel_path] for d in group), key=priority.__getitem__)
        chosen[category].append(keep)
        skipped.extend(
            {"path": d.rel_path, "category": category_of[d.rel_path], "reason": f"near-duplicate of {keep.rel_path}"}
            for d in dropped
        )

    images: list[np.ndarray] = []
    labels: list[int] = []
    entries: list[dict] = []
    counts: dict[str, int] = {}
    for label, category in enumerate(CATEGORIES):
        members = sorted(chosen[category.name], key=lambda d: _stable_rank(d.rel_path))
        if len(members) < MIN_PER_CLASS:
            raise RuntimeError(
                f"category {category.name!r} has only {len(members)} distinct drawings (< {MIN_PER_CLASS}); "
                "widen its sources in CATEGORIES"
            )
        for d in members[MAX_PER_CLASS:]:
            skipped.append({"path": d.rel_path, "category": category.name, "reason": f"over {MAX_PER_CLASS} per class"})
        members = sorted(members[:MAX_PER_CLASS], key=lambda d: d.rel_path)
        counts[category.name] = len(members)
        for d in members:
            entries.append(
                {
                    "index": len(entries),
                    "category": category.name,
                    "source": f"openclipart-png:{d.rel_path}",
                    "sha1": d.sha1,
                    "title": d.title,
                    "author": d.author or None,
                    "source_size": list(d.source_size),
                }
            )
            images.append(d.image)
            labels.append(label)
        if preview_dir is not None:
            _contact_sheet([d.image for d in members], preview_dir / f"clipart_{category.name}.png")

    png_blobs = [_png_bytes(img) for img in images]
    offsets = np.zeros(len(png_blobs) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(b) for b in png_blobs])
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_npz(
        out_dir / "clipart.npz",
        png_bytes=np.frombuffer(b"".join(png_blobs), dtype=np.uint8),
        png_offsets=offsets,
        labels=np.asarray(labels, dtype=np.int64),
        classes=np.asarray([c.name for c in CATEGORIES]),
    )
    manifest = {
        "name": "clipart",
        "description": (
            f"{len(CATEGORIES)} categories of public-domain clip-art drawings, composited on white, cropped to the "
            f"drawing, padded to square and resized to {SIZE} px; near-duplicates removed."
        ),
        "source": "Open Clip Art Library (https://openclipart.org), Debian package openclipart-png",
        "license": "Public domain (Creative Commons Public Domain Dedication / Certification)",
        "license_summary": LICENSE_SUMMARY,
        "license_text": COPYRIGHT_FILE.read_text(errors="replace") if COPYRIGHT_FILE.exists() else None,
        "image_size": SIZE,
        "classes": [c.name for c in CATEGORIES],
        "counts": counts,
        "rules": {c.name: {"sources": list(c.sources), "exclude": c.exclude} for c in CATEGORIES},
        "build": {
            "script": "scripts/build_clipart.py",
            "max_per_class": MAX_PER_CLASS,
            "max_source_pixels": MAX_SOURCE_PIXELS,
            "near_duplicate": {
                "mask_iou_similar": MASK_IOU_SIMILAR,
                "edge_corr_duplicate": EDGE_CORR_DUPLICATE,
                "edge_corr_same_name": EDGE_CORR_SAME_NAME,
                "mask_iou_same_name": MASK_IOU_SAME_NAME,
            },
        },
        "images": entries,
        "skipped": sorted(skipped, key=lambda s: s["path"]),
    }
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n")
    return manifest


def _write_npz(path: Path, **arrays: np.ndarray) -> None:
    """Like ``np.savez`` but byte-reproducible: fixed timestamps inside the zip, arrays in the given order."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, array in arrays.items():
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.asarray(array), allow_pickle=False)
            archive.writestr(zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0)), buffer.getvalue())


def _png_bytes(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def _contact_sheet(images: list[np.ndarray], path: Path, columns: int = 10) -> None:
    rows = (len(images) + columns - 1) // columns
    sheet = np.full((rows * SIZE, columns * SIZE, 3), 200, dtype=np.uint8)
    for i, img in enumerate(images):
        r, c = divmod(i, columns)
        sheet[r * SIZE : (r + 1) * SIZE, c * SIZE : (c + 1) * SIZE] = img
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(sheet).resize((columns * 64, rows * 64), Image.Resampling.BOX).save(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="output folder (default: %(default)s)")
    parser.add_argument("--preview", type=Path, default=None, help="also write contact sheets to this folder")
    args = parser.parse_args(argv)
    manifest = build(args.out, args.preview)
    total = sum(manifest["counts"].values())
    size_mb = sum(p.stat().st_size for p in args.out.iterdir()) / 1e6
    print(f"wrote {total} images in {len(manifest['counts'])} classes to {args.out} ({size_mb:.2f} MB)")
    for name, n in manifest["counts"].items():
        print(f"  {name:16s} {n}")
    print(f"skipped {len(manifest['skipped'])} files (reasons in manifest.json)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
