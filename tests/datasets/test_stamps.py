"""The stamps corpus: in the contract, Zipf-tailed, a stamp-disjoint holdout, 64-px RGB, 1.5 s clips at 22050 Hz."""
import hashlib
import importlib.util
import io
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile
from PIL import Image

from pipelines.ingest import scan_source
from resmm.datasets import stamps
from resmm.datasets.stamps import CLASSES, StampsSpec, build, class_counts, is_built

JOBS = Path(__file__).resolve().parents[2] / "jobs"
needs_package = pytest.mark.skipif(
    not Path("/usr/share/tuxpaint/stamps").exists(),
    reason="Debian package tuxpaint-stamps-default is not installed (make stamps-data installs it)",
)
SPEC = StampsSpec(rows=200, shards=2, holdout_rows=48, holdout_shards=1)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return build(tmp_path_factory.mktemp("a") / "stamps", SPEC, progress=lambda _: None)


def column_digest(table, column):
    digest = hashlib.sha256()
    for value in table.column(column).to_pylist():
        digest.update(b"\0" if value is None else (value if isinstance(value, bytes) else value.encode()))
    return digest.hexdigest()


def test_default_profile_is_a_zipf_tail_of_ratio_25():
    counts = class_counts(StampsSpec())
    assert counts.sum() == 6000 and len(counts) == len(CLASSES) == 16
    assert 23 <= counts.max() / counts.min() <= 27
    ranked = np.sort(counts)[::-1]
    assert ranked[0] / ranked[1] > 1.5  # Zipf: the head stands out, unlike a geometric decay


@needs_package
def test_stamps_are_in_the_contract_with_missing_modalities(tiny):
    assert is_built(tiny, SPEC)
    source = scan_source(str(tiny / "train"), ["image", "text", "audio"])
    assert len(source.shards) == 2 and source.num_rows == 200
    table = pq.read_table(tiny / "train")
    assert len(set(table.column("sample_id").to_pylist())) == 200
    for modality in ("image", "text", "audio"):
        missing = table.column(modality).null_count / 200
        assert 0.13 < missing < 0.37, (modality, missing)
    nulls = np.array([table.column(m).is_null().to_numpy(zero_copy_only=False) for m in ("image", "text", "audio")])
    assert not nulls.all(axis=0).any()


@needs_package
def test_rows_are_grouped_by_their_stamp(tiny):
    table = pq.read_table(tiny / "train")
    assert table.column("group_id").to_pylist() == table.column("stamp").to_pylist()


@needs_package
def test_training_labels_follow_the_class_counts(tiny):
    labels = pq.read_table(tiny / "train").column("label").to_pylist()
    unlabeled = labels.count(None)
    assert unlabeled <= 15
    seen = Counter(label for label in labels if label is not None)
    assert set(seen) == set(CLASSES)
    expected = dict(zip(CLASSES, class_counts(SPEC).tolist()))
    assert all(seen[label] <= expected[label] for label in CLASSES)
    assert sum(expected.values()) - sum(seen.values()) == unlabeled


@needs_package
def test_images_and_clips_have_the_promised_shape(tiny):
    table = pq.read_table(tiny / "train")
    formats = Counter()
    for blob in table.column("image").drop_null().to_pylist():
        image = Image.open(io.BytesIO(blob))
        formats[image.format] += 1
        assert image.size == (64, 64) and image.mode == "RGB"
    assert set(formats) == {"PNG", "JPEG"}
    for blob in table.column("audio").drop_null().to_pylist():
        info = soundfile.info(io.BytesIO(blob))
        formats[info.format] += 1
        assert info.samplerate == 22050 and info.channels == 1 and info.frames == int(1.5 * 22050)
    assert {"WAV", "FLAC"} <= set(formats)


@needs_package
def test_holdout_stamps_never_appear_in_training(tiny):
    train, holdout = pq.read_table(tiny / "train"), pq.read_table(tiny / "holdout")
    assert holdout.num_rows == 48 and holdout.column("label").null_count == 0
    assert set(Counter(holdout.column("label").to_pylist()).values()) == {3}  # 48 rows over 16 classes
    train_stamps = set(train.column("stamp").to_pylist())
    holdout_stamps = set(holdout.column("stamp").to_pylist())
    assert holdout_stamps and not train_stamps & holdout_stamps
    pool_train, pool_holdout = stamps.split_stamps(stamps.load_catalogue(), SPEC)
    assert holdout_stamps <= {s.key for pool in pool_holdout.values() for s in pool}
    assert all(0.1 <= len(pool_holdout[c]) / (len(pool_holdout[c]) + len(pool_train[c])) <= 0.34 for c in CLASSES)


@needs_package
def test_stamps_are_deterministic(tiny, tmp_path):
    again = build(tmp_path / "again", SPEC, progress=lambda _: None)
    for split in ("train", "holdout"):
        first, second = pq.read_table(tiny / split), pq.read_table(again / split)
        for column in ("sample_id", "label", "image", "text", "audio", "stamp", "origin"):
            assert column_digest(first, column) == column_digest(second, column), (split, column)


def test_missing_package_is_one_line_with_the_apt_command(monkeypatch, tmp_path, capsys):
    monkeypatch.syspath_prepend(str(JOBS))
    loader = importlib.util.spec_from_file_location("build_demo_data_under_test", JOBS / "build_demo_data.py")
    job = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(job)
    monkeypatch.setattr(stamps, "is_installed", lambda *_: False)
    assert job.main(["--corpus", "stamps", "--out", str(tmp_path / "s")]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "apt-get install tuxpaint-stamps-default" in error
    assert not (tmp_path / "s").exists()
