"""Image decoding: encoded PNG/JPEG/WebP bytes of any size or mode -> (C, S, S) uint8 pixels, normalised to
float32 model inputs where a model reads them."""
from __future__ import annotations

import io
from functools import partial

import numpy as np
from PIL import Image

from resmm.data.decoded import DecodeError, Decoded, decode_cells

IMAGE_UNDECODABLE = "image_undecodable"  # faults
IMAGE_TOO_LARGE = "image_too_large"

# Per-channel normalisation to roughly zero mean, unit variance for natural and document images alike.
_MEAN, _STD = 0.5, 0.25


def decode_image(blob: bytes, size_px: int, channels: int, max_pixels: int) -> np.ndarray:
    """One encoded image -> (channels, size_px, size_px) uint8 pixels, letterboxed to keep the aspect ratio.

    The pixel count is checked from the header before any pixel is decoded, so a decompression bomb costs
    nothing; Pillow's own bomb limit stays on behind it.
    """
    try:
        with Image.open(io.BytesIO(blob)) as img:
            if img.width * img.height > max_pixels:
                raise DecodeError(f"{img.width}x{img.height} exceeds {max_pixels} pixels", IMAGE_TOO_LARGE)
            img.draft("L" if channels == 1 else "RGB", (size_px, size_px))  # JPEG: decode at reduced scale
            img = img.convert("L" if channels == 1 else "RGB")
            img.thumbnail((size_px, size_px), Image.Resampling.BILINEAR)
            canvas = Image.new(img.mode, (size_px, size_px))
            canvas.paste(img, ((size_px - img.width) // 2, (size_px - img.height) // 2))
    except Image.DecompressionBombError as exc:
        raise DecodeError(str(exc), IMAGE_TOO_LARGE) from exc
    except (OSError, SyntaxError, ValueError) as exc:
        if isinstance(exc, DecodeError):
            raise
        raise DecodeError(str(exc), IMAGE_UNDECODABLE) from exc
    pixels = np.asarray(canvas, dtype=np.uint8)  # (S, S) or (S, S, 3)
    return pixels[None] if channels == 1 else pixels.transpose(2, 0, 1)  # (C, S, S)


def normalise_pixels(pixels):
    """0..255 float32 pixels (numpy or torch) -> model input. One expression for the decoder and for the cache's
    uint8 pixels widened on the worker, so both give bit-identical values."""
    return (pixels / 255.0 - _MEAN) / _STD


def unit_pixels(values):
    """Model input (numpy or torch) -> pixels in 0..1, for towers that normalise in their own way."""
    return values * _STD + _MEAN


def pixels_of(values: np.ndarray) -> np.ndarray:
    """The exact inverse of normalise_pixels for decoded values: uint8 pixels (every value came from one)."""
    return np.rint((values * _STD + _MEAN) * 255.0).clip(0, 255).astype(np.uint8)


def decode_images(blobs, size_px: int, channels: int, max_pixels: int, pixels: bool = False) -> Decoded:
    """A column of encoded images (None = missing) -> (N, C, S, S) float32 model inputs, presence, per-row fault;
    with `pixels`, the uint8 pixels themselves (the cache's compact form: quantised once, by the decoder)."""
    decode_one = partial(_decode_cell, size_px=size_px, channels=channels, max_pixels=max_pixels)
    decoded = decode_cells(blobs, (channels, size_px, size_px), decode_one, np.uint8)
    if pixels:
        return decoded
    values = np.zeros(decoded.values.shape, np.float32)  # absent rows stay zeros, not normalised black
    values[decoded.present] = normalise_pixels(decoded.values[decoded.present].astype(np.float32))
    return decoded._replace(values=values)


def _decode_cell(blob: bytes, size_px: int, channels: int, max_pixels: int) -> tuple[np.ndarray, None]:
    return decode_image(blob, size_px, channels, max_pixels), None
