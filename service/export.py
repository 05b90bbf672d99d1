"""Export a project in the dataset folder layout (DESIGN §3), as a streamed zip or into a folder.

    classes.json            the project's classes
    images/<stem>.<ext>     the stored image bytes, unchanged
    masks/<stem>.png        the materialized labels the worker trains on (service.labels.current_labels;
                            255 = unlabeled), only for images with at least one annotation
    splits/train.txt        stems, one a line; splits/val.txt likewise when the project has a val split
    tags.json               {stem: [class ids]}: image-level tags (newest per image), only when some exist

With a fill (service/fill.py) every image gets a mask: human labels as they are, other pixels from a
cycle's confident predictions; plus sources/<stem>.png (0 unlabeled, 1 human, 2 model) and report.json.

The same layout is what `s4al import` reads, so an export can be imported as initial labels. Ground-truth
masks kept for simulation (oracle) are never exported.
"""

import json
import zipfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from service.coco import CocoWriter
from service.fill import Fill
from service.labels import current_labels
from service.masks import IGNORE, encode_mask_png
from service.models import Image, Project
from service.storage import Storage
from service.tags import tags_by_stem


def _masks(session: Session, storage: Storage, project: Project,
           fill: Fill | None) -> Iterator[tuple[Image, np.ndarray | None, bytes | None]]:
    """(image, its export mask or None when it has no label, its sources PNG with a fill), one by one."""
    images = list(session.scalars(select(Image).where(Image.project_id == project.id).order_by(Image.id)))
    for image, labels in current_labels(session, storage, images):
        if fill is not None:
            human = labels if labels is not None else np.full((image.height, image.width), IGNORE, np.uint8)
            yield image, *fill.apply(storage, image, human)
        else:
            yield image, labels, None


def image_entry(storage: Storage, image: Image) -> tuple[str, bytes]:
    return f"images/{image.stem}{PurePosixPath(image.path).suffix or '.png'}", storage.read_bytes(image.path)


def export_entries(session: Session, storage: Storage, project: Project,
                   fill: Fill | None = None) -> Iterator[tuple[str, bytes]]:
    """(relative path, bytes) of every file of the export, one at a time (memory: one image)."""
    yield "classes.json", (json.dumps(project.classes, indent=2) + "\n").encode()
    splits: dict[str, list[str]] = {}
    for image, mask, sources_png in _masks(session, storage, project, fill):
        yield image_entry(storage, image)
        if mask is not None:
            yield f"masks/{image.stem}.png", encode_mask_png(mask)
        if sources_png is not None:
            yield f"sources/{image.stem}.png", sources_png
        splits.setdefault(image.split, []).append(image.stem)
    for split in sorted(splits):
        yield f"splits/{split}.txt", ("\n".join(splits[split]) + "\n").encode()
    # --- image-level tags (PseudoSeg; read by service/tags.py) ---
    tags = tags_by_stem(session, project.id)
    if tags:
        yield "tags.json", (json.dumps(tags, indent=2) + "\n").encode()
    # --- end tags ---
    if fill is not None:
        yield "report.json", (json.dumps(fill.report(), indent=2) + "\n").encode()


def coco_entries(session: Session, storage: Storage, project: Project,
                 fill: Fill | None = None) -> Iterator[tuple[str, bytes]]:
    """The COCO-style export (service/coco.py): images/ as they are, annotations.json with one RLE mask
    per class present in each image (255 pixels belong to none); with a fill, also sources/, report.json."""
    coco = CocoWriter(project.classes)
    for image, mask, sources_png in _masks(session, storage, project, fill):
        yield image_entry(storage, image)
        coco.add(image, mask)
        if sources_png is not None:
            yield f"sources/{image.stem}.png", sources_png
    yield "annotations.json", json.dumps(coco.document()).encode()
    if fill is not None:
        yield "report.json", (json.dumps(fill.report(), indent=2) + "\n").encode()


EXPORT_FORMATS = {"dataset": export_entries, "coco": coco_entries}


class _Sink:
    """A write-only, unseekable file for ZipFile: what is written is handed out by `drain`."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []

    def write(self, data: bytes) -> int:
        self._chunks.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def tell(self) -> int:  # ZipFile then writes data descriptors instead of seeking back
        raise OSError("unseekable")

    def drain(self) -> bytes:
        out, self._chunks = b"".join(self._chunks), []
        return out


def zip_stream(entries: Iterator[tuple[str, bytes]]) -> Iterator[bytes]:
    """A zip archive of `entries`, produced piece by piece (never the whole archive in memory)."""
    sink = _Sink()
    with zipfile.ZipFile(sink, "w") as zf:  # type: ignore[arg-type]
        for name, data in entries:
            # Images are already compressed; deflating them again only costs time.
            method = zipfile.ZIP_STORED if name.startswith("images/") else zipfile.ZIP_DEFLATED
            info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
            info.compress_type = method
            info.external_attr = 0o644 << 16
            zf.writestr(info, data)
            yield sink.drain()
    yield sink.drain()


def write_folder(entries: Iterator[tuple[str, bytes]], out_dir: Path) -> int:
    """Write the export into `out_dir` (which must be empty or absent); the number of files written."""
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise FileExistsError(f"{out_dir} is not empty")
    n = 0
    for name, data in entries:
        target = out_dir / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        n += 1
    return n
