"""Builders: the one place where architecture numbers live (depths, widths), keyed by config."""
from __future__ import annotations

from torch import nn

from resmm.models.encoders import AudioResNet, ResNet2d, TextResConv, batch_norm, group_norm
from resmm.models.fusion import AttentionFusion, ConcatFusion, GatedFusion, MeanFusion, MRNFusion, TensorFusion
from resmm.models.imputation import build_imputer
from resmm.models.multimodal import MultimodalResidualNet

# `model.norm` name -> normalisation layer of the convolutional encoders.
NORMS = {"batch": batch_norm, "group": group_norm}


def image_resnet(in_channels: int, embed_dim: int, norm: str = "batch") -> nn.Module:
    return ResNet2d(in_channels, widths=(16, 32, 64), blocks_per_stage=1, embed_dim=embed_dim, norm=NORMS[norm],
                    downsample="maxpool")


def audio_resnet(embed_dim: int, norm: str = "batch") -> nn.Module:
    return AudioResNet(ResNet2d(1, widths=(16, 32, 64), blocks_per_stage=1, embed_dim=embed_dim, norm=NORMS[norm]))


def text_resconv(vocab_buckets: int, embed_dim: int) -> nn.Module:
    return TextResConv(vocab_buckets, width=64, depth=2, embed_dim=embed_dim)


# `model.fusion` name -> builder(modalities, embed_dim, depth, dropout); the fusions' own numbers live here.
FUSIONS = {
    "concat": lambda modalities, d, depth, dropout: ConcatFusion(modalities, d),
    "mean": lambda modalities, d, depth, dropout: MeanFusion(modalities, d),
    "gated": lambda modalities, d, depth, dropout: GatedFusion(modalities, d),
    "attention": lambda modalities, d, depth, dropout: AttentionFusion(modalities, d, heads=4, dropout=dropout),
    "mrn": lambda modalities, d, depth, dropout: MRNFusion(modalities, d, depth, dropout),
    "tensor": lambda modalities, d, depth, dropout: TensorFusion(modalities, d, rank=4),
}


def build_fusion(name: str, modalities: list[str], embed_dim: int, depth: int, dropout: float) -> nn.Module:
    if name not in FUSIONS:
        raise ValueError(f"unknown fusion '{name}'")
    return FUSIONS[name](modalities, embed_dim, depth, dropout)


def build_model(model_cfg, spec, impute: str = "zero") -> MultimodalResidualNet:
    """The network for a run, from the model config and the preprocessing spec (input shapes, classes)."""
    d = model_cfg.embed_dim
    makers = {
        "image": lambda: image_resnet(spec.image_channels, d, model_cfg.norm),
        "text": lambda: text_resconv(spec.text_vocab_buckets, d),
        "audio": lambda: audio_resnet(d, model_cfg.norm),
    }
    encoders = {m: makers[m]() for m in model_cfg.modalities}
    fusion = build_fusion(model_cfg.fusion, list(model_cfg.modalities), d, model_cfg.fusion_depth, model_cfg.dropout)
    head = classifier_head(d, len(spec.classes), model_cfg.dropout)
    imputer = build_imputer(impute, list(model_cfg.modalities), d)
    aux_heads = {m: classifier_head(d, len(spec.classes), model_cfg.dropout) for m in model_cfg.modalities}
    retrieval = {m: nn.Linear(d, d) for m in model_cfg.modalities} if model_cfg.retrieval else None
    return MultimodalResidualNet(encoders, fusion, head, imputer, aux_heads, retrieval)


def classifier_head(embed_dim: int, num_classes: int, dropout: float) -> nn.Module:
    return nn.Sequential(nn.LayerNorm(embed_dim), nn.Dropout(dropout), nn.Linear(embed_dim, num_classes))
