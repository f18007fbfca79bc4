"""Per-modality transforms on a three-row batch, no Ray."""
import numpy as np
import pytest
from scipy.signal import resample_poly

from resmm.config import load_config
from resmm.data.audio import decode_audios, log_mel, mel_filterbank, read_waveform, resampling_filter
from resmm.data.cells import UNLABELED, label_name
from resmm.modalities.spec import BatchPreprocessor, PreprocessSpec
from resmm.data.image import decode_images
from resmm.data.text import tokenize, tokenize_texts
from tests.conftest import audio_bytes, png_bytes


@pytest.fixture
def spec():
    cfg = load_config()
    return PreprocessSpec.from_config(cfg.data, ["image", "text", "audio"], ["0", "1", "2"])


def test_three_row_batch_decodes_every_modality_and_marks_missing(spec):
    batch = {
        "sample_id": np.array(["a", "b", "c"], dtype=object),
        "label": np.array([1, None, 7], dtype=object),  # 7 is outside the vocabulary
        "image": np.array([png_bytes(40, 20), None, png_bytes(100, 300, "RGB", fmt="JPEG")], dtype=object),
        "text": np.array(["item two", None, "drei"], dtype=object),
        "audio": np.array([None, audio_bytes(1.5, 44100, channels=2), audio_bytes(0.3, 8000, fmt="FLAC")],
                          dtype=object),
    }
    out = BatchPreprocessor(spec)(batch)
    assert out["image"].shape == (3, 3, 32, 32) and out["image"].dtype == np.float32
    assert out["text"].shape == (3, 48) and out["text"].dtype == np.int64
    assert out["audio"].shape == (3, *spec.input_shape("audio"))
    np.testing.assert_array_equal(out["image_present"], [1, 0, 1])
    np.testing.assert_array_equal(out["text_present"], [1, 0, 1])
    np.testing.assert_array_equal(out["audio_present"], [0, 1, 1])
    np.testing.assert_array_equal(out["label"], [1, UNLABELED, UNLABELED])
    # Missing modalities are exact zeros, present ones carry signal.
    assert not out["image"][1].any() and out["image"][0].std() > 0.1
    assert not out["audio"][0].any() and out["audio"][1].std() > 0.01
    assert all(np.isfinite(v).all() for v in out.values())


def test_undecodable_bytes_become_a_missing_modality():
    images, present, events = decode_images([b"not an image", png_bytes()], 16, 1, 10_000)
    np.testing.assert_array_equal(present, [False, True])
    assert events == ["image_undecodable", None]
    assert not images[0].any()
    spectrograms, present, events = decode_audios([b"RIFF....junk", b""], 8000, 1.0, 16)
    np.testing.assert_array_equal(present, [False, False])
    assert events == ["audio_undecodable", None]  # empty bytes are plainly missing, not a fault
    assert not spectrograms.any()


def test_audio_of_any_rate_and_channels_is_mono_at_the_target_rate():
    stereo_44k = read_waveform(audio_bytes(0.5, 44100, channels=2), 8000, 1.0)[0]
    mono_8k = read_waveform(audio_bytes(0.5, 8000, fmt="FLAC"), 8000, 1.0)[0]
    assert stereo_44k.ndim == 1 and abs(stereo_44k.size - 4000) <= 1
    assert mono_8k.size == 4000
    long_clip = read_waveform(audio_bytes(3.0, 16000), 8000, 1.0)[0]
    assert long_clip.size == 8000  # cut to audio_max_seconds


@pytest.mark.parametrize("up, down", [(80, 441), (1, 2), (2, 3)])
def test_cached_resampling_filter_is_scipys_default_design(up, down):
    clip = np.random.default_rng(up).standard_normal(9923).astype(np.float32)
    np.testing.assert_allclose(resample_poly(clip, up, down, window=resampling_filter(up, down)),
                               resample_poly(clip, up, down), atol=1e-5)


def test_single_precision_log_mel_matches_a_float64_reference():
    waves = np.random.default_rng(0).standard_normal((4, 8000)).astype(np.float32) * 0.1
    n_fft, hop = 256, 128
    padded = np.pad(waves.astype(np.float64), ((0, 0), (n_fft // 2, n_fft // 2)))
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft, axis=1)[:, ::hop][:, : 1 + 8000 // hop]
    power = np.abs(np.fft.rfft(frames * np.hanning(n_fft), axis=-1)) ** 2
    reference = ((np.log(power @ mel_filterbank(8000, n_fft, 32).T.astype(np.float64) + 1e-6) + 5) / 5)
    fast = log_mel(waves, 8000, 32)
    assert fast.dtype == np.float32 and fast.shape == (4, 32, 63)
    np.testing.assert_allclose(fast, reference.transpose(0, 2, 1), atol=1e-3)


def test_mel_filterbank_covers_the_spectrum_with_unit_peaks():
    bank = mel_filterbank(8000, 256, 32)
    assert bank.shape == (32, 129)
    assert np.allclose(bank.max(axis=1), 1.0, atol=0.35)
    assert (bank.sum(axis=0)[1:-1] > 0).all()


def test_tokens_are_stable_and_robust_to_typos():
    clean = set(tokenize("quatre", 48, 8192))
    typo = set(tokenize("quatr", 48, 8192))
    other = set(tokenize("sieben", 48, 8192))
    assert tokenize("Quatre", 48, 8192) == tokenize("quatre", 48, 8192)
    assert len(clean & typo) >= 3  # shared character trigrams survive the typo
    assert not clean & other
    ids, present, _ = tokenize_texts(["", "  ", "ok"], 8, 64, 100)
    np.testing.assert_array_equal(present, [False, False, True])
    assert ids.max() < 64 and ids[2, 0] > 0


@pytest.mark.parametrize("raw, name", [(3, "3"), (3.0, "3"), (float("nan"), None), (None, None), ("cat", "cat"),
                                       (b"dog", "dog"), (__import__("pandas").NA, None)])
def test_label_names_normalise_integer_and_string_labels(raw, name):
    assert label_name(raw) == name
