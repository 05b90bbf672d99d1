"""Checking uploaded image bytes: the type by content, the size from the header, then a bounded decode.

The order matters for decompression bombs: the size is read from the header (Pillow's `Image.open` is
lazy) and checked against the pixel cap *before* any pixel is decoded, so a 100k×100k PNG of a few
kilobytes is refused for the price of reading its header. Only images under the cap are decoded whole,
to refuse truncated or corrupt files at upload rather than in the middle of a training cycle.
"""

import io
import warnings
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"

# content type -> (Pillow format, file extension)
KINDS = {"image/png": ("PNG", ".png"), "image/jpeg": ("JPEG", ".jpg")}


class ImageError(ValueError):
    """Bad image bytes. `status` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class ImageInfo:
    content_type: str
    ext: str
    width: int
    height: int


def sniff(data: bytes) -> str | None:
    """The content type from the magic bytes, or None when it is neither PNG nor JPEG."""
    if data.startswith(PNG_MAGIC):
        return "image/png"
    if data.startswith(JPEG_MAGIC):
        return "image/jpeg"
    return None


def open_header(data: bytes, fmt: str) -> Image.Image:
    """Open lazily (header only). Pillow's own bomb guard is mapped to 413; our cap is checked by callers.

    Pillow warns above `Image.MAX_IMAGE_PIXELS` and raises above twice that; the warning is silenced so
    that our own cap (a setting) decides, and the error means the image is far over any sane cap.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(data), formats=[fmt])
    except Image.DecompressionBombError as exc:
        raise ImageError(413, f"image is a decompression bomb: {exc}") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageError(415, f"not a readable {fmt} image: {exc}") from exc


def probe(data: bytes, max_pixels: int, *, verify: bool = True) -> ImageInfo:
    """Check image bytes and return their type and size.

    415: not PNG/JPEG by content (the file name is never trusted); 413: more pixels than `max_pixels`,
    refused from the header alone; 422: the header is fine but the pixel data is truncated or corrupt.
    """
    content_type = sniff(data)
    if content_type is None:
        raise ImageError(415, "not a PNG or JPEG image (checked by content, not by name)")
    fmt, ext = KINDS[content_type]
    img = open_header(data, fmt)
    width, height = img.size
    if width <= 0 or height <= 0:
        raise ImageError(422, f"image has an empty size {width}x{height}")
    if width * height > max_pixels:
        raise ImageError(413, f"image is {width}x{height} = {width * height} pixels, over the cap of "
                              f"{max_pixels} pixels")
    if verify:
        try:
            img.load()
        except Exception as exc:  # Pillow raises OSError, SyntaxError, ValueError... on corrupt data
            raise ImageError(422, f"image data is truncated or corrupt: {exc}") from exc
    img.close()
    return ImageInfo(content_type, ext, width, height)
