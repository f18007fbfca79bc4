"""Pretrained towers from Hugging Face transformers (`model.encoders.<modality>=hf:<dir or model id>`), frozen or
fine-tuned under a learned projection to the embedding, as AutoGluon's multimodal predictor uses them.

Optional: `pip install 'resmm[pretrained]'`. Weights come from a local directory (`save_pretrained`'s format) or
a model id in the Hugging Face cache (HF_HOME; HF_HUB_OFFLINE=1 where there is no internet). Each tower does its
own preprocessing from the tower's files (image size, mean and std; the tokenizer is pinned in the data spec),
and exposes it as `preprocessing`, which the model bundle records and serving checks.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from resmm.data.image import unit_pixels
from resmm.data.text import PRETRAINED_EXTRA

def load_tower(source: str):
    """AutoModel.from_pretrained(source) with one-line errors for a missing extra or unreachable weights."""
    try:
        from transformers import AutoModel
    except ImportError:
        raise ValueError(f"hf:{source} needs Hugging Face transformers: {PRETRAINED_EXTRA}") from None
    from transformers.utils import logging as hf_logging

    if source.startswith(("/", ".", "~")) and not Path(source).expanduser().is_dir():
        raise ValueError(f"cannot load the pretrained tower 'hf:{source}': no such directory")

    hf_logging.disable_progress_bar()  # a bar per load in every worker's log says nothing
    try:
        return AutoModel.from_pretrained(source)
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot load the pretrained tower 'hf:{source}': {str(exc).splitlines()[0]}") from None


class _Tower(nn.Module):
    """A tower plus a projection to (B, D); `freeze` keeps the tower's weights and its dropout off."""

    def __init__(self, tower: nn.Module, hidden: int, embed_dim: int, mode: str, preprocessing: dict):
        super().__init__()
        self.tower = tower
        self.frozen = mode == "freeze"
        if self.frozen:
            self.tower.requires_grad_(False)
        self.norm = nn.LayerNorm(hidden)
        self.project = nn.Linear(hidden, embed_dim)
        self.preprocessing = preprocessing

    def train(self, mode: bool = True):
        super().train(mode)
        if self.frozen:
            self.tower.eval()  # a frozen tower is a fixed feature extractor: no dropout noise in its features
        return self


class PretrainedImage(_Tower):
    """resmm's decoded images (B, C, S, S) -> back to 0..1 pixels, resized to the tower's size and normalised with
    its mean and std -> the tower's pooled output (or its mean over positions) -> (B, D)."""

    @classmethod
    def load(cls, source: str, channels: int, embed_dim: int, options) -> "PretrainedImage":
        tower = load_tower(source)
        config = tower.config
        processor = _preprocessor_config(source)
        size = processor.get("size", {})
        side = int(size.get("height") or size.get("shortest_edge") or getattr(config, "image_size", 224)
                   if isinstance(size, dict) else size)
        preprocessing = {"source": source, "size_px": side, "channels": int(getattr(config, "num_channels", 3)),
                         "mean": list(processor.get("image_mean", [0.5] * 3)),
                         "std": list(processor.get("image_std", [0.5] * 3)), "mode": options.mode}
        hidden = int(getattr(config, "hidden_size", None) or config.hidden_sizes[-1])
        return cls(tower, hidden, embed_dim, options.mode, preprocessing)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        p = self.preprocessing
        pixels = unit_pixels(images)  # (B, C, S, S) in 0..1
        if pixels.shape[1] != p["channels"]:
            pixels = pixels.mean(1, keepdim=True).expand(-1, p["channels"], -1, -1)
        pixels = F.interpolate(pixels, size=(p["size_px"], p["size_px"]), mode="bilinear", align_corners=False)
        mean = pixels.new_tensor(p["mean"]).view(1, -1, 1, 1)
        std = pixels.new_tensor(p["std"]).view(1, -1, 1, 1)
        output = self.tower(pixel_values=(pixels - mean) / std)
        return self.project(self.norm(_pooled(output)))


class PretrainedText(_Tower):
    """Token ids from the tower's own tokenizer (data.text.tokenizer, shifted by one so 0 is padding) -> the
    tower with an attention mask -> mean of its last hidden states over real tokens -> (B, D)."""

    @classmethod
    def load(cls, source: str, embed_dim: int, options) -> "PretrainedText":
        tower = load_tower(source)
        if getattr(tower, "pooler", None) is not None:
            tower.pooler = None  # the mean of the hidden states is used: an unused pooler would stall DDP's reducer
        pad_id = getattr(tower.config, "pad_token_id", None) or 0
        preprocessing = {"source": source, "tokenizer": f"hf:{source}", "pad_token_id": int(pad_id),
                         "mode": options.mode}
        return cls(tower, int(tower.config.hidden_size), embed_dim, options.mode, preprocessing)

    def forward(self, token_ids: torch.Tensor) -> torch.Tensor:
        real = token_ids != 0
        attend = real.clone()
        attend[:, 0] |= ~real.any(1)  # a row with no token attends to one pad: finite, and marked absent anyway
        ids = torch.where(real, token_ids - 1, torch.full_like(token_ids, self.preprocessing["pad_token_id"]))
        hidden = self.tower(input_ids=ids, attention_mask=attend.long()).last_hidden_state  # (B, T, H)
        weights = attend.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * weights).sum(1) / weights.sum(1)
        return self.project(self.norm(pooled))


def _pooled(output) -> torch.Tensor:
    pooled = getattr(output, "pooler_output", None)
    if pooled is not None:
        return pooled.flatten(1)  # (B, H); CNN towers pool to (B, H, 1, 1)
    hidden = output.last_hidden_state
    return hidden.mean(1) if hidden.dim() == 3 else hidden.mean((2, 3))


def _preprocessor_config(source: str) -> dict:
    """The tower's preprocessor_config.json (size, image_mean, image_std), read as JSON: the image processor
    classes of transformers want torchvision, which does not install beside resmm's torch."""
    path = Path(source).expanduser() / "preprocessor_config.json"
    if not path.is_file():
        try:
            from huggingface_hub import hf_hub_download

            path = Path(hf_hub_download(source, "preprocessor_config.json"))
        except Exception:  # a tower without one: its config's image_size, and 0.5 / 0.5 normalisation
            return {}
    return json.loads(path.read_text())


def pretrained_preprocessing(network: nn.Module) -> dict:
    """modality -> the preprocessing of its pretrained tower, for the model bundle (empty without towers)."""
    return {m: encoder.preprocessing for m, encoder in network.encoders.items() if isinstance(encoder, _Tower)}
