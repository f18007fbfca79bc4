"""The modality registry: name -> record. Adding a modality is one module beside these plus one entry here."""
from __future__ import annotations

from resmm.data.lengths import LengthChoice, sample_columns
from resmm.modalities.audio import AUDIO
from resmm.modalities.base import Modality, Settings
from resmm.modalities.image import IMAGE
from resmm.modalities.text import TEXT

MODALITIES: dict[str, Modality] = {m.name: m for m in (IMAGE, TEXT, AUDIO)}

__all__ = ["MODALITIES", "Modality", "Settings", "resolve_lengths"]


def resolve_lengths(cfg, filesystem, paths: list[str]) -> tuple[object, list[LengthChoice]]:
    """`cfg` with every `auto` length measured from the shards at `paths` (as `filesystem` names them), and the
    choices made (empty if none was auto). Only the sampled rows are read, no footers beyond theirs."""
    auto = {m: MODALITIES[m].auto_length for m in cfg.model.modalities if MODALITIES[m].auto_length is not None}
    auto = {m: length for m, length in auto.items() if getattr(getattr(cfg.data, m), length.field) == "auto"}
    if not auto:
        return cfg, []
    cells = sample_columns(filesystem, list(paths), list(auto))
    update, choices = {}, []
    for m, length in auto.items():
        settings = getattr(cfg.data, m)
        choice = length.choose(cells[m], settings)
        update[m] = settings.model_copy(update={length.field: choice.value})
        choices.append(choice)
    return cfg.model_copy(update={"data": cfg.data.model_copy(update=update)}), choices
