"""The batch preprocessor: a Parquet-contract batch in, model-ready numeric arrays with presence masks out. It
iterates the modality registry: each modality decodes its own column."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from resmm.data.cells import UNLABELED, column_cells, label_name
from resmm.data.decoded import Decoded
from resmm.modalities import MODALITIES, Settings, nest_flat_keys


@dataclass(frozen=True)
class PreprocessSpec:
    """Everything a preprocessor needs to turn contract rows into tensors; saved with the model."""

    modalities: tuple[str, ...]
    classes: tuple[str, ...]
    # modality -> its `data.<modality>` settings with every `auto` made concrete; every registered modality has
    # one, so a spec built for some modalities still builds a model of all of them.
    settings: Mapping[str, Settings]

    @classmethod
    def from_config(cls, data_cfg, modalities: Sequence[str], classes: Sequence[str]) -> "PreprocessSpec":
        settings = {m: record.concrete(getattr(data_cfg, m))
                    for m, record in MODALITIES.items() if hasattr(data_cfg, m)}
        return cls(tuple(modalities), tuple(classes), settings)

    def input_shape(self, modality: str) -> tuple[int, ...]:
        """Shape of one preprocessed example of a modality (what its encoder consumes)."""
        return MODALITIES[modality].input_shape(self.settings[modality])

    def to_dict(self) -> dict:
        """JSON form, as saved in a registered model's bundle: {modalities, classes, <modality>: {settings}}."""
        return {"modalities": list(self.modalities), "classes": list(self.classes),
                **{m: s.model_dump() for m, s in self.settings.items()}}

    @classmethod
    def from_dict(cls, saved: Mapping[str, Any]) -> "PreprocessSpec":
        """The inverse of to_dict; also reads the flat `image_size_px`-style keys of models saved before the
        settings were nested (missing keys take today's defaults, as for the input limits added later)."""
        saved = nest_flat_keys(saved)
        settings = {m: record.settings(**(saved.get(m) or {})) for m, record in MODALITIES.items()
                    if m in saved or m in saved["modalities"]}
        return cls(tuple(saved["modalities"]), tuple(saved["classes"]), settings)


class BatchPreprocessor:
    """Callable for `Dataset.map_batches` (and the pyfunc model): decode every modality, map labels to indices.

    Output keys: `<modality>` (float32 / int64 array), `<modality>_present` (float32 0/1), `label` (int64,
    -1 for unlabeled rows or labels outside the vocabulary). A missing or undecodable modality is zero-filled
    and marked absent, so the model never mistakes padding for signal.
    """

    def __init__(self, spec: PreprocessSpec):
        self.spec = spec
        self._class_index = {name: i for i, name in enumerate(spec.classes)}

    def decode_column(self, modality: str, cells: list) -> Decoded:
        """Decode one modality's cells with its record's decoder."""
        return MODALITIES[modality].decode(cells, self.spec.settings[modality])

    def __call__(self, batch: Mapping[str, Any]) -> dict[str, np.ndarray]:
        rows = len(next(iter(batch.values())))
        out: dict[str, np.ndarray] = {}
        for modality in self.spec.modalities:
            column = batch.get(modality)
            values, present, _ = self.decode_column(modality, column_cells(column, rows))
            out[modality] = values
            out[f"{modality}_present"] = present.astype(np.float32)
        out["label"] = self.label_indices(column_cells(batch.get("label"), rows))
        return out

    def label_indices(self, labels) -> np.ndarray:
        return np.array(
            [self._class_index.get(label_name(v), UNLABELED) for v in labels], dtype=np.int64
        )
