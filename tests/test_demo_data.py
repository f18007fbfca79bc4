"""The built-in dataset: deterministic, in the contract, long-tailed, with missing modalities."""
import numpy as np
import pyarrow.parquet as pq
import pytest

from pipelines.ingest import scan_source
from resmm.datasets.demo import DemoSpec, build, class_counts, is_built


def decoded_audio(blob):
    from resmm.data.audio import read_waveform

    return None if blob is None else read_waveform(blob, 8000, 1.0)[0]


@pytest.fixture(scope="module")
def small_demo(tmp_path_factory):
    spec = DemoSpec(rows=300, shards=3)
    return build(tmp_path_factory.mktemp("a") / "demo", spec, progress=lambda _: None), spec


def test_default_profile_meets_the_targets():
    counts = class_counts(DemoSpec())
    assert counts.sum() == 12000 and len(counts) == 10
    assert counts.max() / counts.min() >= 10


def test_demo_is_in_the_contract_with_missing_modalities(small_demo):
    path, spec = small_demo
    assert is_built(path, spec)
    source = scan_source(str(path), ["image", "text", "audio"])
    assert len(source.shards) == 3 and source.num_rows == 300
    table = pq.read_table(path)
    assert len(set(table.column("sample_id").to_pylist())) == 300
    for modality in ("image", "text", "audio"):
        missing = table.column(modality).null_count / 300
        assert 0.1 < missing < 0.35, (modality, missing)
    all_missing = np.all([table.column(m).is_null().to_numpy(zero_copy_only=False) for m in ("image", "text", "audio")], axis=0)
    assert not all_missing.any()


def test_rows_with_an_image_are_grouped_by_its_glyph(small_demo):
    table = pq.read_table(small_demo[0])
    for image, group, label in zip(*(table.column(c).to_pylist() for c in ("image", "group_id", "label"))):
        assert (group is None) == (image is None)  # no image: split by sample_id
        if group is not None and label is not None:
            prefix, digit, index = group.split("-")
            assert (prefix, int(digit)) == ("glyph", label) and index.isdigit()


def test_demo_is_deterministic(small_demo, tmp_path):
    path, spec = small_demo
    again = build(tmp_path / "again", spec, progress=lambda _: None)
    first, second = pq.read_table(path), pq.read_table(again)
    for column in ("sample_id", "label", "image", "text", "group_id", "origin"):
        assert first.column(column).equals(second.column(column)), column
    # Ogg/Vorbis stamps each stream with a random serial number, so compare the audio itself, not its bytes.
    for a, b in zip(first.column("audio").to_pylist(), second.column("audio").to_pylist()):
        assert (a is None) == (b is None)
        if a is not None:
            np.testing.assert_array_equal(decoded_audio(a), decoded_audio(b))
