"""The validation stage on real files and a real (local) Ray: every fault is found, counted and handled by its
policy, good rows all survive, and quarantined rows never reach the training stream."""
from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import soundfile

from pipelines.feature_cache import CacheTarget, decoded_split, read_cached_split
from pipelines.ingest import scan_source
from pipelines.validation import QUARANTINE_REASON, Rules, validate_source, write_quarantine
from resmm.config import load_config
from resmm.modalities.spec import PreprocessSpec
from tests.conftest import audio_bytes, contract_table, png_bytes

ALL = ["image", "text", "audio"]
GOOD_ROWS = 3 * 12


def png_header_only(width: int, height: int) -> bytes:
    """A valid PNG header announcing width x height pixels, with almost no pixel data (a decompression bomb's
    first bytes: decoding it would allocate width*height bytes)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def wav(samples: np.ndarray, rate: int = 8000) -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, samples.astype(np.float32), rate, format="WAV", subtype="FLOAT")
    return buffer.getvalue()


# sample_id -> (fault the validation stage must report, column overrides)
FAULT_ROWS = {
    "f-image-junk": ("image_undecodable", {"image": b"definitely not an image"}),
    "f-image-huge": ("image_too_large", {"image": png_header_only(20_000, 20_000)}),
    "f-audio-junk": ("audio_undecodable", {"audio": b"RIFF\x00\x00junk"}),
    "f-audio-empty": ("audio_empty_or_nan", {"audio": wav(np.zeros(0))}),
    "f-audio-nan": ("audio_empty_or_nan", {"audio": wav(np.full(800, np.nan))}),
    "f-audio-long": ("audio_truncated", {"audio": audio_bytes(3.0, 8000)}),
    "f-text-long": ("text_truncated", {"text": "word " * 10_000}),
    "f-null-label": ("null_label", {"label": None}),
    "f-unknown-label": ("unknown_label", {"label": 7}),
    "s0-0": ("duplicate_sample_id", {}),  # the same id as the first row of part-0
    None: ("null_sample_id", {}),
}
ROW_FAULT_REASONS = {"null_label", "unknown_label", "duplicate_sample_id", "null_sample_id"}


def fault_table() -> pa.Table:
    rows = []
    for i, (sample_id, (_, overrides)) in enumerate(FAULT_ROWS.items()):
        row = {"sample_id": sample_id, "label": i % 3, "image": png_bytes(seed=500 + i), "text": "item one",
               "audio": audio_bytes(0.2, seed=500 + i)}
        rows.append({**row, **overrides})
    return pa.table({
        "sample_id": pa.array([r["sample_id"] for r in rows], pa.string()),
        "label": pa.array([r["label"] for r in rows], pa.int64()),
        **{c: pa.array([r[c] for r in rows], t) for c, t in
           (("image", pa.binary()), ("text", pa.string()), ("audio", pa.binary()))},
    })


def corrupt_pages(path) -> None:
    """Overwrite the image column's first page header; the footer stays intact and readable."""
    column = pq.read_metadata(path).row_group(0).column(2)
    data = bytearray(path.read_bytes())
    data[column.data_page_offset: column.data_page_offset + 16] = b"\xff" * 16
    path.write_bytes(bytes(data))


@pytest.fixture(scope="module")
def faulty_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("faulty")
    for shard in range(3):
        pq.write_table(contract_table(seed=shard * 100).rename_columns(
            ["sample_id", "label", "image", "text", "audio"]), root / f"part-{shard}.parquet")
    # sample ids of contract_table(seed=0) are s0-0 ... s0-11
    pq.write_table(fault_table(), root / "part-faults.parquet")
    (root / "bad-footer.parquet").write_bytes(b"PAR1 not really parquet")
    whole = (root / "part-0.parquet").read_bytes()
    (root / "truncated.parquet").write_bytes(whole[: len(whole) // 2])
    pq.write_table(contract_table(seed=900), root / "corrupt-pages.parquet", compression="snappy")
    corrupt_pages(root / "corrupt-pages.parquet")
    with pytest.raises(OSError):  # the precondition: this file really does fail past its footer
        pq.read_table(root / "corrupt-pages.parquet")
    return root


@pytest.fixture(scope="module")
def spec():
    cfg = load_config()
    return PreprocessSpec.from_config(cfg.data, ALL, ("0", "1", "2"))


@pytest.fixture(scope="module", params=["stream", "cache"])
def validation(request, local_ray, faulty_dir, spec, tmp_path_factory):
    """The validation stage both ways: inspecting the stream (data.cache=off), and filling the decoded-feature
    cache (data.cache=on), which must find exactly the same faults."""
    source = scan_source(str(faulty_dir), ALL)
    cache = CacheTarget.at(str(tmp_path_factory.mktemp("cache"))) if request.param == "cache" else None
    return validate_source(source, spec, Rules(True, True, ("0", "1", "2"), None), batch_rows=8,
                           progress=lambda _: None, cache=cache)


def training_stream(validation, spec):
    """Every kept row, as training would stream it: decoded from the source, or read from the cache."""
    if validation.entries is None:
        return decoded_split(validation.source, spec, validation=None, val_fraction=0.1, batch_rows=16,
                           quarantined=validation.quarantined_row_hashes)
    return read_cached_split(list(validation.entries), validation.cache.location, spec, validation=None,
                             val_fraction=0.1, quarantined=validation.quarantined_row_hashes)


def test_unreadable_files_are_skipped_with_reasons(validation):
    files = {f["path"].rsplit("/", 1)[1]: f["reason"] for f in validation.report.files}
    assert set(files) == {"bad-footer.parquet", "truncated.parquet", "corrupt-pages.parquet"}
    assert "footer" in files["bad-footer.parquet"] and "footer" in files["truncated.parquet"]
    assert "unreadable Parquet data" in files["corrupt-pages.parquet"]
    assert [s.url.rsplit("/", 1)[1] for s in validation.source.shards] == [
        "part-0.parquet", "part-1.parquet", "part-2.parquet", "part-faults.parquet"]


def test_every_row_of_every_good_file_is_kept(validation):
    kept_faulty = sum(1 for reason, _ in FAULT_ROWS.values() if reason not in ROW_FAULT_REASONS)
    assert validation.train_profile.rows == GOOD_ROWS + kept_faulty
    assert validation.report.rows_total == len(ROW_FAULT_REASONS)


@pytest.mark.parametrize("reason", sorted(ROW_FAULT_REASONS))
def test_row_faults_are_quarantined_and_counted(validation, reason):
    assert validation.report.rows[reason] == 1
    assert list(validation.quarantined.values()).count(reason) == 1


@pytest.mark.parametrize("fault", ["image_undecodable", "image_too_large", "audio_undecodable", "audio_empty_or_nan"])
def test_bad_modality_bytes_mark_the_modality_missing_and_are_counted(validation, fault):
    expected = sum(1 for reason, _ in FAULT_ROWS.values() if reason == fault)
    assert validation.report.modalities_marked_missing[fault] == expected
    # The rows stay, without that modality: presence counts only decodable bytes.
    faulty_image = sum(1 for r, _ in FAULT_ROWS.values() if r.startswith("image_"))
    faulty_audio = sum(1 for r, _ in FAULT_ROWS.values() if r.startswith("audio_") and r != "audio_truncated")
    kept = validation.train_profile.rows
    assert validation.train_profile.presence["image"] == kept - faulty_image
    assert validation.train_profile.presence["audio"] == kept - faulty_audio


def test_input_limits_cut_and_count(validation):
    assert validation.report.input_limits == {"audio_truncated": 1, "text_truncated": 1}


def test_quarantined_rows_are_written_with_their_reasons(validation, tmp_path):
    destination = tmp_path / "run" / "quarantine" / "rows.parquet"
    written = write_quarantine(validation, ["sample_id", "label", *ALL], str(destination))
    table = pq.read_table(destination)
    assert written == table.num_rows == len(ROW_FAULT_REASONS)
    reasons = dict(zip(table.column("sample_id").to_pylist(), table.column(QUARANTINE_REASON).to_pylist()))
    assert reasons["f-null-label"] == "null_label" and reasons["f-unknown-label"] == "unknown_label"
    assert reasons[None] == "null_sample_id" and reasons["s0-0"] == "duplicate_sample_id"
    assert table.column("image").to_pylist()[0]  # the row's own bytes travel with it, for inspection


def test_quarantined_rows_never_reach_the_training_stream(validation, spec):
    dataset = training_stream(validation, spec)
    labels = np.concatenate([b["label"] for b in dataset.iter_batches(batch_format="numpy")])
    assert len(labels) == validation.train_profile.rows
    assert (labels >= 0).all()  # neither the null nor the unknown label got through


def test_duplicate_choice_is_stable_across_runs(local_ray, faulty_dir, spec, validation):
    again = validate_source(scan_source(str(faulty_dir), ALL), spec, Rules(True, True, ("0", "1", "2"), None),
                            batch_rows=5, progress=lambda _: None)
    assert again.quarantined == validation.quarantined


def test_unlabeled_rows_can_be_kept(local_ray, faulty_dir, spec):
    kept = validate_source(scan_source(str(faulty_dir), ALL), spec, Rules(True, False, None, None),
                           batch_rows=8, progress=lambda _: None)
    assert "null_label" not in kept.report.rows and "unknown_label" not in kept.report.rows
    assert kept.train_profile.class_counts[None] == 1
