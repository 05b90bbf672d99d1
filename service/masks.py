"""Masks as they travel (DESIGN §4): 8-bit PNGs of class ids, 255 = unlabeled. No database, no torch:
the importer, the dataset reader, the API and the worker all decode and check masks here."""

import io

import numpy as np
from PIL import Image as PILImage

from service.imaging import PNG_MAGIC

IGNORE = 255  # an unlabeled pixel, in masks, in training and in exports


class MaskError(ValueError):
    """A mask that is not acceptable; the message says why (the caller adds which file)."""


def encode_mask_png(arr: np.ndarray) -> bytes:
    if arr.ndim != 2 or arr.dtype != np.uint8:
        raise MaskError(f"a mask must be a 2-D uint8 array, got shape {arr.shape} dtype {arr.dtype}")
    buf = io.BytesIO()
    PILImage.fromarray(arr, mode="L").save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def decode_mask_png(data: bytes, expected_w: int, expected_h: int, num_classes: int) -> np.ndarray:
    """Decode and check a mask PNG: 8-bit 'L' or 'P' (palette indices are the class ids), exactly
    expected_w × expected_h, every value a class id in 0..num_classes-1 or 255.

    The size is checked from the header before decoding, so a huge PNG costs nothing.
    """
    if not data.startswith(PNG_MAGIC):
        raise MaskError("a mask must be a PNG file")
    try:
        img = PILImage.open(io.BytesIO(data), formats=["PNG"])
    except Exception as exc:  # DecompressionBombError included: it can never match an expected size
        raise MaskError(f"not a readable PNG: {exc}") from exc
    with img:
        if img.size != (expected_w, expected_h):
            raise MaskError(f"mask is {img.size[0]}x{img.size[1]}, expected {expected_w}x{expected_h}")
        if img.mode not in ("L", "P"):
            raise MaskError(f"mask must be an 8-bit single-channel PNG (mode L or P) of class ids, "
                            f"got mode {img.mode}")
        try:
            arr = np.array(img, dtype=np.uint8)  # for 'P' this is the palette indices, not colours
        except Exception as exc:
            raise MaskError(f"mask data is truncated or corrupt: {exc}") from exc
    check_mask_values(arr, num_classes)
    return arr


def check_mask_values(arr: np.ndarray, num_classes: int) -> None:
    bad = np.unique(arr[(arr >= num_classes) & (arr != IGNORE)])
    if bad.size:
        shown = ", ".join(str(int(v)) for v in bad[:10])
        raise MaskError(f"mask has values that are neither a class id (0..{num_classes - 1}) nor {IGNORE}: "
                        f"{shown}{' ...' if bad.size > 10 else ''}")


def dominant_class(truth: np.ndarray, shape: np.ndarray) -> int:
    """The majority class of `truth` inside `shape` (a bool array of the same size); ties go to the smallest
    id, unlabeled pixels do not vote, and a shape with no labeled pixel gives IGNORE."""
    values = truth[shape]
    values = values[values != IGNORE]
    if values.size == 0:
        return IGNORE
    return int(np.bincount(values).argmax())


def class_in_shape(shape: np.ndarray, class_id: int) -> np.ndarray:
    """The mask of a region labeled with one class: `class_id` on the pixels of `shape`, IGNORE elsewhere
    in its box."""
    return np.where(shape, np.uint8(class_id), np.uint8(IGNORE)).astype(np.uint8)
