"""Seeding for queue tests: a project with real image files, a cycle, and regions with known scores."""

import io
import struct
import zlib
from dataclasses import dataclass

import numpy as np
from PIL import Image as PILImage
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service.auth import create_token
from service.masks import encode_mask_png
from service.models import Annotation, Cycle, Image, Lease, Project, Region, Token
from service.storage import image_key, prelabel_key, storage_for

CLASSES = [{"id": 0, "name": "background", "color": "#000000"},
           {"id": 1, "name": "road", "color": "#804080"},
           {"id": 2, "name": "car", "color": "#00008e"}]


@dataclass
class Seeded:
    project_id: int
    image_ids: list[int]
    region_ids: list[int]  # best score first
    cycle_id: int


def image_png(w: int, h: int, seed: int = 0) -> bytes:
    """A small synthetic street scene (sky, road, a car), so screenshots show something readable."""
    rng = np.random.default_rng(seed)
    y = np.linspace(0, 1, h)[:, None, None]
    sky = np.array([120, 170, 230]) * (1 - y) + np.array([200, 220, 240]) * y
    img = np.broadcast_to(sky, (h, w, 3)).copy()
    img[h // 2:] = [90, 90, 96]  # road
    img[h // 2 + h // 8: h // 2 + h // 8 + 2, :] = [230, 230, 230]  # lane mark
    cx = int(rng.integers(w // 4, 3 * w // 4))
    img[h // 2 - h // 6: h // 2 + h // 10, cx - w // 8: cx + w // 8] = [200, 40, 40]  # car
    img += rng.normal(0, 6, img.shape)
    buf = io.BytesIO()
    PILImage.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def seed_queue(session: Session, settings, *, regions: int = 6, images: int = 1, size: int = 16,
               grid: tuple[int, int] = (64, 48), name: str = "proj", prelabel: bool = False,
               boxes: list[tuple[int, int]] | None = None) -> Seeded:
    """A project with `images` images of `grid` pixels and `regions` grid cells of `size` px per image
    (or the cells at the top-left corners `boxes`).

    Region scores strictly decrease in creation order, so the queue order is known.
    """
    storage = storage_for(settings)
    project = Project(name=name, classes=CLASSES, region={"kind": "grid", "size": size}, training={})
    session.add(project)
    session.flush()
    cycle = Cycle(project_id=project.id, number=1, status="succeeded")
    session.add(cycle)
    w, h = grid
    image_rows = []
    for i in range(images):
        key = image_key(project.id, f"img{i}", ".png")
        storage.write_bytes(key, image_png(w, h, seed=i))
        row = Image(project_id=project.id, stem=f"img{i}", path=key, content_type="image/png",
                    width=w, height=h, split="train")
        session.add(row)
        image_rows.append(row)
    session.flush()
    cells = boxes or [(x, y) for y in range(0, h - size + 1, size) for x in range(0, w - size + 1, size)]
    regions = len(boxes) if boxes else regions
    assert len(cells) >= regions, "grid too small for the regions asked"
    region_rows = []
    score = float(regions * images)
    for img in image_rows:
        for x, y in cells[:regions]:
            region_rows.append(Region(project_id=project.id, image_id=img.id, cycle_id=cycle.id, x=x, y=y,
                                      w=size, h=size, score=score))
            score -= 1.0
    session.add_all(region_rows)
    session.flush()
    if prelabel:
        for rank, r in enumerate(region_rows):
            key = prelabel_key(project.id, cycle.id, rank)
            storage.write_bytes(key, encode_mask_png(prelabel_array(r.w, r.h)))
            r.prelabel_path = key
    session.commit()
    return Seeded(project.id, [i.id for i in image_rows], [r.id for r in region_rows], cycle.id)


def prelabel_array(w: int, h: int) -> np.ndarray:
    """A pre-label: class 0 on the left half, class 2 on the right half."""
    arr = np.zeros((h, w), np.uint8)
    arr[:, w // 2:] = 2
    return arr


def token_row(session: Session, name: str, role: str = "annotator") -> tuple[str, Token]:
    value = create_token(session, name, role)
    from service.auth import hash_token

    return value, session.scalar(select(Token).where(Token.token_hash == hash_token(value)))


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


def mask_bytes(arr: np.ndarray, mode: str = "L") -> bytes:
    img = PILImage.fromarray(arr.astype(np.uint8), mode="L")
    if mode != "L":
        img = img.convert(mode)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def bomb_png(w: int, h: int) -> bytes:
    """A tiny PNG whose header claims w×h 8-bit grey pixels."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 4096))
            + chunk(b"IEND", b""))


def count(session: Session, model) -> int:
    session.expire_all()
    return session.scalar(select(func.count()).select_from(model))


def annotation_count(session: Session) -> int:
    return count(session, Annotation)


def lease_count(session: Session) -> int:
    return count(session, Lease)
