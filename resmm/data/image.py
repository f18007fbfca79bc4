"""Image decoding: encoded PNG/JPEG/WebP bytes of any size or mode -> normalised (C, S, S) float32 arrays."""
from __future__ import annotations

import io

import numpy as np
from PIL import Image

from resmm.data.decoded import IMAGE_TOO_LARGE, IMAGE_UNDECODABLE, Decoded

# Per-channel normalisation to roughly zero mean, unit variance for natural and document images alike.
_MEAN, _STD = 0.5, 0.25


class ImageDecodeError(ValueError):
    """The bytes are not a usable image; `reason` says why (undecodable, or too large to decode safely)."""

    def __init__(self, message: str, reason: str = IMAGE_UNDECODABLE):
        super().__init__(message)
        self.reason = reason


def decode_image(blob: bytes, size_px: int, channels: int, max_pixels: int) -> np.ndarray:
    """One encoded image -> (channels, size_px, size_px) float32, letterboxed to keep the aspect ratio.

    The pixel count is checked from the header before any pixel is decoded, so a decompression bomb costs
    nothing; Pillow's own bomb limit stays on behind it.
    """
    try:
        with Image.open(io.BytesIO(blob)) as img:
            if img.width * img.height > max_pixels:
                raise ImageDecodeError(f"{img.width}x{img.height} exceeds {max_pixels} pixels", IMAGE_TOO_LARGE)
            img.draft("L" if channels == 1 else "RGB", (size_px, size_px))  # JPEG: decode at reduced scale
            img = img.convert("L" if channels == 1 else "RGB")
            img.thumbnail((size_px, size_px), Image.Resampling.BILINEAR)
            canvas = Image.new(img.mode, (size_px, size_px))
            canvas.paste(img, ((size_px - img.width) // 2, (size_px - img.height) // 2))
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError(str(exc), IMAGE_TOO_LARGE) from exc
    except (OSError, SyntaxError, ValueError) as exc:
        if isinstance(exc, ImageDecodeError):
            raise
        raise ImageDecodeError(str(exc)) from exc
    pixels = np.asarray(canvas, dtype=np.float32) / 255.0  # (S, S) or (S, S, 3)
    if channels == 1:
        pixels = pixels[None]
    else:
        pixels = pixels.transpose(2, 0, 1)  # (3, S, S)
    return (pixels - _MEAN) / _STD


def decode_images(blobs, size_px: int, channels: int, max_pixels: int) -> Decoded:
    """A column of encoded images (None = missing) -> (N, C, S, S) float32, presence, per-row fault."""
    out = np.zeros((len(blobs), channels, size_px, size_px), dtype=np.float32)
    present = np.zeros(len(blobs), dtype=bool)
    events: list = [None] * len(blobs)
    for i, blob in enumerate(blobs):
        if blob is None or len(blob) == 0:
            continue
        try:
            out[i] = decode_image(blob, size_px, channels, max_pixels)
            present[i] = True
        except ImageDecodeError as exc:
            events[i] = exc.reason  # the modality is missing for this row; the validation pass counts it
    return Decoded(out, present, events)
