"""The Parquet contract: bad shards fail before training with the file and column named."""
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.ingest import scan_source
from resmm.sources.contract import resolve_classes
from resmm.sources.contract import ContractError
from resmm.sources.shards import ShardError
from tests.conftest import contract_table

ALL = ["image", "text", "audio"]


def test_valid_shards_scan_with_row_counts(shard_dir):
    source = scan_source(str(shard_dir), ALL)
    assert len(source.shards) == 3 and source.num_rows == 36
    assert scan_source(str(shard_dir / "part-*.parquet"), ALL).num_rows == 36
    assert scan_source(f"file://{shard_dir}/part-1.parquet", ALL).num_rows == 12


def test_missing_column_names_file_and_column(shard_dir):
    pq.write_table(contract_table().drop_columns(["audio"]), shard_dir / "part-9.parquet")
    with pytest.raises(ContractError, match=r"part-9\.parquet: missing required column 'audio'"):
        scan_source(str(shard_dir), ALL)
    # A modality the run does not use may be absent.
    assert scan_source(str(shard_dir), ["image", "text"]).num_rows == 48


def test_wrong_type_names_file_column_and_expected_type(shard_dir):
    table = contract_table().set_column(2, "image", pa.array(["x"] * 12, pa.string()))
    pq.write_table(table, shard_dir / "part-bad.parquet")
    with pytest.raises(ContractError, match=r"part-bad\.parquet: column 'image' has type string, expected binary"):
        scan_source(str(shard_dir), ALL)


def test_label_types_must_agree_across_shards(shard_dir):
    pq.write_table(contract_table(label_type=pa.string()), shard_dir / "part-str.parquet")
    with pytest.raises(ContractError, match="'label' is integer in .* but string in"):
        scan_source(str(shard_dir), ALL)


def test_unreadable_footer_sets_the_file_aside_and_keeps_the_others(shard_dir):
    (shard_dir / "part-broken.parquet").write_bytes(b"PAR1 this is not parquet")
    good = (shard_dir / "part-0.parquet").read_bytes()
    (shard_dir / "part-truncated.parquet").write_bytes(good[: len(good) // 2])
    source = scan_source(str(shard_dir), ALL)
    assert source.num_rows == 36 and len(source.shards) == 3
    assert sorted(b["path"].rsplit("/", 1)[1] for b in source.unreadable) == [
        "part-broken.parquet", "part-truncated.parquet"]
    assert all("unreadable Parquet footer" in b["reason"] for b in source.unreadable)


def test_a_location_with_no_readable_file_is_an_error(tmp_path):
    (tmp_path / "a.parquet").write_bytes(b"junk")
    with pytest.raises(ShardError, match="none of its 1 Parquet file"):
        scan_source(str(tmp_path), ALL)


def test_empty_or_missing_location(tmp_path):
    with pytest.raises(ShardError, match="does not exist"):
        scan_source(str(tmp_path / "nope"), ALL)
    with pytest.raises(ShardError, match="holds no .parquet files"):
        scan_source(str(tmp_path), ALL)


def test_class_vocabulary_is_configured_or_derived_in_numeric_order():
    from collections import Counter

    assert resolve_classes(None, Counter({"10": 1, "2": 5, None: 3})) == ["2", "10"]
    assert resolve_classes(None, Counter({"dog": 1, "cat": 2})) == ["cat", "dog"]
    assert resolve_classes(["b", "a"], Counter({"a": 1})) == ["b", "a"]
    with pytest.raises(ContractError, match="at least 2 classes"):
        resolve_classes(None, Counter({"only": 4}))
