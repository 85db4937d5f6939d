"""The one image decoder: training and prediction decode with the same function, so a model
sees the same pixels in both."""

from __future__ import annotations

import io
from pathlib import Path
from typing import BinaryIO

import numpy as np

JPEG_MAGIC = b"\xff\xd8\xff"
"""How every JPEG file starts, whatever its name."""
REDUCING_GAP = 3.0
"""Pillow's ``reducing_gap``: an image at least this many times the size is first reduced
by a whole factor (box averages), then filtered."""


def decode_image(path: str | Path, size: int) -> np.ndarray:
    """Decode one image file to uint8 RGB of shape (size, size, 3).

    The format is found from the content, not the extension. EXIF orientation is applied,
    the first frame of an animation is used, transparency is composited onto white,
    16-bit and float images are scaled to 8 bits, and the image is resized (squashed,
    like Keras's ``image_dataset_from_directory``) with bilinear filtering. Plain JPEGs
    take libjpeg-turbo's fast path (same pixels), everything else Pillow's. Raises
    ``OSError`` (or Pillow's ``UnidentifiedImageError`` / ``DecompressionBombError``)
    for a file that is not a readable image. Only a JPEG is read whole at once; any other
    file is identified from its header first, so a large non-image costs a few bytes.
    """
    with open(path, "rb") as handle:
        if handle.read(len(JPEG_MAGIC)) != JPEG_MAGIC:
            handle.seek(0)
            return _decode_with_pillow(handle, size)
        data = JPEG_MAGIC + handle.read()
    pixels = _decode_plain_jpeg(data, size)
    if pixels is not None:
        return pixels
    return _decode_with_pillow(io.BytesIO(data), size)


def _decode_with_pillow(file: BinaryIO, size: int) -> np.ndarray:
    """``decode_image`` for any format Pillow reads: the general (and fallback) path."""
    from PIL import Image, ImageOps

    with Image.open(file) as image:
        image.draft("RGB", (size, size))  # JPEG: decode at a reduced scale when large
        image = ImageOps.exif_transpose(image)
        if image.mode in ("I", "F") or image.mode.startswith("I;16"):
            image = _to_8bit(image)
        if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
            image = image.convert("RGBA")
            background = Image.new("RGBA", image.size, (255, 255, 255, 255))
            image = Image.alpha_composite(background, image)
        if image.mode != "RGB":
            image = image.convert("RGB")
        return _squash(image, size)


def _squash(image, size: int) -> np.ndarray:
    """A Pillow image resized to ``size`` x ``size`` (bilinear), as a uint8 array."""
    from PIL import Image

    if image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=REDUCING_GAP)
    return np.asarray(image, dtype=np.uint8)


def _decode_plain_jpeg(data: bytes, size: int) -> np.ndarray | None:
    """A baseline or progressive YCbCr / greyscale JPEG decoded by libjpeg-turbo (several
    times faster than through Pillow), or ``None`` for Pillow to handle: other colour
    spaces (CMYK), an orientation to apply, a possible decompression bomb, any error."""
    import simplejpeg
    from PIL import Image

    if not _upright(data):
        return None
    try:
        height, width, colour, _ = simplejpeg.decode_jpeg_header(data)
        if colour not in ("YCbCr", "Gray"):
            return None
        if Image.MAX_IMAGE_PIXELS and width * height > Image.MAX_IMAGE_PIXELS:
            return None  # Pillow warns, or refuses a bomb with its reason
        # the DCT scale Pillow's draft() picks: the largest of 1/8, 1/4, 1/2 keeping >= size
        scale = next((s for s in (8, 4, 2) if min(width // size, height // size) >= s), 1)
        pixels = simplejpeg.decode_jpeg(
            data, "rgb", min_width=-(-width // scale), min_height=-(-height // scale)
        )
    except ValueError:  # truncated, corrupt or unusual: Pillow decodes it or says why
        return None
    if pixels.shape[:2] == (size, size):
        return pixels
    return _squash(Image.fromarray(pixels), size)


def _upright(jpeg: bytes) -> bool:
    """Whether a JPEG's header leaves its pixels as stored: no EXIF orientation but 1,
    no XMP orientation (which Pillow honours too); ``False`` when unsure."""
    if b"\xff\xe1" not in jpeg:  # no APP1 (EXIF or XMP) segment anywhere
        return True
    at = 2
    while at + 4 <= len(jpeg) and jpeg[at] == 0xFF:
        marker = jpeg[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if marker == 0xDA:  # start of scan: every header segment seen
            return True
        end = at + 2 + int.from_bytes(jpeg[at + 2 : at + 4], "big")
        if marker == 0xE1:
            segment = jpeg[at + 4 : end]
            if segment.startswith(b"Exif\0\0") and _exif_orientation(segment[6:]) != 1:
                return False
            if b"tiff:Orientation" in segment:
                return False
        at = end
    return False


def _exif_orientation(tiff: bytes) -> int | None:
    """The orientation tag of an EXIF block's first IFD (1 if absent; None if unreadable)."""
    order = {b"II": "little", b"MM": "big"}.get(tiff[:2])
    if order is None:
        return None
    ifd = int.from_bytes(tiff[4:8], order)
    for entry in range(ifd + 2, ifd + 2 + 12 * int.from_bytes(tiff[ifd : ifd + 2], order), 12):
        if int.from_bytes(tiff[entry : entry + 2], order) == 0x0112:
            return int.from_bytes(tiff[entry + 8 : entry + 10], order)
    return 1


def _to_8bit(image):
    """A 16-bit or 32-bit greyscale image as 8-bit ``L``: Pillow's convert would clip."""
    from PIL import Image

    pixels = np.asarray(image, dtype=np.float64)
    if image.mode != "F" and pixels.max(initial=0) > 255:
        pixels = pixels / 257.0  # 16-bit range onto 8 bits
    return Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8), "L")
