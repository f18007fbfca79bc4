"""Per-modality decoding and transforms: numpy batch dicts in, numpy batch dicts out (map_batches-ready)."""
