"""The image modality: encoded PNG/JPEG/WebP bytes, letterboxed to a square, through a residual CNN (default),
a small Vision Transformer, or a pretrained Hugging Face tower."""
from __future__ import annotations

import base64
import io
import math
from typing import TYPE_CHECKING, Literal

import numpy as np
from PIL import Image
from pydantic import Field

from resmm.data.image import IMAGE_TOO_LARGE, IMAGE_UNDECODABLE, decode_images, normalise_pixels, pixels_of
from resmm.modalities.base import (Encoder, Modality, PretrainedOptions, Reference, Settings, TransformerOptions,
                                   binary_column)

if TYPE_CHECKING:  # torch is imported on use: the CPU decode tasks never load it
    import torch
    from torch import nn


class ImageCfg(Settings):
    size_px: int = Field(32, ge=8, le=512)  # side of the square the image is letterboxed into
    channels: Literal[1, 3] = 3  # 1: greyscale, 3: RGB
    # An image above this many pixels is marked missing (and counted) without decoding a pixel.
    max_pixels: int = Field(25_000_000, ge=64)


def decode(cells: list, cfg: ImageCfg):
    return decode_images(cells, cfg.size_px, cfg.channels, cfg.max_pixels)


def decode_pixels(cells: list, cfg: ImageCfg):
    return decode_images(cells, cfg.size_px, cfg.channels, cfg.max_pixels, pixels=True)


def input_shape(cfg: ImageCfg) -> tuple[int, ...]:
    return (cfg.channels, cfg.size_px, cfg.size_px)


def augment(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """(B, C, H, W): random horizontal flip, rotation within ±15°, and a random 85–100% crop."""
    import torch
    import torch.nn.functional as F

    b = images.shape[0]
    flip = torch.rand(b, generator=generator) < 0.5
    angle = (torch.rand(b, generator=generator) * 2 - 1) * math.radians(15)
    scale = 0.85 + 0.15 * torch.rand(b, generator=generator)
    shift = (torch.rand(b, 2, generator=generator) * 2 - 1) * (1 - scale)[:, None]
    cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
    sign = torch.where(flip, -1.0, 1.0)
    theta = torch.stack(
        [torch.stack([cos * sign, -sin, shift[:, 0]], 1), torch.stack([sin * sign, cos, shift[:, 1]], 1)], 1
    ).to(device=images.device, dtype=images.dtype)  # (B, 2, 3)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, padding_mode="border", align_corners=False)


def build_encoder(cfg: ImageCfg, embed_dim: int, norm: str = "batch") -> nn.Module:
    from resmm.models.encoders import NORMS, ResNet2d

    return ResNet2d(cfg.channels, widths=(16, 32, 64), blocks_per_stage=1, embed_dim=embed_dim, norm=NORMS[norm],
                    downsample="maxpool")


class ViTOptions(TransformerOptions):
    depth: int = Field(4, ge=1)
    patch_px: int = Field(4, ge=1)  # side of a patch; size_px must be a multiple of it


def build_vit(cfg: ImageCfg, embed_dim: int, norm: str, options: ViTOptions) -> nn.Module:
    from resmm.models.sequence_encoders import PatchViT

    if cfg.size_px % options.patch_px or options.width % options.heads:
        raise ValueError(f"vit needs data.image.size_px ({cfg.size_px}) a multiple of patch_px "
                         f"({options.patch_px}) and width ({options.width}) a multiple of heads ({options.heads})")
    return PatchViT(cfg.channels, cfg.size_px, options.patch_px, options.width, options.depth, options.heads,
                    embed_dim, options.dropout)


def build_pretrained(cfg: ImageCfg, embed_dim: int, source: str, options) -> nn.Module:
    from resmm.models.pretrained import PretrainedImage

    return PretrainedImage.load(source, cfg.channels, embed_dim, options)


def compact(values: np.ndarray, cfg: ImageCfg) -> np.ndarray:
    return pixels_of(values)  # uint8 C×H×W: a quarter of float32, and exact


def expand(pixels: torch.Tensor, cfg: ImageCfg) -> torch.Tensor:
    return pixels if pixels.is_floating_point() else normalise_pixels(pixels.float())


def example_cell(cfg: ImageCfg) -> str:
    png = io.BytesIO()
    Image.fromarray(np.full((8, 8, 3), 128, np.uint8)).save(png, "PNG")
    return base64.b64encode(png.getvalue()).decode()


def build_reference(cfg: ImageCfg, num_classes: int) -> nn.Module:
    from resmm.models.reference import SmallCNN

    return SmallCNN(cfg.channels, num_classes)


IMAGE = Modality(
    name="image", settings=ImageCfg, column=binary_column("encoded PNG/JPEG/WebP bytes"), decode=decode,
    input_shape=input_shape, augment=augment, build_encoder=build_encoder, example_cell=example_cell,
    compact=compact, decode_compact=decode_pixels, expand=expand, default_encoder="resnet",
    encoders={"vit": Encoder(build_vit, ViTOptions)},
    pretrained=Encoder(build_pretrained, PretrainedOptions),
    reference=Reference("image CNN", build_reference), retrieval=True,
    faults=(IMAGE_UNDECODABLE, IMAGE_TOO_LARGE), decode_modules=("resmm.data.image",),
)
