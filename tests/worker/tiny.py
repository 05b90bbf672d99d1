"""A tiny dataset and project for the worker tests: a few 32x32 images, three classes, seconds per cycle."""

import json
from pathlib import Path

import numpy as np
from PIL import Image as PILImage
from sqlalchemy import select
from sqlalchemy.orm import Session

from service.models import Image, Project
from service.storage import storage_for

CLASSES = [{"id": 0, "name": "background", "color": "#000000"},
           {"id": 1, "name": "square", "color": "#ff0000"},
           {"id": 2, "name": "disc", "color": "#00ff00"}]
# Few iterations and small batches: the point is the plumbing, not the accuracy.
TINY_TRAINING = {"iterations": 2, "batch_size": 2, "unlabeled_batch_size": 2, "replay_size": 0,
                 "model": "unet_small", "budget": 3, "acquisition": "entropy", "seed": 0}


def make_dataset(root: Path, n_train: int = 4, n_val: int = 2, size: int = 32, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    (root / "splits").mkdir()
    (root / "classes.json").write_text(json.dumps(CLASSES))
    stems = []
    yy, xx = np.mgrid[:size, :size]
    for i in range(n_train + n_val):
        mask = np.zeros((size, size), np.uint8)
        x, y = rng.integers(2, size // 2, 2)
        mask[y:y + size // 3, x:x + size // 3] = 1
        cx, cy = rng.integers(size // 4, 3 * size // 4, 2)
        mask[(yy - cy) ** 2 + (xx - cx) ** 2 < (size // 6) ** 2] = 2
        img = np.stack([mask == 1, mask == 2, mask == 0], -1).astype(np.uint8) * 180
        img = (img + rng.integers(0, 60, img.shape)).astype(np.uint8)
        stem = f"im{i:02d}"
        stems.append(stem)
        PILImage.fromarray(img).save(root / "images" / f"{stem}.png")
        PILImage.fromarray(mask).save(root / "masks" / f"{stem}.png")
    (root / "splits" / "val.txt").write_text("\n".join(stems[n_train:]) + "\n")
    return root


def make_project(session: Session, settings, tmp_path: Path, name: str = "tiny", training: dict | None = None,
                 region_size: int = 16, **kw) -> Project:
    """Import the tiny dataset with its masks as oracle ground truth, and set tiny training settings."""
    from service.importer import import_dataset

    folder = make_dataset(tmp_path / f"ds-{name}", **kw)
    summary = import_dataset(session, settings, folder, name, "oracle")
    project = session.get(Project, summary["project_id"])
    project.training = {**project.training, **TINY_TRAINING, **(training or {})}
    project.region = {"kind": "grid", "size": region_size}
    session.commit()
    return project


def label_with_oracle(session: Session, settings, project: Project, fraction_of_images: float = 1.0,
                      box: int = 16) -> None:
    """Give some train images a labeled box from their ground truth (as an `initial` annotation)."""
    from service.labels import add_annotation

    storage = storage_for(settings)
    images = session.scalars(select(Image).where(Image.project_id == project.id, Image.split == "train")
                             .order_by(Image.id)).all()
    for im in images[:max(1, int(len(images) * fraction_of_images))]:
        with PILImage.open(storage.path(im.oracle_mask_path)) as m:
            gt = np.array(m, np.uint8)
        add_annotation(session, storage, image=im, x=0, y=0, w=box, h=box, mask=gt[:box, :box].copy(),
                       source="initial")
    session.commit()
