"""The modality registry: name -> record. Adding a modality is one record: a module beside these plus one entry
here, or, without touching resmm, a module of your own package registered under the `resmm.modalities` entry
point group (`[project.entry-points."resmm.modalities"] vector = "mypackage.vector:VECTOR"`), which every
process that imports resmm (drivers, Ray workers, the model server) then loads."""
from __future__ import annotations

from importlib.metadata import entry_points

from resmm.data.lengths import LengthChoice, sample_columns
from resmm.modalities.audio import AUDIO
from resmm.modalities.base import Modality, Settings
from resmm.modalities.image import IMAGE
from resmm.modalities.text import TEXT

PLUGIN_GROUP = "resmm.modalities"


class PluginError(ImportError):
    """An installed `resmm.modalities` entry point that does not load as a Modality record."""


def _plugins() -> list[Modality]:
    records = []
    for point in entry_points(group=PLUGIN_GROUP):
        try:
            record = point.load()
        except Exception as exc:  # the plugin's own error, named with where it came from
            raise PluginError(f"the {PLUGIN_GROUP} entry point {point.name} = {point.value} does not load: "
                              f"{type(exc).__name__}: {exc}") from exc
        if not isinstance(record, Modality) or record.name != point.name:
            raise PluginError(f"the {PLUGIN_GROUP} entry point {point.name} = {point.value} is not a Modality "
                              f"record named '{point.name}'")
        records.append(record)
    return records


MODALITIES: dict[str, Modality] = {m.name: m for m in (IMAGE, TEXT, AUDIO, *_plugins())}

__all__ = ["MODALITIES", "Modality", "Settings", "modality_faults", "nest_flat_keys", "resolve_lengths"]


def modality_faults() -> frozenset[str]:
    """Every registered modality's fault names: a row event among them marked its modality missing."""
    return frozenset(fault for record in MODALITIES.values() for fault in record.faults)


def nest_flat_keys(values: dict) -> dict:
    """`{"image_size_px": 48}` -> `{"image": {"size_px": 48}}`: the flat keys resmm used before each modality had
    a settings section, in configs and in the specs saved with models. A key that names no registered setting
    stays where it is (for the config's unknown-key error); a nested value given beside its flat twin wins."""
    values = dict(values)
    for key in [k for k in values if "_" in k]:
        modality, _, field = key.partition("_")
        if modality in MODALITIES and field in MODALITIES[modality].settings.model_fields:
            section = values.get(modality) or {}
            section = section.model_dump() if isinstance(section, Settings) else dict(section)
            section.setdefault(field, values.pop(key))
            values[modality] = section
    return values


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
