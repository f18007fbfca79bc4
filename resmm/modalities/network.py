"""The network of a run: each modality's encoder from its record, then the fusion, imputer and heads."""
from __future__ import annotations

from torch import nn

from resmm.modalities import MODALITIES
from resmm.models.fusion import build_fusion, classifier_head
from resmm.models.imputation import build_imputer
from resmm.models.multimodal import MultimodalResidualNet


def build_model(model_cfg, spec, impute: str = "zero") -> MultimodalResidualNet:
    """The network for a run, from the model config and the preprocessing spec (input shapes, classes)."""
    d = model_cfg.embed_dim
    encoders = {m: MODALITIES[m].build(model_cfg.encoder_of(m), spec.settings[m], d, model_cfg.norm,
                                       model_cfg.encoder_options.get(m)) for m in model_cfg.modalities}
    fusion = build_fusion(model_cfg.fusion, list(model_cfg.modalities), d, model_cfg.fusion_depth, model_cfg.dropout)
    head = classifier_head(d, len(spec.classes), model_cfg.dropout)
    imputer = build_imputer(impute, list(model_cfg.modalities), d)
    aux_heads = {m: classifier_head(d, len(spec.classes), model_cfg.dropout) for m in model_cfg.modalities}
    retrieval = ({m: nn.Linear(d, d) for m in model_cfg.modalities if MODALITIES[m].retrieval}
                 if model_cfg.retrieval else None)
    return MultimodalResidualNet(encoders, fusion, head, imputer, aux_heads, retrieval)
