"""Import a dataset folder (DESIGN §3): validate everything first, then write everything or nothing.

Layout: classes.json, images/<stem>.png|jpg|jpeg, optional masks/<stem>.png, optional splits/train.txt
and splits/val.txt. Masks are imported as `initial` labels (annotations covering the whole image, source
"initial"), as `oracle` ground truth (stored apart, referenced by Image.oracle_mask_path, never served),
or ignored (`none`). Images listed in val.txt get split "val"; every other image is "train".

Phase 1 reads every file and collects every problem (each message names its file); any problem raises
ImportFailed and nothing is written. Phase 2 writes files and rows in one transaction; if anything fails
there (a file changed between the phases, a disk error), the rows are rolled back and the files removed.
"""

from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.imaging import probe
from service.labels import add_annotation
from service.layout import (
    ImageLimits,
    LayoutError,
    LayoutItem,
    UnsafePath,
    inside,
    path_problem,
    read_layout,
    real_path,
)
from service.masks import IGNORE, MaskError, decode_mask_png, encode_mask_png
from service.models import Annotation, Image, Project
from service.schemas.project import RegionSettings, TrainingSettings
from service.storage import Storage, image_key, oracle_key, project_prefix, storage_for

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
class Plan:
    root: Path
    classes: list[dict]
    items: list[LayoutItem] = field(default_factory=list)


def resolve_under(path: Path | str, import_root: Path) -> Path:
    """The real path of `path` (symlinks resolved) if it lies under the real import root, else refuse:
    403 outside the root, 422 for a path that cannot name a folder (a NUL byte, too long, a loop)."""
    problem = path_problem(str(path))
    if problem:
        raise ImportFailed([f"the path {problem}"])
    root = Path(import_root).resolve()
    try:
        real = real_path(Path(path))
    except UnsafePath as exc:
        raise ImportFailed([f"{str(path)[-200:]}: {exc}"]) from exc
    if real != root and root not in real.parents:
        raise ImportFailed([f"{path}: outside the import root {root} (setting S4AL_IMPORT_ROOT)"], status=403)
    return real


def _ids_names(classes: list[dict]) -> list[tuple[int, str]]:
    return sorted((c["id"], c["name"]) for c in classes)


def plan_import(root: Path, masks_mode: str, max_pixels: int, max_bytes: int,
                classes: list[dict] | None = None) -> Plan:
    """Phase 1: read and check everything; raise ImportFailed listing every problem. `classes`: the
    existing project's, which the folder's classes.json (optional then) must agree with."""
    if masks_mode not in MASK_MODES:
        raise ImportFailed([f"--masks must be one of {MASK_MODES}, not {masks_mode!r}"])
    if not root.is_dir():
        raise ImportFailed([f"{root}: not a directory"], status=404 if not root.exists() else 422)
    errors: list[str] = []
    if masks_mode != "none" and not (root / "masks").is_dir():
        errors.append("masks/: missing, but masks were asked for")
    try:
        layout = read_layout(root, masks=masks_mode != "none", require_classes=classes is None,
                             limits=ImageLimits(max_bytes=max_bytes, max_pixels=max_pixels))
    except LayoutError as exc:
        raise ImportFailed(errors + exc.errors) from None
    if classes and layout.classes and _ids_names(layout.classes) != _ids_names(classes):
        errors.append("classes.json: its ids and names differ from the project's classes")
    if errors:
        raise ImportFailed(errors)
    return Plan(root, classes if classes is not None else layout.classes, layout.items)


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
            data = _reread(item.image_path, plan.root, "images")
            info = probe(data, 1 << 62, verify=False)  # re-read: the file may have changed since phase 1
            if (info.width, info.height) != (item.width, item.height):
                raise ImportFailed([f"images/{item.image_path.name}: changed during the import"])
            image = Image(project=project, stem=item.stem, path="", content_type=info.content_type,
                          width=item.width, height=item.height, split=item.split)
            session.add(image)
            session.flush()
            image.path = image_key(project.id, image.id, item.ext)
            storage.write_bytes(image.path, data)
            written.append(image.path)
            counts[item.split] += 1
            if item.mask_path is not None:
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


def _write_mask(session: Session, storage: Storage, root: Path, image: Image, item: LayoutItem,
                num_classes: int, masks_mode: str, written: list[str], counts: dict) -> None:
    data = _reread(item.mask_path, root, "masks")
    try:
        mask = decode_mask_png(data, item.width, item.height, num_classes)
    except MaskError as exc:
        raise ImportFailed([f"masks/{item.mask_path.name}: {exc}"]) from exc
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
