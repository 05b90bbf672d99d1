"""COCO-style segmentation JSON: one annotation per class present in each image, its pixels as a
compressed RLE (the string form pycocotools writes and CVAT, Label Studio and detectron2 read).

- `categories`: every class, `id` = class id + 1 (COCO keeps 0 for "no category"), `name`, `color`,
  and `s4al_class_id`.
- `images`: `id` (the service's image id), `file_name` (`<stem>.<ext>`, under images/), size, split.
- `annotations`: `segmentation` = {"size": [h, w], "counts": str}, column-major runs starting with a
  run of zeros, `iscrowd` = 1 (COCO's flag for RLE masks), `area` and `bbox` [x, y, w, h].
Unlabeled pixels (255) belong to no annotation.
"""

from pathlib import PurePosixPath

import numpy as np

from service.masks import IGNORE
from service.models import Image


def rle_counts(mask: np.ndarray) -> list[int]:
    """Run lengths of a binary H×W mask in column-major order, the first run counting zeros."""
    flat = np.asarray(mask, dtype=bool).ravel(order="F")
    if flat.size == 0:
        return []
    edges = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    runs = np.diff(np.concatenate(([0], edges, [flat.size]))).tolist()
    return [0, *runs] if flat[0] else runs


def rle_string(counts: list[int]) -> str:
    """pycocotools' compact form: each count (after the second, minus the count two before) in 5-bit
    groups, low first, with a continuation bit, offset by 48 into printable ASCII."""
    out = []
    for i, count in enumerate(counts):
        x = count - counts[i - 2] if i > 2 else count
        more = True
        while more:
            c = x & 0x1F
            x >>= 5
            more = x != -1 if c & 0x10 else x != 0
            if more:
                c |= 0x20
            out.append(chr(c + 48))
    return "".join(out)


def bbox(mask: np.ndarray) -> list[int]:
    ys, xs = np.nonzero(mask)
    return [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)]


class CocoWriter:
    """Collects images and their masks one at a time; `document()` is the COCO JSON (RLE strings only
    are kept, never the masks)."""

    def __init__(self, classes: list[dict]) -> None:
        self.categories = [{"id": int(c["id"]) + 1, "name": c["name"], "color": c.get("color"),
                            "supercategory": "", "s4al_class_id": int(c["id"])}
                           for c in sorted(classes, key=lambda c: c["id"])]
        self.images: list[dict] = []
        self.annotations: list[dict] = []

    def add(self, image: Image, mask: np.ndarray | None) -> None:
        ext = PurePosixPath(image.path).suffix or ".png"
        self.images.append({"id": image.id, "file_name": f"{image.stem}{ext}", "width": image.width,
                            "height": image.height, "split": image.split})
        if mask is None:
            return
        h, w = mask.shape
        for class_id in np.unique(mask):
            if class_id == IGNORE:
                continue
            binary = mask == class_id
            self.annotations.append({
                "id": len(self.annotations) + 1, "image_id": image.id, "category_id": int(class_id) + 1,
                "segmentation": {"size": [h, w], "counts": rle_string(rle_counts(binary))},
                "area": int(binary.sum()), "bbox": bbox(binary), "iscrowd": 1})

    def document(self) -> dict:
        return {"info": {"description": "s4al export", "version": "1.0"}, "licenses": [],
                "categories": self.categories, "images": self.images, "annotations": self.annotations}
