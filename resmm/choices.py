"""The names a config may choose from, one tuple per family of builders.

They live apart from the builders so that loading a config imports no torch (a driver, `resmm --help` and the
config reference load configs; only workers and the model server build networks). Each family's registry is
keyed by exactly these names, in this order (tests/test_architecture.py), so a new fusion, norm, imputer, loss
or resampler is one registry entry plus its name here.
"""
from __future__ import annotations

FUSION_NAMES = ("concat", "mean", "gated", "attention", "mrn", "tensor")  # resmm/models/fusion.py FUSIONS
NORM_NAMES = ("batch", "group")  # resmm/models/encoders.py NORMS
IMPUTER_NAMES = ("zero", "mean", "learned", "nearest", "regress", "mvae")  # resmm/models/imputation.py IMPUTERS
RENAMED_IMPUTERS = {"generative": "regress"}  # former names that configs and registered models may still carry
LOSS_NAMES = ("ce", "class_balanced", "focal", "logit_adjusted")  # resmm/train/losses.py LOSSES
RESAMPLER_NAMES = ("none", "balanced", "sqrt", "progressive")  # resmm/data/resample.py RESAMPLERS
