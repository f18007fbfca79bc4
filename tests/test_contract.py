"""The Parquet contract: bad shards fail before training with the file and column named."""
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.ingest import scan_source
from pipelines.validation import Rules, validate_source
from resmm.config import load_config
from resmm.modalities.spec import PreprocessSpec
from resmm.sources.contract import check_group_column, resolve_classes
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


def test_a_named_group_column_missing_from_a_training_shard_is_a_one_line_error(shard_dir):
    source = scan_source(str(shard_dir), ALL)
    spec = PreprocessSpec.from_config(load_config().data, ALL, ())
    with pytest.raises(ContractError, match=r"part-\d\.parquet: missing column 'speaker' named by "
                                            r"data\.group_column \(expected string") as info:
        validate_source(source, spec, Rules(True, True, None, 0.1, "speaker"))  # raised before anything is read
    assert "\n" not in str(info.value)
    check_group_column(source.shards, "group_id")  # the default column may be absent from every shard


def test_the_group_column_is_a_string_in_every_shard_or_in_none(shard_dir):
    pq.write_table(contract_table().append_column("group_id", pa.array(["g"] * 12)), shard_dir / "part-9.parquet")
    with pytest.raises(ContractError, match=r"part-\d\.parquet: missing column 'group_id' that other shards carry"):
        check_group_column(scan_source(str(shard_dir), ALL).shards, "group_id")
    pq.write_table(contract_table().append_column("group_id", pa.array(range(12))), shard_dir / "part-8.parquet")
    with pytest.raises(ContractError, match=r"part-8\.parquet: column 'group_id' has type int64, expected string"):
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
