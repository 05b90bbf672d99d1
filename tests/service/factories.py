"""Small builders for service tests: image bytes, crafted bombs, dataset folders, row counts."""

import io
import json
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service.models import Annotation, Project
from service.models import Image as ImageRow

CLASSES = [{"id": 0, "name": "background", "color": "#000000"},
           {"id": 1, "name": "road", "color": "#804080"},
           {"id": 2, "name": "car", "color": "#00008e"}]


def png_bytes(w: int = 8, h: int = 6, mode: str = "RGB", seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    shape = (h, w) if mode in ("L", "P") else (h, w, len(mode))
    img = Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8), mode=mode)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def jpeg_bytes(w: int = 8, h: int = 6, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()


def mask_png(arr: np.ndarray, mode: str = "L") -> bytes:
    img = Image.fromarray(arr.astype(np.uint8), mode="L")
    if mode == "P":
        img = img.convert("P")
        img.putpalette([v for i in range(256) for v in (i, 255 - i, i // 2)])
    elif mode != "L":
        img = img.convert(mode)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bomb_png(w: int, h: int) -> bytes:
    """A tiny PNG whose header claims w×h 8-bit grey pixels (its data would be w·h bytes once inflated)."""
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"\0" * 4096))
            + _chunk(b"IEND", b""))


def make_dataset(root: Path, stems=("a", "b", "c"), size=(8, 6), val=("c",), masks=True,
                 classes=CLASSES) -> Path:
    """A dataset folder in the DESIGN §3 layout; masks[i] has class ids and some 255."""
    w, h = size
    (root / "images").mkdir(parents=True)
    (root / "classes.json").write_text(json.dumps(classes))
    for i, stem in enumerate(stems):
        data = jpeg_bytes(w, h, seed=i) if i % 2 else png_bytes(w, h, seed=i)
        (root / "images" / f"{stem}{'.jpg' if i % 2 else '.png'}").write_bytes(data)
    if masks:
        (root / "masks").mkdir()
        for i, stem in enumerate(stems):
            (root / "masks" / f"{stem}.png").write_bytes(mask_png(label_array(w, h, i, len(classes))))
    if val is not None:
        (root / "splits").mkdir()
        (root / "splits" / "val.txt").write_text("".join(f"{s}\n" for s in val))
        (root / "splits" / "train.txt").write_text("".join(f"{s}\n" for s in stems if s not in val))
    return root


def label_array(w: int, h: int, seed: int, num_classes: int = 3) -> np.ndarray:
    arr = np.random.default_rng(seed).integers(0, num_classes, (h, w)).astype(np.uint8)
    arr[0, :] = 255
    return arr


def counts(session: Session) -> dict[str, int]:
    session.expire_all()
    return {name: session.scalar(select(func.count()).select_from(model))
            for name, model in (("project", Project), ("image", ImageRow), ("annotation", Annotation))}


def files_under(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file()) if path.exists() else []


def create_project(client, headers, name="p", classes=CLASSES, **extra) -> dict:
    r = client.post("/api/projects", json={"name": name, "classes": classes, **extra}, headers=headers)
    assert r.status_code == 201, r.text
    return r.json()
