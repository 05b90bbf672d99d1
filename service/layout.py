"""The one reader of a dataset folder (DESIGN §3), for the importer and for `s4al simulate`.

    classes.json        [{"id": 0, "name": "background", "color": "#000000"}, ...]  ids 0..K-1
    images/<stem>.png|jpg|jpeg
    masks/<stem>.png    optional; 8-bit (mode L or P) class ids, 255 = unlabeled, same size as the image
    splits/train.txt    optional; stems, one a line ('#' comments and blank lines skipped)
    splits/val.txt      optional; evaluation only

Images listed in val.txt are `val`, every other image is `train` (train.txt, when present, is checked:
its stems must exist, appear once, and not be in val.txt). Every problem is collected and raised at once
in one `LayoutError`, each message naming its file. Every file is checked to lie inside the folder
before it is read (a link out of the folder is refused, never followed).

Paths are hostile input (an import path comes from an API client): a NUL byte, an over-long name, a
symlink loop, a FIFO or a huge text file is a problem reported by name, never a crash, a hang or an echo
of a file's contents. `path_problem` and `real_path` serve the importer's own check of the folder.

Images are checked to their header by default (cheap on a large pool); with `ImageLimits` (the importer)
each is read whole, checked by content and against the byte and pixel caps, and decoded.
No database and no torch here.
"""

import errno
import json
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image as PILImage

from service.imaging import ImageError, probe
from service.masks import MaskError, decode_mask_png
from service.schemas.project import MAX_CLASSES

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
MAX_ERRORS = 50
MAX_NAME_BYTES, MAX_PATH_BYTES = 255, 4096  # Linux's NAME_MAX and PATH_MAX
MAX_TEXT_BYTES = 1 << 20  # classes.json and a split file: far more than any real one
_IMAGE_MODES = ("1", "L", "LA", "P", "PA", "RGB", "RGBA", "CMYK", "YCbCr")
_COLOR_HEX = set("0123456789abcdefABCDEF")


class LayoutError(ValueError):
    """The folder does not follow the layout. `.errors` lists every problem, each starting with its file."""

    def __init__(self, root: Path | str, errors: list[str]):
        self.root = root
        self.errors = errors
        more = f"\n  ... and {len(errors) - MAX_ERRORS} more" if len(errors) > MAX_ERRORS else ""
        super().__init__(f"invalid dataset folder {root}:\n  " + "\n  ".join(errors[:MAX_ERRORS]) + more)


@dataclass(frozen=True)
class ImageLimits:
    max_bytes: int
    max_pixels: int


@dataclass
class LayoutItem:
    stem: str
    image_path: Path
    width: int
    height: int
    split: str  # "train" | "val"
    mask_path: Path | None = None
    ext: str = ""  # ".png" | ".jpg", by content; only known when images were read whole


@dataclass
class Layout:
    root: Path
    classes: list[dict] | None  # sorted by id: {"id", "name", "color"}; None when the folder has none
    items: list[LayoutItem] = field(default_factory=list)  # sorted by stem
    has_val_split: bool = False


def read_layout(root: Path | str, *, masks: bool = True, require_masks: bool = False,
                require_classes: bool = True, limits: ImageLimits | None = None) -> Layout:
    """Check the whole folder and return its index. `masks=False` ignores masks/ entirely;
    `require_masks`: every image must have a mask (simulation needs ground truth)."""
    root = Path(root)
    if not root.is_dir():
        raise LayoutError(root, [f"{root}: not a directory"])
    real_root = root.resolve()
    errors: list[str] = []
    classes = None
    if require_classes or (root / "classes.json").exists():
        classes = _read_classes(root, real_root, errors)
    items = _read_images(root, real_root, limits, errors)
    val = _read_split(root, real_root, "val.txt", items, errors)
    train = _read_split(root, real_root, "train.txt", items, errors)
    for stem in sorted((val or set()) & (train or set())):
        errors.append(f"splits/: stem {stem!r} is in both train.txt and val.txt")
    for stem in val or ():
        if stem in items:
            items[stem].split = "val"
    if masks:
        _read_masks(root, real_root, items, len(classes) if classes else 0, require_masks, errors)
    if errors:
        raise LayoutError(root, errors)
    return Layout(root, classes, [items[s] for s in sorted(items)], has_val_split=val is not None)


class UnsafePath(ValueError):
    """A path that cannot be followed safely: a symlink loop, a dangling link, a link out of the folder."""


def path_problem(path: str) -> str | None:
    """Why `path` cannot name a file (a NUL byte, a name or path too long), or None."""
    if "\x00" in path:
        return "holds a NUL byte"
    if len(path.encode("utf-8", "surrogateescape")) > MAX_PATH_BYTES:
        return f"is longer than {MAX_PATH_BYTES} bytes"
    if any(len(part.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES for part in path.split("/")):
        return f"has a name longer than {MAX_NAME_BYTES} bytes"
    return None


def real_path(path: Path, strict: bool = False) -> Path:
    """`path` with every link resolved; UnsafePath naming the problem otherwise."""
    try:
        return path.resolve(strict=strict)
    except RuntimeError as exc:  # Python 3.11 reports a symlink loop this way, later ones as OSError
        raise UnsafePath("a symlink loop") from exc
    except OSError as exc:
        raise UnsafePath("a symlink loop" if exc.errno == errno.ELOOP else
                         f"cannot be resolved ({exc.strerror or type(exc).__name__})") from exc


def inside(path: Path, real_root: Path) -> Path:
    """The real path of a file or folder of the dataset if it lies inside it, else UnsafePath."""
    real = real_path(path, strict=True)
    if real != real_root and real_root not in real.parents:
        raise UnsafePath("a link that leads outside the dataset folder")
    return real


def _inside(path: Path, real_root: Path, rel: str, errors: list[str]) -> bool:
    """`inside` as a check: a refusal goes to `errors`, naming `rel`."""
    try:
        inside(path, real_root)
    except UnsafePath as exc:
        errors.append(f"{rel}: {exc}")
        return False
    return True


def _read_text(path: Path, real_root: Path, rel: str, errors: list[str]) -> str | None:
    """A small UTF-8 text file of the dataset; a problem goes to `errors`, never its contents."""
    if not _inside(path, real_root, rel, errors):
        return None
    if not path.is_file():  # a FIFO or a device would block or never end
        errors.append(f"{rel}: not a regular file")
        return None
    if path.stat().st_size > MAX_TEXT_BYTES:
        errors.append(f"{rel}: larger than {MAX_TEXT_BYTES} bytes")
        return None
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        errors.append(f"{rel}: cannot be read: {type(exc).__name__}")
        return None


def _read_classes(root: Path, real_root: Path, errors: list[str]) -> list[dict] | None:
    path = root / "classes.json"
    if not path.exists() and not path.is_symlink():
        errors.append("classes.json: missing")
        return None
    text = _read_text(path, real_root, "classes.json", errors)
    if text is None:
        return None
    try:
        raw = json.loads(text)
    except ValueError as exc:
        errors.append(f"classes.json: not valid JSON: {exc.args[0][:80] if exc.args else exc}")
        return None
    problems = _class_problems(raw)
    errors += [f"classes.json: {p}" for p in problems]
    return None if problems else sorted(raw, key=lambda c: c["id"])


def _class_problems(raw) -> list[str]:
    """What is wrong with a parsed classes.json; messages quote the file's values only briefly."""
    if not isinstance(raw, list) or not raw:
        return ["must be a non-empty list of {\"id\", \"name\", \"color\"} objects"]
    problems: list[str] = []
    for n, c in enumerate(raw):
        if not isinstance(c, dict) or set(c) != {"id", "name", "color"}:
            problems.append(f"entry {n} must have exactly the keys id, name, color")
        elif not isinstance(c["id"], int) or isinstance(c["id"], bool):
            problems.append(f"entry {n}: id must be an integer")
        elif not isinstance(c["name"], str) or not c["name"].strip() or len(c["name"]) > 100:
            problems.append(f"entry {n}: name must be a non-empty string of at most 100 characters")
        elif not _is_color(c["color"]):
            problems.append(f"entry {n}: color must be #rrggbb")
    if problems:
        return problems
    ids = [c["id"] for c in raw]
    names = [c["name"] for c in raw]
    if len(raw) > MAX_CLASSES:
        problems.append(f"at most {MAX_CLASSES} classes (255 means unlabeled), got {len(raw)}")
    elif len(set(ids)) != len(ids):
        problems.append(f"duplicate class ids: {sorted({i for i in ids if ids.count(i) > 1})}")
    elif sorted(ids) != list(range(len(raw))):
        problems.append(f"ids must be unique and contiguous 0..{len(raw) - 1}, got {sorted(ids)[:20]}")
    if len(set(names)) != len(names):
        problems.append(f"duplicate class names: {sorted({x for x in names if names.count(x) > 1})[:10]}")
    return problems


def _is_color(value) -> bool:
    return isinstance(value, str) and len(value) == 7 and value[0] == "#" and set(value[1:]) <= _COLOR_HEX


def _read_images(root: Path, real_root: Path, limits: ImageLimits | None,
                 errors: list[str]) -> dict[str, LayoutItem]:
    folder = root / "images"
    items: dict[str, LayoutItem] = {}
    if not folder.is_dir():
        errors.append("images/: missing")
        return items
    if not _inside(folder, real_root, "images/", errors):  # never list a folder outside
        return items
    for f in sorted(folder.iterdir()):
        if f.name.startswith("."):
            continue
        rel = f"images/{f.name}"
        if not _inside(f, real_root, rel, errors):
            continue
        if f.suffix.lower() not in IMAGE_SUFFIXES or not f.is_file():
            errors.append(f"{rel}: not a .png/.jpg/.jpeg file")
            continue
        if f.stem in items:
            errors.append(f"{rel}: stem {f.stem!r} already used by images/{items[f.stem].image_path.name}")
            continue
        item = _read_image(f, rel, limits, errors)
        if item is not None:
            items[f.stem] = item
    if not items and not errors:
        errors.append("images/: no images")
    return items


def _read_image(f: Path, rel: str, limits: ImageLimits | None, errors: list[str]) -> LayoutItem | None:
    if limits is not None:  # whole file: type by content, byte and pixel caps, a full decode
        if f.stat().st_size > limits.max_bytes:
            errors.append(f"{rel}: larger than the limit of {limits.max_bytes} bytes")
            return None
        try:
            info = probe(f.read_bytes(), limits.max_pixels)
        except ImageError as exc:
            errors.append(f"{rel}: {exc.message}")
            return None
        return LayoutItem(f.stem, f, info.width, info.height, "train", ext=info.ext)
    try:
        with PILImage.open(f) as img:  # header only
            width, height, mode = img.width, img.height, img.mode
    except (OSError, SyntaxError, ValueError) as exc:
        errors.append(f"{rel}: not a readable image: {exc}")
        return None
    if mode not in _IMAGE_MODES:
        errors.append(f"{rel}: unsupported image mode {mode} (use 8-bit RGB or grey)")
        return None
    return LayoutItem(f.stem, f, width, height, "train")


def _read_split(root: Path, real_root: Path, name: str, items: dict[str, LayoutItem],
                errors: list[str]) -> set[str] | None:
    path = root / "splits" / name
    if not path.exists() and not path.is_symlink():
        return None
    rel = f"splits/{name}"
    text = _read_text(path, real_root, rel, errors)
    stems: set[str] = set()
    for n, line in enumerate((text or "").splitlines(), 1):
        stem = line.strip()
        if not stem or stem.startswith("#"):
            continue
        if stem in stems:
            errors.append(f"{rel}:{n}: stem {stem[:80]!r} listed twice")
        elif items and stem not in items:
            errors.append(f"{rel}:{n}: no image with stem {stem[:80]!r} in images/")
        stems.add(stem)
    return stems


def _read_masks(root: Path, real_root: Path, items: dict[str, LayoutItem], num_classes: int,
                required: bool, errors: list[str]) -> None:
    folder = root / "masks"
    if folder.exists() and not folder.is_dir():
        errors.append("masks: not a directory")
        return
    if folder.is_dir() and not _inside(folder, real_root, "masks/", errors):  # never list a folder outside
        return
    for f in sorted(folder.iterdir()) if folder.is_dir() else ():
        if f.name.startswith("."):
            continue
        rel = f"masks/{f.name}"
        if not _inside(f, real_root, rel, errors):
            continue
        if f.suffix.lower() != ".png" or not f.is_file():
            errors.append(f"{rel}: not a .png file")
            continue
        item = items.get(f.stem)
        if item is None:
            errors.append(f"{rel}: no image with stem {f.stem!r} in images/")
            continue
        if num_classes == 0:
            continue  # classes.json is broken: already reported, values cannot be checked
        try:
            decode_mask_png(f.read_bytes(), item.width, item.height, num_classes)
        except MaskError as exc:
            errors.append(f"{rel}: {exc}")
            continue
        item.mask_path = f
    if required:
        errors += [f"masks/{s}.png: missing (every image needs a ground-truth mask here)"
                   for s in sorted(items) if not (folder / f"{s}.png").exists()]
