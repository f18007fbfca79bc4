"""Builders: where the fusions' and heads' numbers live (each encoder's live in its resmm/modalities module)."""
from __future__ import annotations

from torch import nn

from resmm.modalities import MODALITIES
from resmm.models.fusion import AttentionFusion, ConcatFusion, GatedFusion, MeanFusion, MRNFusion, TensorFusion
from resmm.models.imputation import build_imputer
from resmm.models.multimodal import MultimodalResidualNet

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
    encoders = {m: MODALITIES[m].build(model_cfg.encoder_of(m), spec.settings[m], d, model_cfg.norm,
                                       model_cfg.encoder_options.get(m)) for m in model_cfg.modalities}
    fusion = build_fusion(model_cfg.fusion, list(model_cfg.modalities), d, model_cfg.fusion_depth, model_cfg.dropout)
    head = classifier_head(d, len(spec.classes), model_cfg.dropout)
    imputer = build_imputer(impute, list(model_cfg.modalities), d)
    aux_heads = {m: classifier_head(d, len(spec.classes), model_cfg.dropout) for m in model_cfg.modalities}
    retrieval = {m: nn.Linear(d, d) for m in model_cfg.modalities} if model_cfg.retrieval else None
    return MultimodalResidualNet(encoders, fusion, head, imputer, aux_heads, retrieval)


def classifier_head(embed_dim: int, num_classes: int, dropout: float) -> nn.Module:
    return nn.Sequential(nn.LayerNorm(embed_dim), nn.Dropout(dropout), nn.Linear(embed_dim, num_classes))
