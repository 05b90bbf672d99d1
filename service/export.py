"""Export a project in the dataset folder layout (DESIGN §3), as a streamed zip or into a folder.

    classes.json            the project's classes
    images/<stem>.<ext>     the stored image bytes, unchanged
    masks/<stem>.png        labels assembled from all annotations (service.labels.assemble_labels;
                            255 = unlabeled), only for images with at least one annotation
    splits/train.txt        stems, one a line; splits/val.txt likewise when the project has a val split
    tags.json               {stem: [class ids]}: image-level tags (newest per image), only when some exist

The same layout is what `s4al import` reads, so an export can be imported as initial labels. Ground-truth
masks kept for simulation (oracle) are never exported.
"""

import json
import zipfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.labels import assemble_labels
from service.masks import encode_mask_png
from service.models import Annotation, Image, Project
from service.storage import Storage
from service.tags import tags_by_stem


def export_entries(session: Session, storage: Storage, project: Project) -> Iterator[tuple[str, bytes]]:
    """(relative path, bytes) of every file of the export, one at a time (memory: one image)."""
    yield "classes.json", (json.dumps(project.classes, indent=2) + "\n").encode()
    labeled = set(session.scalars(select(Annotation.image_id).join(Image, Image.id == Annotation.image_id)
                                  .where(Image.project_id == project.id).distinct()))
    images = list(session.scalars(select(Image).where(Image.project_id == project.id).order_by(Image.id)))
    splits: dict[str, list[str]] = {}
    for image in images:
        ext = PurePosixPath(image.path).suffix or ".png"
        yield f"images/{image.stem}{ext}", storage.read_bytes(image.path)
        if image.id in labeled:
            yield f"masks/{image.stem}.png", encode_mask_png(assemble_labels(session, storage, image))
        splits.setdefault(image.split, []).append(image.stem)
    for split in sorted(splits):
        yield f"splits/{split}.txt", ("\n".join(splits[split]) + "\n").encode()
    # --- image-level tags (PseudoSeg; read by service/tags.py) ---
    tags = tags_by_stem(session, project.id)
    if tags:
        yield "tags.json", (json.dumps(tags, indent=2) + "\n").encode()
    # --- end tags ---


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
