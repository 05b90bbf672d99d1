"""Read and validate a dataset folder in the DESIGN §3 layout, for `s4al simulate` and the benchmarks.

    classes.json        [{"id": 0, "name": "background", "color": "#000000"}, ...]  ids 0..K-1
    images/<stem>.png|jpg|jpeg
    masks/<stem>.png    optional; 8-bit (mode L or P) class ids, 255 = unlabeled, same size as the image
    splits/train.txt    optional; stems, one a line ('#' comments and blank lines skipped)
    splits/val.txt      optional; evaluation only

Splits follow the service's importer: images listed in val.txt are `val`, every other image is `train`
(train.txt, when present, is checked: its stems must exist and must not be in val.txt).

`read_dataset` checks the whole folder (headers of all images, every mask decoded and its values
checked) and raises one `DatasetError` listing every problem, each naming its file, so that nothing
trains on a broken folder. Pixels are loaded on demand as numpy arrays (HxWx3 uint8 images, HxW uint8
masks).

No val.txt: simulation still needs a held-out set, so `simulation_split` holds out a deterministic
~10% of the train stems: those whose SHA-1 of the stem ranks lowest (at least one image, and at least
one left for training). It depends only on the stems, not on file order or on a seed, so every run and
every arm evaluate on the same images.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
IGNORE = 255
MAX_CLASSES = 255
MAX_ERRORS = 50
_COLOR = re.compile(r"^#[0-9a-fA-F]{6}$")
_IMAGE_MODES = ("1", "L", "LA", "P", "PA", "RGB", "RGBA", "CMYK", "YCbCr")


class DatasetError(ValueError):
    """The dataset folder is invalid. `.errors` lists every problem, each starting with its file."""

    def __init__(self, root: Path | str, errors: list[str]):
        self.errors = errors
        more = f"\n  ... and {len(errors) - MAX_ERRORS} more" if len(errors) > MAX_ERRORS else ""
        super().__init__(f"invalid dataset folder {root}:\n  " + "\n  ".join(errors[:MAX_ERRORS]) + more)


@dataclass
class DatasetItem:
    stem: str
    image_path: Path
    width: int
    height: int
    split: str  # "train" | "val"
    mask_path: Path | None = None


@dataclass
class Dataset:
    root: Path
    classes: list[dict]  # sorted by id: {"id", "name", "color"}
    items: list[DatasetItem] = field(default_factory=list)  # sorted by stem
    has_val_split: bool = False
    _index: dict[str, DatasetItem] = field(default_factory=dict, repr=False)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def class_names(self) -> list[str]:
        return [c["name"] for c in self.classes]

    def item(self, stem: str) -> DatasetItem:
        if len(self._index) != len(self.items):
            self._index = {it.stem: it for it in self.items}
        return self._index[stem]

    def stems(self, split: str) -> list[str]:
        return [it.stem for it in self.items if it.split == split]

    def simulation_split(self, val_fraction: float = 0.1) -> tuple[list[str], list[str]]:
        """(train stems, val stems): val.txt when present, else the deterministic fallback."""
        if self.has_val_split:
            return self.stems("train"), self.stems("val")
        train = self.stems("train")
        val = set(fallback_val_stems(train, val_fraction))
        return [s for s in train if s not in val], [s for s in train if s in val]

    def load_image(self, stem: str) -> np.ndarray:
        return load_image(self.item(stem).image_path)

    def load_mask(self, stem: str) -> np.ndarray | None:
        it = self.item(stem)
        if it.mask_path is None:
            return None
        return load_mask(it.mask_path, it.width, it.height, self.num_classes)

    def load(self, stems: list[str]) -> tuple[list[np.ndarray], list[np.ndarray | None]]:
        """Images and masks (None where an image has no mask) for these stems, in order."""
        return [self.load_image(s) for s in stems], [self.load_mask(s) for s in stems]


def fallback_val_stems(stems: list[str], fraction: float = 0.1) -> list[str]:
    """A deterministic held-out subset: the ceil(fraction * n) stems with the smallest SHA-1, sorted."""
    if len(stems) < 2:
        return []
    n = min(len(stems) - 1, max(1, math.ceil(fraction * len(stems))))
    ranked = sorted(stems, key=lambda s: hashlib.sha1(s.encode()).hexdigest())
    return sorted(ranked[:n])


def load_image(path: Path) -> np.ndarray:
    """HxWx3 uint8 RGB (grey, palette and alpha images are converted; alpha is dropped)."""
    try:
        with Image.open(path) as img:
            if img.mode not in _IMAGE_MODES:
                raise DatasetError(path.parent.parent, [f"images/{path.name}: unsupported image mode "
                                                        f"{img.mode} (use 8-bit RGB or grey)"])
            return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()
    except (OSError, SyntaxError, ValueError) as exc:
        if isinstance(exc, DatasetError):
            raise
        raise DatasetError(path.parent.parent, [f"images/{path.name}: cannot be decoded: {exc}"]) from exc


def load_mask(path: Path, width: int, height: int, num_classes: int) -> np.ndarray:
    """HxW uint8 class ids; raises DatasetError naming the file for any layout violation."""
    problem = None
    try:
        with Image.open(path) as img:
            if img.format != "PNG":
                problem = f"not a PNG file (found {img.format})"
            elif img.mode not in ("L", "P"):
                problem = (f"must be an 8-bit single-channel PNG of class ids (mode L or P), "
                           f"got mode {img.mode}")
            elif img.size != (width, height):
                problem = f"is {img.size[0]}x{img.size[1]} but its image is {width}x{height}"
            else:
                arr = np.asarray(img, dtype=np.uint8).copy()  # 'P': the palette indices are the ids
    except (OSError, SyntaxError, ValueError) as exc:
        problem = f"cannot be decoded: {exc}"
    if problem is None:
        bad = np.unique(arr[(arr >= num_classes) & (arr != IGNORE)])
        if bad.size:
            problem = (f"has values {', '.join(str(int(v)) for v in bad[:10])} that are neither a class id "
                       f"(0..{num_classes - 1}) nor {IGNORE}")
    if problem is not None:
        raise DatasetError(path.parent.parent, [f"masks/{path.name}: {problem}"])
    return arr


def read_dataset(root: Path | str, *, require_masks: bool = False) -> Dataset:
    """Validate the folder and return its index; `require_masks`: every image must have a mask
    (simulation and evaluation need ground truth)."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(root, [f"{root}: not a directory"])
    errors: list[str] = []
    classes = _read_classes(root / "classes.json", errors)
    items = _read_images(root / "images", errors)
    val = _read_split(root / "splits" / "val.txt", items, errors)
    train = _read_split(root / "splits" / "train.txt", items, errors)
    for stem in sorted((val or set()) & (train or set())):
        errors.append(f"splits/: stem {stem!r} is in both train.txt and val.txt")
    for stem in val or ():
        if stem in items:
            items[stem].split = "val"
    _read_masks(root / "masks", items, len(classes) if classes else 0, errors)
    if require_masks:
        errors += [f"masks/{s}.png: missing (every image needs a ground-truth mask here)"
                   for s in sorted(items) if not (root / "masks" / f"{s}.png").exists()]
    if errors:
        raise DatasetError(root, errors)
    return Dataset(root, classes, [items[s] for s in sorted(items)], has_val_split=val is not None)


def _read_classes(path: Path, errors: list[str]) -> list[dict] | None:
    if not path.is_file():
        errors.append("classes.json: missing")
        return None
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        errors.append(f"classes.json: not valid JSON: {exc}")
        return None
    if not isinstance(raw, list) or not raw:
        errors.append("classes.json: must be a non-empty list of {\"id\", \"name\", \"color\"} objects")
        return None
    problems: list[str] = []
    for n, c in enumerate(raw):
        if not isinstance(c, dict) or set(c) != {"id", "name", "color"}:
            problems.append(f"entry {n} must have exactly the keys id, name, color")
        elif not isinstance(c["id"], int) or isinstance(c["id"], bool):
            problems.append(f"entry {n}: id must be an integer, got {c['id']!r}")
        elif not isinstance(c["name"], str) or not c["name"].strip():
            problems.append(f"entry {n}: name must be a non-empty string")
        elif not isinstance(c["color"], str) or not _COLOR.match(c["color"]):
            problems.append(f"entry {n}: color must be #rrggbb, got {c['color']!r}")
    if not problems:
        ids = sorted(c["id"] for c in raw)
        names = [c["name"] for c in raw]
        if len(raw) > MAX_CLASSES:
            problems.append(f"at most {MAX_CLASSES} classes (255 means unlabeled), got {len(raw)}")
        elif ids != list(range(len(raw))):
            problems.append(f"ids must be unique and contiguous 0..{len(raw) - 1}, got {ids}")
        if len(set(names)) != len(names):
            problems.append(f"duplicate class names: {sorted({x for x in names if names.count(x) > 1})}")
    errors += [f"classes.json: {p}" for p in problems]
    return None if problems else sorted(raw, key=lambda c: c["id"])


def _read_images(folder: Path, errors: list[str]) -> dict[str, DatasetItem]:
    items: dict[str, DatasetItem] = {}
    if not folder.is_dir():
        errors.append("images/: missing")
        return items
    for f in sorted(folder.iterdir()):
        if f.name.startswith("."):
            continue
        rel = f"images/{f.name}"
        if not f.is_file() or f.suffix.lower() not in IMAGE_SUFFIXES:
            errors.append(f"{rel}: not a .png/.jpg/.jpeg file")
            continue
        if f.stem in items:
            errors.append(f"{rel}: stem {f.stem!r} already used by images/{items[f.stem].image_path.name}")
            continue
        try:
            with Image.open(f) as img:  # header only
                width, height, mode = img.width, img.height, img.mode
        except (OSError, SyntaxError, ValueError) as exc:
            errors.append(f"{rel}: not a readable image: {exc}")
            continue
        if mode not in _IMAGE_MODES:
            errors.append(f"{rel}: unsupported image mode {mode} (use 8-bit RGB or grey)")
            continue
        items[f.stem] = DatasetItem(f.stem, f, width, height, "train")
    if not items and not errors:
        errors.append("images/: no images")
    return items


def _read_split(path: Path, items: dict[str, DatasetItem], errors: list[str]) -> set[str] | None:
    if not path.exists():
        return None
    rel = f"splits/{path.name}"
    stems: set[str] = set()
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        errors.append(f"{rel}: cannot be read: {exc}")
        return stems
    for n, line in enumerate(lines, 1):
        stem = line.strip()
        if not stem or stem.startswith("#"):
            continue
        if stem in stems:
            errors.append(f"{rel}:{n}: stem {stem!r} listed twice")
        elif items and stem not in items:
            errors.append(f"{rel}:{n}: no image with stem {stem!r} in images/")
        stems.add(stem)
    return stems


def _read_masks(folder: Path, items: dict[str, DatasetItem], num_classes: int, errors: list[str]) -> None:
    if not folder.exists():
        return
    if not folder.is_dir():
        errors.append("masks: not a directory")
        return
    for f in sorted(folder.iterdir()):
        if f.name.startswith("."):
            continue
        rel = f"masks/{f.name}"
        if not f.is_file() or f.suffix.lower() != ".png":
            errors.append(f"{rel}: not a .png file")
            continue
        item = items.get(f.stem)
        if item is None:
            errors.append(f"{rel}: no image with stem {f.stem!r} in images/")
            continue
        if num_classes == 0:
            continue  # classes.json is broken: already reported, values cannot be checked
        try:
            load_mask(f, item.width, item.height, num_classes)
        except DatasetError as exc:
            errors += exc.errors
            continue
        item.mask_path = f
