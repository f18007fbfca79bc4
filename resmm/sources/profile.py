"""The data profile: what one streaming pass over the training rows found (class counts, modality presence)."""
from __future__ import annotations

from dataclasses import dataclass

from resmm.sources.contract import class_order


@dataclass
class DataProfile:
    """What one streaming pass over the training rows found: class counts and modality presence."""

    rows: int
    class_counts: dict  # class name (None = unlabeled) -> rows
    presence: dict  # modality -> rows where it is present
    presence_by_class: dict  # class name -> modality -> rows

    def as_summary(self) -> dict:
        labelled = {k: v for k, v in self.class_counts.items() if k is not None}
        order = class_order(labelled)
        return {
            "rows": self.rows,
            "unlabeled_rows": self.class_counts.get(None, 0),
            "class_counts": {k: labelled[k] for k in order},
            "presence": dict(self.presence),
            "presence_by_class": {k: self.presence_by_class.get(k, {}) for k in order},
        }
