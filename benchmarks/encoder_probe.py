"""Why does an encoder trail the reference? Train encoder variants alone, under one fixed recipe, on a corpus.

    python benchmarks/encoder_probe.py --corpus demo|stamps --modality image|text|audio [--variants a,b]
                                       [--epochs 12] [--seeds 0] [key=value ...]

Every variant sees the same decoded tensors and split as resmm and the reference (resmm/baselines/reference.py
decodes them once; they are cached under /tmp between calls), and the reference's recipe: Adam lr 1e-3,
batch 64, class-balanced sampling, cross-entropy. Only the network differs, so a gap is the architecture's.
Prints a table; writes benchmarks/results/encoder_probe-<corpus>-<modality>.json.
"""
from __future__ import annotations

import argparse
import json
import pickle
import statistics
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import torch
from torch import nn

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from resmm.baselines import reference  # noqa: E402
from resmm.config import load_config  # noqa: E402
from resmm.modalities.spec import PreprocessSpec  # noqa: E402
from resmm.datasets import demo, stamps  # noqa: E402
from resmm.modalities.audio import AUDIO  # noqa: E402
from resmm.modalities.image import IMAGE  # noqa: E402
from resmm.modalities.text import TEXT  # noqa: E402
from resmm.modalities import MODALITIES  # noqa: E402
from resmm.models import encoders, fusion  # noqa: E402


class EncoderClassifier(nn.Module):
    """An encoder (B, ...) -> (B, D) with resmm's classifier head on top."""

    def __init__(self, encoder: nn.Module, embed_dim: int, num_classes: int):
        super().__init__()
        self.encoder = encoder
        self.head = fusion.classifier_head(embed_dim, num_classes, dropout=0.1)

    def forward(self, x):
        return self.head(self.encoder(x))


def registered(spec: PreprocessSpec, modality: str, k: int, d: int) -> dict:
    """Every alternative encoder of the modality's registry (model.encoders.<modality>=<name>), default options."""
    record = MODALITIES[modality]
    return {name: (lambda name=name: EncoderClassifier(record.build(name, spec.settings[modality], d, "batch", None),
                                                        d, k))
            for name in record.encoders}


def variants(spec: PreprocessSpec, modality: str, k: int, d: int = 128) -> dict:
    return {**hand_built(spec, modality, k, d), **registered(spec, modality, k, d)}


def hand_built(spec: PreprocessSpec, modality: str, k: int, d: int) -> dict:
    def resnet(c, widths, norm="batch", downsample="stride"):
        return encoders.ResNet2d(c, widths, 1, d, encoders.NORMS[norm], downsample=downsample)

    if modality == "image":
        c = spec.settings["image"].channels
        return {
            "reference": lambda: reference.build_reference_model("image", spec),
            "resmm": lambda: EncoderClassifier(IMAGE.build_encoder(spec.settings["image"], d), d, k),  # today's builder
            "stride": lambda: EncoderClassifier(resnet(c, (16, 32, 64)), d, k),  # the builder before maxpool
            "stride_group": lambda: EncoderClassifier(resnet(c, (16, 32, 64), "group"), d, k),
            "stride_wide": lambda: EncoderClassifier(resnet(c, (32, 64, 128)), d, k),
            "maxpool": lambda: EncoderClassifier(resnet(c, (16, 32, 64), downsample="maxpool"), d, k),
            "maxpool_wide": lambda: EncoderClassifier(resnet(c, (32, 64, 128), downsample="maxpool"), d, k),
        }
    if modality == "audio":
        return {
            "reference": lambda: reference.build_reference_model("audio", spec),
            "resmm": lambda: EncoderClassifier(AUDIO.build_encoder(spec.settings["audio"], d), d, k),
            "maxpool": lambda: EncoderClassifier(encoders.AudioResNet(resnet(1, (16, 32, 64), downsample="maxpool")),
                                                 d, k),
        }
    return {
        "reference": lambda: reference.build_reference_model("text", spec),
        "resmm": lambda: EncoderClassifier(TEXT.build_encoder(spec.settings["text"], d), d, k),
    }


def decoded_corpus(corpus: str, overrides: list[str]) -> tuple:
    cache = Path("/tmp") / f"resmm-probe-v2-{corpus}-{zlib.crc32(repr(overrides).encode()):08x}.pkl"
    if cache.exists():
        return pickle.loads(cache.read_bytes())
    path = demo.path_or_default(None, print) if corpus == "demo" else str(stamps.default_path() / "train")
    cfg = reference.with_measured_lengths(load_config(None, [f"data.path={path}", *overrides]))
    train, val, classes = reference.decode_split(cfg)
    cache.write_bytes(pickle.dumps((cfg, train, val, classes)))
    return cfg, train, val, classes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", choices=["demo", "stamps"], required=True)
    parser.add_argument("--modality", choices=["image", "text", "audio"], required=True)
    parser.add_argument("--variants", default=None)
    parser.add_argument("--epochs", type=int, default=reference.EPOCHS)
    parser.add_argument("--seeds", default="0")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    torch.set_num_threads(reference.THREADS)

    cfg, train, val, classes = decoded_corpus(args.corpus, args.overrides)
    spec = PreprocessSpec.from_config(cfg.data, cfg.model.modalities, classes)
    m, k = args.modality, len(classes)
    rows = np.flatnonzero(train[f"{m}_present"] > 0)
    val_rows = np.flatnonzero(val[f"{m}_present"] > 0)
    x_train, y_train = reference.as_tensor(train[m][rows]), train["label"][rows]
    x_val, y_val = reference.as_tensor(val[m][val_rows]), val["label"][val_rows]
    table = variants(spec, m, k)
    chosen = args.variants.split(",") if args.variants else list(table)
    results = {}
    for name in chosen:
        scores, seconds = [], []
        for seed in map(int, args.seeds.split(",")):
            torch.manual_seed(seed)
            model = table[name]()
            started = time.perf_counter()
            reference.fit(model, x_train, y_train, k, args.epochs, seed, name, lambda line: None)
            seconds.append(time.perf_counter() - started)
            predictions = reference.log_probabilities(model, x_val).argmax(axis=1)
            scores.append(reference.scores(y_val, predictions, k)["balanced_accuracy"])
        params = sum(p.numel() for p in table[name]().parameters())
        results[name] = {"balanced_accuracy": scores, "median": statistics.median(scores),
                         "params": params, "train_s": round(statistics.median(seconds), 1)}
        print(f"{args.corpus:7s} {m:6s} {name:14s} bal.acc {statistics.median(scores):.3f} {scores} "
              f"params {params:,} {statistics.median(seconds):.0f}s", flush=True)
    out = REPO_ROOT / "benchmarks" / "results" / f"encoder_probe-{args.corpus}-{m}.json"
    previous = json.loads(out.read_text()) if out.exists() else {}
    out.write_text(json.dumps(previous | {"epochs": args.epochs, "overrides": args.overrides,
                                           "train_rows": len(rows), "val_rows": len(val_rows),
                                           "variants": previous.get("variants", {}) | results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
