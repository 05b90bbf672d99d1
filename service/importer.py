"""Import a dataset folder (DESIGN §3): validate everything first, then write everything or nothing.

Layout: classes.json, images/<stem>.png|jpg|jpeg, optional masks/<stem>.png, optional splits/train.txt
and splits/val.txt. Masks are imported as `initial` labels (annotations covering the whole image, source
"initial"), as `oracle` ground truth (stored apart, referenced by Image.oracle_mask_path, never served),
or ignored (`none`). Images listed in val.txt get split "val"; every other image is "train".

Phase 1 reads every file and collects every problem (each message names its file); any problem raises
ImportFailed and nothing is written. Phase 2 writes files and rows in one transaction; if anything fails
there (a file changed between the phases, a disk error), the rows are rolled back and the files removed.
"""

import json
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import TypeAdapter, ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from service.imaging import ImageError, probe
from service.labels import IGNORE, MaskError, add_annotation, decode_mask_png, encode_mask_png
from service.models import Annotation, Image, Project
from service.schemas.project import ClassDef, RegionSettings, TrainingSettings, check_classes
from service.storage import Storage, image_key, oracle_key, project_prefix, storage_for

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}
MASK_MODES = ("none", "initial", "oracle")
MAX_ERRORS = 50


class ImportFailed(ValueError):
    """The import was refused; nothing was written. `status` is the HTTP status to answer with."""

    def __init__(self, errors: list[str], status: int = 422):
        self.errors = errors
        self.status = status
        more = f"\n... and {len(errors) - MAX_ERRORS} more" if len(errors) > MAX_ERRORS else ""
        super().__init__("import refused, nothing was written:\n" + "\n".join(errors[:MAX_ERRORS]) + more)


@dataclass
class Planned:
    stem: str
    image_file: Path
    ext: str
    width: int
    height: int
    split: str
    mask_file: Path | None = None


@dataclass
class Plan:
    root: Path
    classes: list[dict]
    items: list[Planned] = field(default_factory=list)


MAX_NAME_BYTES, MAX_PATH_BYTES = 255, 4096  # Linux's NAME_MAX and PATH_MAX
MAX_TEXT_BYTES = 1 << 20  # classes.json and a split file: far more than any real one


class UnsafePath(ValueError):
    """A path that cannot be opened safely: a NUL byte, a name too long, a symlink loop, or a link out."""


def path_problem(path: str) -> str | None:
    """Why `path` cannot name a file (NUL byte, over-long name or path), or None."""
    if "\x00" in path:
        return "holds a NUL byte"
    if len(path.encode("utf-8", "surrogateescape")) > MAX_PATH_BYTES:
        return f"is longer than {MAX_PATH_BYTES} bytes"
    if any(len(part.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES for part in path.split("/")):
        return f"has a name longer than {MAX_NAME_BYTES} bytes"
    return None


def real_path(path: Path) -> Path:
    """`path` with every symlink resolved; UnsafePath for a loop or a path the system refuses."""
    try:
        return path.resolve()
    except RuntimeError as exc:  # Python 3.11 reports a symlink loop this way; later ones as OSError
        raise UnsafePath("a symlink loop") from exc
    except OSError as exc:
        raise UnsafePath(exc.strerror or "cannot be resolved") from exc


def inside(path: Path, root: Path) -> Path:
    """The real path of `path` if it lies inside `root` (already real), else UnsafePath. Every file and
    folder of a dataset goes through here before it is listed or read."""
    real = real_path(path)
    if real != root and root not in real.parents:
        raise UnsafePath("a link that leads outside the dataset folder")
    return real


def checked(path: Path, root: Path, rel: str, errors: list[str]) -> Path | None:
    """`inside`, reporting a refusal in `errors` (naming `rel`) instead of raising."""
    try:
        return inside(path, root)
    except UnsafePath as exc:
        errors.append(f"{rel}: {exc}")
        return None


def resolve_under(path: Path | str, import_root: Path) -> Path:
    """The real path of `path` (symlinks resolved) if it lies under the real import root, else refuse:
    403 outside the root, 422 for a path that cannot name a folder (NUL byte, too long, a loop)."""
    problem = path_problem(str(path))
    if problem:
        raise ImportFailed([f"the path {problem}"])
    root = Path(import_root).resolve()
    try:
        real = real_path(Path(path))
    except UnsafePath as exc:
        raise ImportFailed([f"{path}: {exc}"]) from exc
    if real != root and root not in real.parents:
        raise ImportFailed([f"{path}: outside the import root {root} (setting S4AL_IMPORT_ROOT)"], status=403)
    return real


def read_text(f: Path, rel: str, errors: list[str]) -> str | None:
    """A small UTF-8 text file of the dataset (already checked inside it); problems go to `errors`,
    never the file's contents."""
    if not f.is_file():
        errors.append(f"{rel}: not a regular file")
        return None
    if f.stat().st_size > MAX_TEXT_BYTES:
        errors.append(f"{rel}: larger than {MAX_TEXT_BYTES} bytes")
        return None
    try:
        return f.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        errors.append(f"{rel}: not UTF-8 text")
        return None


def _short(value: str, limit: int = 80) -> str:
    return repr(value if len(value) <= limit else value[:limit] + "…")


def _read_classes(root: Path, errors: list[str]) -> list[dict] | None:
    f = root / "classes.json"
    if not f.is_symlink() and not f.exists():
        errors.append("classes.json: missing")
        return None
    f = checked(f, root, "classes.json", errors)
    text = read_text(f, "classes.json", errors) if f else None
    if text is None:
        return None
    try:
        raw = json.loads(text)
        classes = check_classes(TypeAdapter(list[ClassDef]).validate_python(raw))
    except ValidationError as exc:  # its text would quote the file: name the places instead
        where = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'top level'}: {e['msg']}"
                          for e in exc.errors()[:5])
        errors.append(f"classes.json: {where}")
        return None
    except ValueError as exc:  # JSONDecodeError (a position only) or check_classes' own message
        errors.append(f"classes.json: {exc}")
        return None
    return [c.model_dump() for c in classes]


def _ids_names(classes: list[dict]) -> list[tuple[int, str]]:
    return sorted((c["id"], c["name"]) for c in classes)


def _read_split(root: Path, name: str, stems: set[str], errors: list[str]) -> set[str]:
    rel = f"splits/{name}"
    f = root / "splits" / name
    if not f.is_symlink() and not f.exists():
        return set()
    f = checked(f, root, rel, errors)
    text = read_text(f, rel, errors) if f else None
    if text is None:
        return set()
    out: set[str] = set()
    for n, line in enumerate(text.splitlines(), 1):
        stem = line.strip()
        if not stem or stem.startswith("#"):
            continue
        if stem not in stems:
            errors.append(f"{rel}:{n}: no image with stem {_short(stem)} in images/")
        out.add(stem)
    return out


def plan_import(root: Path, masks_mode: str, max_pixels: int, max_bytes: int,
                classes: list[dict] | None = None) -> Plan:
    """Phase 1: read and check everything; raise ImportFailed listing every problem."""
    if masks_mode not in MASK_MODES:
        raise ImportFailed([f"--masks must be one of {MASK_MODES}, not {masks_mode!r}"])
    if not root.is_dir():
        raise ImportFailed([f"{root}: not a directory"], status=404 if not root.exists() else 422)
    errors: list[str] = []
    has_file = (root / "classes.json").exists()
    folder_classes = _read_classes(root, errors) if has_file or classes is None else None
    if classes and folder_classes and _ids_names(folder_classes) != _ids_names(classes):
        errors.append("classes.json: its ids and names differ from the project's classes")
    classes = classes if classes is not None else folder_classes
    items: dict[str, Planned] = {}
    img_dir = checked(root / "images", root, "images/", errors)
    if img_dir is not None and not img_dir.is_dir():
        errors.append("images/: missing")
    elif img_dir is not None:
        for f in sorted(img_dir.iterdir()):
            rel = f"images/{f.name}"
            if f.name.startswith("."):
                continue
            real = checked(f, root, rel, errors)
            if real is None:
                continue
            if f.suffix.lower() not in IMAGE_SUFFIXES or not real.is_file():
                errors.append(f"{rel}: not a .png/.jpg/.jpeg file")
                continue
            if f.stem in items:
                errors.append(f"{rel}: stem {f.stem!r} already used by {items[f.stem].image_file.name}")
                continue
            if real.stat().st_size > max_bytes:
                errors.append(f"{rel}: larger than the limit of {max_bytes} bytes")
                continue
            data = real.read_bytes()
            try:
                info = probe(data, max_pixels)
            except ImageError as exc:
                errors.append(f"{rel}: {exc.message}")
                continue
            items[f.stem] = Planned(f.stem, real, info.ext, info.width, info.height, "train")
        if not items and not errors:
            errors.append("images/: no images")
    stems = set(items)
    val = _read_split(root, "val.txt", stems, errors)
    train = _read_split(root, "train.txt", stems, errors)
    for stem in sorted(val & train):
        errors.append(f"splits/: stem {stem!r} is in both train.txt and val.txt")
    for stem in val & stems:
        items[stem].split = "val"
    if masks_mode != "none":
        _check_masks(root, items, len(classes) if classes else 0, errors)
    if errors:
        raise ImportFailed(errors)
    return Plan(root, classes or [], list(items.values()))


def _check_masks(root: Path, items: dict[str, Planned], num_classes: int, errors: list[str]) -> None:
    mask_dir = checked(root / "masks", root, "masks/", errors)
    if mask_dir is None:
        return
    if not mask_dir.is_dir():
        errors.append("masks/: missing, but masks were asked for")
        return
    for f in sorted(mask_dir.iterdir()):
        rel = f"masks/{f.name}"
        if f.name.startswith("."):
            continue
        real = checked(f, root, rel, errors)
        if real is None:
            continue
        if f.suffix.lower() != ".png" or not real.is_file():
            errors.append(f"{rel}: not a .png file")
            continue
        item = items.get(f.stem)
        if item is None:
            errors.append(f"{rel}: no image with stem {f.stem!r} in images/")
            continue
        if num_classes == 0:
            continue  # classes.json is broken; already reported
        try:
            decode_mask_png(real.read_bytes(), item.width, item.height, num_classes)
        except MaskError as exc:
            errors.append(f"{rel}: {exc}")
            continue
        item.mask_file = real


def import_dataset(session: Session, settings, dir: Path | str, project_name: str,
                   masks_mode: str = "none", *, create: bool = True) -> dict:
    """Import a dataset folder into the project `project_name` (created from classes.json if missing
    and `create`). Returns a summary (ImportSummary's fields); raises ImportFailed, writing nothing."""
    root = resolve_under(dir, settings.import_root)
    name = project_name.strip()
    if not name or len(name) > 200:
        raise ImportFailed([f"project name {project_name!r} must be 1 to 200 characters"])
    project = session.scalar(select(Project).where(Project.name == name))
    if project is None and not create:
        raise ImportFailed([f"project {name!r} does not exist"], status=404)
    plan = plan_import(root, masks_mode, settings.max_image_pixels, settings.max_upload_bytes,
                       classes=project.classes if project else None)
    if project is not None:
        taken = set(session.scalars(select(Image.stem).where(Image.project_id == project.id,
                                                             Image.stem.in_([i.stem for i in plan.items]))))
        if taken:
            raise ImportFailed([f"images/{s}: the project already has an image with this stem"
                                for s in sorted(taken)], status=409)
    return _write(session, storage_for(settings), plan, project, name, masks_mode)


def _write(session: Session, storage: Storage, plan: Plan, project: Project | None, name: str,
           masks_mode: str) -> dict:
    created_project = project is None
    written: list[str] = []
    counts = {"train": 0, "val": 0, "initial_masks": 0, "oracle_masks": 0}
    try:
        if project is None:
            project = Project(name=name, classes=plan.classes, region=RegionSettings().model_dump(),
                              ignore_index=IGNORE, training=TrainingSettings().model_dump())
            session.add(project)
            session.flush()
        for item in plan.items:
            data = _reread(item.image_file, plan.root, "images")
            info = probe(data, 1 << 62, verify=False)  # re-read: the file may have changed since phase 1
            if (info.width, info.height) != (item.width, item.height):
                raise ImportFailed([f"images/{item.image_file.name}: changed during the import"])
            image = Image(project=project, stem=item.stem, path="", content_type=info.content_type,
                          width=item.width, height=item.height, split=item.split)
            session.add(image)
            session.flush()
            image.path = image_key(project.id, image.id, item.ext)
            storage.write_bytes(image.path, data)
            written.append(image.path)
            counts[item.split] += 1
            if item.mask_file is not None:
                _write_mask(session, storage, plan.root, image, item, len(plan.classes), masks_mode, written,
                            counts)
        session.commit()
    except BaseException:
        session.rollback()
        for key in written:
            storage.delete(key)
        if created_project and project is not None and project.id is not None:
            storage.delete_tree(project_prefix(project.id))
        raise
    return {"project_id": project.id, "project": project.name, "created_project": created_project,
            "images": counts["train"] + counts["val"], **counts}


def _reread(path: Path, root: Path, folder: str) -> bytes:
    """Phase 2 reads a file again: checked again, since it may have been swapped for a link since."""
    try:
        return inside(path, root).read_bytes()
    except UnsafePath as exc:
        raise ImportFailed([f"{folder}/{path.name}: {exc}"]) from exc


def _write_mask(session: Session, storage: Storage, root: Path, image: Image, item: Planned,
                num_classes: int, masks_mode: str, written: list[str], counts: dict) -> None:
    data = _reread(item.mask_file, root, "masks")
    try:
        mask = decode_mask_png(data, item.width, item.height, num_classes)
    except MaskError as exc:
        raise ImportFailed([f"masks/{item.mask_file.name}: {exc}"]) from exc
    if masks_mode == "oracle":
        image.oracle_mask_path = oracle_key(image.project_id, image.id)
        storage.write_bytes(image.oracle_mask_path, encode_mask_png(mask))  # palette PNGs → plain 'L'
        written.append(image.oracle_mask_path)
        counts["oracle_masks"] += 1
    elif (mask != IGNORE).any():  # an all-unlabeled initial mask adds nothing
        ann: Annotation = add_annotation(session, storage, image=image, x=0, y=0, w=item.width,
                                         h=item.height, mask=mask, source="initial")
        written.append(ann.mask_path)
        counts["initial_masks"] += 1
