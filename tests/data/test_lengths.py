"""`auto` text and audio lengths: measured from a sample of the shards, rounded, bounded, recorded."""
import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from resmm.config import load_config
from resmm.modalities.spec import PreprocessSpec
from resmm.data.lengths import (
    AUDIO_SECONDS_FALLBACK, TEXT_TOKENS_FALLBACK, audio_durations, choose_audio_seconds, choose_text_tokens,
    text_token_counts,
)
from resmm.modalities import resolve_lengths
from resmm.sources.shards import list_parquet_files
from tests.conftest import audio_bytes, contract_table


def test_text_tokens_keep_the_95th_percentile_rounded_up_to_8_within_bounds():
    assert choose_text_tokens([10] * 96 + [200] * 4).value == 16  # p95 = 10 -> the lower bound
    assert choose_text_tokens(list(range(1, 101))).value == 96  # p95 = 95.05 -> 96
    assert choose_text_tokens([5000] * 10).value == 256  # the upper bound caps the model's cost
    fallback = choose_text_tokens([])
    assert fallback.value == TEXT_TOKENS_FALLBACK and "fallback" in fallback.reason


def test_audio_seconds_keep_the_95th_percentile_rounded_up_to_a_tenth_within_bounds():
    assert choose_audio_seconds([1.5] * 20).value == 1.5  # whole clips, not 1.6
    assert choose_audio_seconds([0.9] * 19 + [30.0]).value == pytest.approx(2.4)  # one outlier: p95 = 2.355
    assert choose_audio_seconds([0.05] * 10).value == 0.25
    assert choose_audio_seconds([120.0] * 10).value == 10.0
    assert choose_audio_seconds([]).value == AUDIO_SECONDS_FALLBACK


def test_counts_read_headers_and_skip_what_validation_quarantines():
    clips = [audio_bytes(1.5, 22050), audio_bytes(0.5, 8000, channels=2, fmt="FLAC"), b"not audio", None, b""]
    assert audio_durations(clips) == pytest.approx([1.5, 0.5])
    # one word of 4 letters: the word id plus the trigrams of "<word>" (4 of them)
    assert text_token_counts(["word", None, "", 3], buckets=64, max_chars=100) == [5]
    assert text_token_counts(["word " * 100], buckets=64, max_chars=4) == [5]  # cut at text_max_chars first


def _shards(root, clip_seconds: float, words: int, shards: int = 3):
    for i in range(shards):
        table = contract_table(rows=20, seed=i * 100)
        table = table.set_column(table.schema.get_field_index("audio"), "audio",
                                 pa.array([audio_bytes(clip_seconds, 22050, seed=j) for j in range(20)], pa.binary()))
        table = table.set_column(table.schema.get_field_index("text"), "text",
                                 pa.array(["abc " * words] * 20, pa.string()))
        pq.write_table(table, root / f"part-{i}.parquet")
    return list_parquet_files(str(root))


def test_auto_lengths_come_from_the_shards_and_explicit_values_stay(tmp_path):
    fs, paths = _shards(tmp_path, clip_seconds=1.5, words=10)  # 10 x (1 word id + 3 trigrams) = 40 tokens
    cfg = load_config(None, [f"data.path={tmp_path}"])
    resolved, choices = resolve_lengths(cfg, fs, paths)
    assert (resolved.data.text.max_tokens, resolved.data.audio.max_seconds) == (40, 1.5)
    assert {c.key for c in choices} == {"data.text.max_tokens", "data.audio.max_seconds"}
    assert all("p95 of 60 sampled" in c.reason for c in choices)
    spec = PreprocessSpec.from_config(resolved.data, resolved.model.modalities, ["0", "1", "2"])
    assert spec.input_shape("text") == (40,)

    explicit = load_config(None, [f"data.path={tmp_path}", "data.text.max_tokens=24", "data.audio.max_seconds=0.5"])
    kept, choices = resolve_lengths(explicit, fs, paths)
    assert (kept.data.text.max_tokens, kept.data.audio.max_seconds, choices) == (24, 0.5, [])

    image_only = load_config(None, [f"data.path={tmp_path}", "model.modalities=[image]"])
    assert resolve_lengths(image_only, fs, paths)[1] == []  # nothing read for modalities the model lacks


def test_an_unresolved_auto_reads_as_the_fallback():
    spec = PreprocessSpec.from_config(load_config(None, []).data, ["text", "audio"], ["a"])
    assert (spec.settings["text"].max_tokens, spec.settings["audio"].max_seconds) == (
        TEXT_TOKENS_FALLBACK, AUDIO_SECONDS_FALLBACK)


def test_an_unreadable_shard_is_left_to_validation(tmp_path):
    fs, paths = _shards(tmp_path, clip_seconds=2.0, words=2, shards=2)
    (tmp_path / "part-0.parquet").write_bytes(b"PAR1 broken")
    cfg = load_config(None, [f"data.path={tmp_path}"])
    resolved, choices = resolve_lengths(cfg, fsspec.filesystem("file"), paths)
    assert resolved.data.audio.max_seconds == 2.0 and "of 20 sampled" in choices[1].reason
