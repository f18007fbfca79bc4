"""A second development corpus: Tux Paint's clip-art stamps as paired image/text/audio Parquet shards.

Everything comes from the Debian package `tuxpaint-stamps-default` (about 800 PNG clip-art stamps in category
folders, each with a description translated into some 75 languages, many with a sound effect and descriptions
spoken by people) plus `espeak-ng`. It differs from the demo (resmm/datasets/demo.py) on purpose: 16 named
classes (string labels) instead of 10 digits, 64×64 colour images instead of 28-pixel grey digits, 1.5 s clips
at 22050 Hz instead of 0.9 s at 8 kHz, text in many scripts, and a Zipf long tail of ratio 25 instead of a
geometric one of ratio 12.

Each row picks a class from the long tail, then one of that class's stamps. Image: the stamp composited on a
solid, gradient or noisy background at a random scale, rotation, position and colour jitter (PNG or JPEG).
Text: the stamp's description in a random one of its languages, with typos and distractor words. Audio: one of
the stamp's own recordings (sound effect, spoken name or description) or its description spoken by espeak-ng in
that language's voice, over other classes' sound effects and coloured noise (FLAC or WAV). Every modality is
missing in some rows (never all three), and degraded in others so that it no longer identifies the class: the
image shows another class's stamp blurred and occluded, the text holds distractor words only, the audio is
background noise only. About 2% of training rows are unlabeled.

Stamp-disjoint holdout: a seeded hash reserves about 20% of each class's stamps for `<out>/holdout/` (balanced
over classes, always labeled); the training shards in `<out>/train/` only ever show the other stamps. Train with
`data.path=<out>/train` (pointing at `<out>` itself would read both), and evaluate `<out>/holdout` only at the
end: it measures generalisation to clip art the model has never seen, not just to new augmentations. Within
`<out>/train`, each row's `group_id` is its stamp, so resmm's validation split keeps a stamp's rows on one side too.
"""
from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import subprocess
import tempfile
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from functools import lru_cache, partial
from math import gcd
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import soundfile
from PIL import Image, ImageEnhance, ImageFilter
from scipy.signal import resample_poly

from resmm.datasets import is_built, long_tail_counts, publish  # noqa: F401  (is_built: part of this corpus's API)

DATASET_VERSION = 2  # 2: the group_id column
STAMPS_ROOT = Path("/usr/share/tuxpaint/stamps")
DEBIAN_PACKAGE = "tuxpaint-stamps-default"
MISSING_PACKAGE = (
    f"{DEBIAN_PACKAGE} is not installed (no {STAMPS_ROOT}): run `make stamps-data` as root, "
    f"or `sudo apt-get install {DEBIAN_PACKAGE}`"
)

# class -> the stamp folders it gathers; folders left out are too small to hold a class (cartoon, medical, ...)
CLASS_FOLDERS = {
    "birds": ("animals/birds",),
    "buildings": ("town/houses", "town/monuments"),
    "fruit": ("food/fruit",),
    "holidays": ("seasonal",),
    "household": ("household",),
    "insects": ("animals/insects",),
    "letters": ("symbols/alphabets",),
    "mammals": ("animals/mammals", "animals/marsupials"),
    "maths": ("symbols/math", "symbols/shapes"),
    "money": ("symbols/money",),
    "music": ("hobbies/music", "symbols/music"),
    "plants": ("plants",),
    "road_signs": ("town/roadsigns",),
    "sea_life": ("animals/fish", "animals/shellfish"),
    "vegetables": ("food/vegetables", "food/nuts"),
    "vehicles": ("vehicles", "military/vehicles"),
}
CLASSES = tuple(sorted(CLASS_FOLDERS))

# A stamp's translation tag -> espeak-ng voice, where the plain tag is not a voice name itself.
_VOICE_ALIASES = {"en": "en-us", "en-au": "en-gb", "fr": "fr-fr", "zh-cn": "cmn", "zh-tw": "cmn", "nn": "nb"}
_VARIANTS = ["m1", "m2", "m3", "m4", "m5", "f1", "f2", "f3", "f4", "klatt"]
_DISTRACTOR_WORDS = (
    "photo picture clipart sticker stamp drawing icon image colour print page sheet scan copy item set "
    "draft sample file archive album gallery note card poster label tag new old big small nice"
).split()
_TEMPLATES = ["{w}", "{w}", "{d1}: {w}", "{w} ({d1})", "{d1} {d2} {w}", "{w} {d1}", "#{d1} {w}", "{w} - {d1} {d2}"]
_RECORDING = re.compile(r"^(?P<desc>_desc)?(?:_(?P<lang>[a-z]{2,3}(?:_[A-Za-z]{2})?(?:@[a-z]+)?))?$")


@dataclass(frozen=True)
class StampsSpec:
    rows: int = 6000  # training rows; the holdout comes on top
    seed: int = 0
    shards: int = 6
    holdout_rows: int = 600  # balanced over classes, from the held-out stamps only
    holdout_shards: int = 2
    holdout_stamp_fraction: float = 0.2  # of each class's stamps
    imbalance_ratio: float = 25.0  # largest class / smallest class, Zipf-shaped
    missing_rate: float = 0.25  # per modality, independently (at least one modality is kept per row)
    degraded_rate: float = 0.25  # per modality: the content no longer identifies the class
    unlabeled_rate: float = 0.02  # training rows only
    image_size_px: int = 64
    audio_seconds: float = 1.5
    sample_rate_hz: int = 22050


@dataclass(frozen=True)
class Stamp:
    key: str  # path under STAMPS_ROOT without the extension, e.g. "animals/birds/blackbird"
    label: str
    descriptions: tuple[tuple[str, str], ...]  # (language tag, text); "en" is the untagged first line
    recordings: tuple[tuple[str, str], ...]  # (kind, file): "effect", "name:<lang>" or "desc:<lang>"


def default_path() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return cache / "resmm" / f"stamps-v{DATASET_VERSION}"


def is_installed(root: Path = STAMPS_ROOT) -> bool:
    return root.is_dir()



def class_counts(spec: StampsSpec) -> np.ndarray:
    """Zipf-shaped training counts per class (in CLASSES order): rank^-s with s set so head/tail = imbalance_ratio."""
    k = len(CLASSES)
    weights = np.arange(1, k + 1, dtype=float) ** (-np.log(spec.imbalance_ratio) / np.log(k))
    return long_tail_counts(weights, spec.rows, spec.seed)


def _class_of(key: str) -> str | None:
    for label, folders in CLASS_FOLDERS.items():
        if any(key.startswith(folder + "/") for folder in folders):
            return label
    return None


def _descriptions(txt: Path) -> tuple[tuple[str, str], ...]:
    lines = txt.read_text(encoding="utf-8", errors="replace").splitlines()
    found = {"en": lines[0].strip()} if lines and lines[0].strip() else {}
    for line in lines[1:]:
        tag, sep, text = line.partition(".utf8=")
        if sep and text.strip() and re.fullmatch(r"[A-Za-z_@]+", tag):
            found[tag] = text.strip()
    return tuple(sorted(found.items()))


def _recordings(folder: Path, bases: set[str], base: str) -> tuple[tuple[str, str], ...]:
    """The sound files that belong to `base`: base.ogg (effect), base_<lang>.ogg (name), base_desc[_<lang>].ogg."""
    found = []
    for sound in sorted(folder.glob(f"{_glob_escape(base)}*")):
        if sound.suffix not in (".ogg", ".wav"):
            continue
        match = _RECORDING.match(sound.stem[len(base):])
        # "apple_red.ogg" belongs to the stamp "apple_red", not to "apple" in the language "red"
        if match is None or any(sound.stem.startswith(other) and len(other) > len(base) for other in bases):
            continue
        lang = match["lang"] or "en"
        kind = f"desc:{lang}" if match["desc"] else (f"name:{lang}" if match["lang"] else "effect")
        found.append((kind, str(sound)))
    return tuple(found)


def _glob_escape(name: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", name)


@lru_cache(maxsize=2)
def load_catalogue(root: Path = STAMPS_ROOT) -> tuple[Stamp, ...]:
    """Every PNG stamp with a description that falls in one of the classes (SVG-only stamps are skipped)."""
    if not is_installed(root):
        raise RuntimeError(MISSING_PACKAGE)
    stamps = []
    for png in sorted(root.rglob("*.png")):
        key = str(png.relative_to(root).with_suffix(""))
        label = _class_of(key)
        txt = png.with_suffix(".txt")
        if label is None or not txt.is_file():  # "*_mirror.png" variants carry no description of their own
            continue
        descriptions = _descriptions(txt)
        if not descriptions:
            continue
        bases = {p.stem for p in png.parent.glob("*.png")}
        stamps.append(Stamp(key, label, descriptions, _recordings(png.parent, bases, png.stem)))
    return tuple(stamps)


def _stable_hash(*parts) -> int:
    return int.from_bytes(hashlib.sha256(":".join(map(str, parts)).encode()).digest()[:8], "big")


def split_stamps(stamps: tuple[Stamp, ...], spec: StampsSpec) -> tuple[dict[str, list[Stamp]], dict[str, list[Stamp]]]:
    """Per class, the stamps with the smallest seeded hash (about holdout_stamp_fraction, at least one) are held out."""
    train: dict[str, list[Stamp]] = {label: [] for label in CLASSES}
    holdout: dict[str, list[Stamp]] = {label: [] for label in CLASSES}
    for label in CLASSES:
        ranked = sorted((s for s in stamps if s.label == label), key=lambda s: _stable_hash(spec.seed, s.key))
        cut = max(1, round(spec.holdout_stamp_fraction * len(ranked)))
        holdout[label], train[label] = ranked[:cut], ranked[cut:]
    return train, holdout


def _espeak_voices() -> set[str]:
    if shutil.which("espeak-ng") is None:
        raise RuntimeError("espeak-ng is not installed: run `make system-deps` as root, or `apt-get install espeak-ng`")
    listing = subprocess.run(["espeak-ng", "--voices"], check=True, capture_output=True, text=True).stdout
    return {line.split()[1] for line in listing.splitlines()[1:] if len(line.split()) > 1}


def _voice_for(tag: str, voices: set[str]) -> str | None:
    tag = tag.split("@")[0].lower().replace("_", "-")
    for candidate in (_VOICE_ALIASES.get(tag), tag, _VOICE_ALIASES.get(tag.split("-")[0]), tag.split("-")[0]):
        if candidate in voices:
            return candidate
    return None


def _to_rate(wave: np.ndarray, rate: int, target: int) -> np.ndarray:
    if wave.ndim > 1:
        wave = wave.mean(axis=1)
    if rate != target:
        common = gcd(rate, target)
        wave = resample_poly(wave, target // common, rate // common)
    return wave.astype(np.float32)


def _trim(wave: np.ndarray, max_samples: int) -> np.ndarray:
    """Cut leading/trailing silence, cap the length, normalise the peak to 1."""
    peak = float(np.abs(wave).max()) if wave.size else 0.0
    if peak == 0.0:
        return np.zeros(0, dtype=np.float32)
    loud = np.flatnonzero(np.abs(wave) > 0.02 * peak)
    wave = wave[loud[0] : loud[-1] + 1][:max_samples]
    return (wave / peak).astype(np.float32)


def _read_recording(path: str, spec: StampsSpec) -> np.ndarray:
    """Mono at spec.sample_rate_hz, silence trimmed, at most twice a row's clip (speed jitter needs a bit more)."""
    with soundfile.SoundFile(path) as sound:  # decode only the head of long recordings
        rate = sound.samplerate
        wave = sound.read(int(3 * spec.audio_seconds * rate), dtype="float32")
    return _trim(_to_rate(wave, rate, spec.sample_rate_hz), int(2 * spec.audio_seconds * spec.sample_rate_hz))


def _speak(text: str, voice: str, seed_parts: tuple, spec: StampsSpec) -> np.ndarray:
    """One description spoken by espeak-ng; variant, speed and pitch are fixed per (stamp, language)."""
    rng = np.random.default_rng([zlib.crc32(str(p).encode()) for p in seed_parts])
    variant = _VARIANTS[int(rng.integers(len(_VARIANTS)))]
    with tempfile.NamedTemporaryFile(suffix=".wav") as out:
        subprocess.run(
            ["espeak-ng", "-v", f"{voice}+{variant}", "-s", str(int(rng.integers(150, 230))),
             "-p", str(int(rng.integers(25, 80))), "-w", out.name, "--stdin"],
            input=text.encode(), check=True, capture_output=True,
        )
        wave, rate = soundfile.read(out.name, dtype="float32")
    return _trim(_to_rate(wave, rate, spec.sample_rate_hz), int(2 * spec.audio_seconds * spec.sample_rate_hz))


def _background_bank(stamps: tuple[Stamp, ...], spec: StampsSpec) -> list[tuple[str, np.ndarray]]:
    """Sound effects (not speech) of every stamp, with their class: other classes' effects are the background."""
    bank = []
    for stamp in stamps:
        for kind, path in stamp.recordings:
            if kind == "effect" and stamp.label not in ("letters", "maths"):  # those "effects" are spoken names
                wave = _read_recording(path, spec)
                if wave.size > spec.sample_rate_hz // 10:
                    bank.append((stamp.label, wave))
    return bank


def _load_artwork(stamp: Stamp, spec: StampsSpec) -> Image.Image:
    art = Image.open(STAMPS_ROOT / f"{stamp.key}.png").convert("RGBA")
    art = art.crop(art.getbbox() or (0, 0, art.width, art.height))  # transparent margins would shrink the art
    art.thumbnail((2 * spec.image_size_px, 2 * spec.image_size_px), Image.Resampling.LANCZOS)
    return art


def _background(size: int, rng: np.random.Generator) -> np.ndarray:
    kind = rng.integers(4)
    base = rng.uniform(0, 255, size=3)
    if kind == 0:  # solid
        return np.broadcast_to(base, (size, size, 3)).astype(np.float32)
    if kind == 1:  # two-colour gradient
        other = rng.uniform(0, 255, size=3)
        ramp = np.linspace(0, 1, size)[:, None, None]
        pixels = base * (1 - ramp) + other * ramp
        pixels = pixels if rng.random() < 0.5 else pixels.transpose(1, 0, 2)  # top-down or left-right
        return np.broadcast_to(pixels, (size, size, 3)).astype(np.float32)
    if kind == 2:  # blotches: coarse noise scaled up
        coarse = rng.uniform(0, 255, size=(int(rng.integers(2, 8)),) * 2 + (3,)).astype(np.uint8)
        return np.asarray(Image.fromarray(coarse).resize((size, size), Image.Resampling.BICUBIC), dtype=np.float32)
    return np.clip(base + rng.normal(0, rng.uniform(15, 60), size=(size, size, 3)), 0, 255).astype(np.float32)


def _jitter(art: Image.Image, rng: np.random.Generator) -> Image.Image:
    alpha = art.getchannel("A")
    rgb = art.convert("RGB")
    rgb = ImageEnhance.Brightness(rgb).enhance(float(rng.uniform(0.7, 1.3)))
    rgb = ImageEnhance.Contrast(rgb).enhance(float(rng.uniform(0.7, 1.3)))
    rgb = ImageEnhance.Color(rgb).enhance(float(rng.uniform(0.5, 1.5)))
    if rng.random() < 0.3:  # small hue turn
        hsv = np.asarray(rgb.convert("HSV")).copy()
        hsv[..., 0] = (hsv[..., 0].astype(int) + int(rng.integers(-20, 21))) % 256
        rgb = Image.fromarray(hsv, "HSV").convert("RGB")
    rgb.putalpha(alpha)
    return rgb


def _composite(art: Image.Image, size: int, rng: np.random.Generator) -> Image.Image:
    scale = rng.uniform(0.45, 0.95) * size / max(art.size)
    art = art.resize((max(4, round(art.width * scale)), max(4, round(art.height * scale))), Image.Resampling.BILINEAR)
    art = _jitter(art, rng).rotate(float(rng.uniform(-30, 30)), resample=Image.Resampling.BILINEAR, expand=True)
    canvas = Image.fromarray(_background(size, rng).astype(np.uint8), "RGB")
    x = int(rng.integers(-art.width // 6, max(1 - art.width // 6, size - art.width + art.width // 6)))
    y = int(rng.integers(-art.height // 6, max(1 - art.height // 6, size - art.height + art.height // 6)))
    canvas.paste(art, (x, y), art)
    return canvas


def _make_image(art: Image.Image, degraded: bool, spec: StampsSpec, rng: np.random.Generator) -> bytes:
    """`art` is the row's stamp, or for a degraded row another class's stamp that gets blurred and occluded."""
    size = spec.image_size_px
    img = _composite(art, size, rng)
    if degraded:
        img = img.filter(ImageFilter.GaussianBlur(float(rng.uniform(3.0, 5.0))))
        pixels = np.asarray(img, dtype=np.float32).copy()
        for _ in range(int(rng.integers(1, 3))):
            h, w = (int(v) for v in rng.integers(size // 2, size, size=2))
            top, left = (int(v) for v in rng.integers(0, size - size // 2, size=2))
            pixels[top : top + h, left : left + w] = rng.uniform(0, 255, size=3)
        pixels += rng.normal(0, 40, pixels.shape)
    else:
        pixels = np.asarray(img, dtype=np.float32) + rng.normal(0, rng.uniform(0, 12), (size, size, 3))
    img = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")
    buffer = io.BytesIO()
    if rng.random() < 0.5:
        img.save(buffer, "PNG")
    else:
        img.save(buffer, "JPEG", quality=int(rng.integers(60, 96)))
    return buffer.getvalue()


def _typo(text: str, rng: np.random.Generator) -> str:
    """One character dropped, doubled or swapped with its neighbour (any script)."""
    if len(text) < 4:
        return text
    i = int(rng.integers(1, len(text) - 1))
    kind = rng.integers(3)
    if kind == 0:
        return text[:i] + text[i + 1 :]
    if kind == 1:
        return text[:i] + text[i] + text[i:]
    return text[: i - 1] + text[i] + text[i - 1] + text[i + 1 :]


def _make_text(stamp: Stamp, degraded: bool, rng: np.random.Generator) -> tuple[str, str]:
    """(text, language): the description with typos and distractors, or for a degraded row distractors only."""
    d1, d2 = (_DISTRACTOR_WORDS[int(k)] for k in rng.integers(len(_DISTRACTOR_WORDS), size=2))
    if degraded:
        words = rng.choice(_DISTRACTOR_WORDS, size=int(rng.integers(2, 6)))
        return " ".join(words), "-"
    lang, text = stamp.descriptions[int(rng.integers(len(stamp.descriptions)))]
    for _ in range(int(rng.choice([0, 0, 1, 2], p=[0.4, 0.25, 0.25, 0.1]))):
        text = _typo(text, rng)
    if rng.random() < 0.1:
        text = text.upper()
    elif rng.random() < 0.15:
        text = text.lower()
    return _TEMPLATES[int(rng.integers(len(_TEMPLATES)))].format(w=text, d1=d1, d2=d2), lang


def _plan_audio(stamp: Stamp, voices: set[str], rng: np.random.Generator) -> tuple[str, str, str]:
    """(path, kind) of one of the stamp's own recordings, else ('espeak', language tag) to voice its description."""
    speakable = [lang for lang, _ in stamp.descriptions if _voice_for(lang, voices)]
    if stamp.recordings and (rng.random() < 0.6 or not speakable):
        kind, path = stamp.recordings[int(rng.integers(len(stamp.recordings)))]
        return "file", path, kind
    lang = speakable[int(rng.integers(len(speakable)))]
    return "espeak", lang, f"espeak:{lang}"


def _make_audio(
    clip: np.ndarray | None, background: list[np.ndarray], spec: StampsSpec, rng: np.random.Generator
) -> bytes:
    """The clip at a random offset over other classes' sound effects and coloured noise; no clip = noise only."""
    length = int(spec.audio_seconds * spec.sample_rate_hz)
    noise = np.cumsum(rng.normal(0, 1, length)).astype(np.float32)
    noise = (noise - np.convolve(noise, np.ones(64) / 64, mode="same")).astype(np.float32)
    noise /= np.abs(noise).max() + 1e-6
    noise *= rng.uniform(0.05, 0.3)
    for other in background:
        start = int(rng.integers(0, max(1, length - other.size)))
        piece = other[:length - start] if rng.random() < 0.5 else other[-(length - start):]
        noise[start : start + piece.size] += piece * rng.uniform(0.3, 1.0)
    if clip is None or clip.size == 0:
        mixed = noise
    else:
        speed = rng.choice([1.0, 1.0, 0.9, 1.1])  # resampling shifts speed and pitch together
        if speed != 1.0:
            clip = resample_poly(clip, 10, int(round(10 * speed))).astype(np.float32)
        if clip.size > length:
            start = 0 if rng.random() < 0.5 else int(rng.integers(0, clip.size - length + 1))
            clip = clip[start : start + length]
        wave = np.zeros(length, dtype=np.float32)
        offset = int(rng.integers(0, length - clip.size + 1))
        wave[offset : offset + clip.size] = clip
        snr_db = rng.uniform(3, 20)
        signal_power = float(np.mean(wave**2)) + 1e-9
        noise *= np.sqrt(signal_power / (np.mean(noise**2) + 1e-9) / 10 ** (snr_db / 10))
        mixed = wave + noise
    mixed = (mixed / (np.abs(mixed).max() + 1e-6) * rng.uniform(0.4, 0.95)).astype(np.float32)
    buffer = io.BytesIO()
    fmt = "FLAC" if rng.random() < 0.5 else "WAV"
    soundfile.write(buffer, mixed, spec.sample_rate_hz, format=fmt, subtype="PCM_16")
    return buffer.getvalue()


@dataclass
class _Row:
    sample_id: str
    label: str
    labeled: bool
    stamp: Stamp
    image: str  # "" missing, "ok", "degraded"
    text: str
    audio: str
    decoy: Stamp | None  # the other class's stamp a degraded image shows
    audio_source: tuple[str, str, str] | None  # ('file', path, kind) / ('espeak', lang, ...) / None: noise only
    rng: np.random.Generator


def _plan_split(
    name: str, split_index: int, labels: np.ndarray, pool: dict[str, list[Stamp]], voices: set[str],
    spec: StampsSpec, unlabeled_rate: float,
) -> list[_Row]:
    rows = labels.size
    rng = np.random.default_rng([spec.seed, split_index])
    present = rng.random((rows, 3)) >= spec.missing_rate
    nothing = ~present.any(axis=1)
    present[nothing, rng.integers(0, 3, size=int(nothing.sum()))] = True
    degraded = rng.random((rows, 3)) < spec.degraded_rate
    unlabeled = rng.random(rows) < unlabeled_rate
    state = np.where(present, np.where(degraded, "degraded", "ok"), "")
    others = {label: [s for other in CLASSES if other != label for s in pool[other]] for label in CLASSES}
    plan = []
    for i, class_index in enumerate(labels):
        label = CLASSES[int(class_index)]
        row_rng = np.random.default_rng([spec.seed, split_index, i])  # a row does not depend on the others
        stamp = pool[label][int(row_rng.integers(len(pool[label])))]
        decoy = others[label][int(row_rng.integers(len(others[label])))] if state[i, 0] == "degraded" else None
        source = _plan_audio(stamp, voices, row_rng) if state[i, 2] == "ok" else None
        plan.append(_Row(f"stamps-{spec.seed}-{name}-{i:07d}", label, not unlabeled[i], stamp, *state[i],
                         decoy, source, row_rng))
    return plan


_COLUMNS = pa.schema([
    ("sample_id", pa.string()), ("label", pa.string()), ("image", pa.binary()), ("text", pa.string()),
    ("audio", pa.binary()), ("stamp", pa.string()), ("group_id", pa.string()), ("origin", pa.string()),
])


def _render_row(row: _Row, art: dict, clips: dict, backgrounds: dict, spec: StampsSpec) -> dict:
    rng = row.rng
    image = text = audio = None
    text_lang, audio_origin = "-", "-"
    if row.image:
        degraded = row.image == "degraded"
        image = _make_image(art[(row.decoy if degraded else row.stamp).key], degraded, spec, rng)
    if row.text:
        text, text_lang = _make_text(row.stamp, row.text == "degraded", rng)
    if row.audio:
        source, what, audio_origin = row.audio_source or ("noise", "", "noise")
        clip = None
        if source == "file":
            clip = _read_recording(what, spec)
        elif source == "espeak":
            clip = clips[(row.stamp.key, what)]
        others = backgrounds[row.label]
        audio = _make_audio(clip, [others[int(k)] for k in rng.integers(len(others), size=int(rng.integers(1, 3)))],
                            spec, rng)
    flags = "".join(m if state == "degraded" else "-" for m, state in zip("ita", (row.image, row.text, row.audio)))
    return {"sample_id": row.sample_id, "label": row.label if row.labeled else None, "image": image, "text": text,
            "audio": audio, "stamp": row.stamp.key, "group_id": row.stamp.key,
            "origin": f"degraded:{flags} text:{text_lang} audio:{audio_origin}"}


def _write_split(
    plan: list[_Row], directory: Path, shards: int, art: dict, clips: dict, bank: list, spec: StampsSpec, progress
) -> None:
    """Render and write one shard at a time, rows in plan order; two threads, as decoding, resampling and encoding
    release the GIL."""
    backgrounds = {label: [wave for other, wave in bank if other != label] for label in CLASSES}
    directory.mkdir(parents=True)
    bounds = np.linspace(0, len(plan), shards + 1).astype(int)
    with ThreadPoolExecutor(max_workers=2) as pool:
        for shard, (start, stop) in enumerate(zip(bounds[:-1], bounds[1:])):
            render = partial(_render_row, art=art, clips=clips, backgrounds=backgrounds, spec=spec)
            rows = list(pool.map(render, plan[start:stop]))
            table = pa.Table.from_pylist(rows, schema=_COLUMNS)
            pq.write_table(table, directory / f"part-{shard:05d}.parquet", row_group_size=256)
            progress(f"[stamps] {directory.name}: {stop}/{len(plan)} rows written ({shard + 1}/{shards} shards)")


def build(out_dir: str | Path, spec: StampsSpec = StampsSpec(), progress=print) -> Path:
    """Write <out_dir>/train and <out_dir>/holdout as Parquet shards (atomically: a temp dir, then rename)."""
    out_dir = Path(out_dir)
    started = time.perf_counter()
    stamps = load_catalogue()
    voices = _espeak_voices()
    train_pool, holdout_pool = split_stamps(stamps, spec)
    counts = class_counts(spec)
    progress(f"[stamps] {spec.rows} training rows over {len(CLASSES)} classes "
             f"{dict(zip(CLASSES, counts.tolist()))}; {len(stamps)} stamps, loading artwork and sound effects")
    art = {stamp.key: _load_artwork(stamp, spec) for stamp in stamps}
    bank = _background_bank(stamps, spec)

    rng = np.random.default_rng(spec.seed)
    train_labels = np.repeat(np.arange(len(CLASSES)), counts)
    rng.shuffle(train_labels)
    holdout_labels = np.resize(np.arange(len(CLASSES)), spec.holdout_rows)
    rng.shuffle(holdout_labels)
    plans = {
        "train": _plan_split("train", 0, train_labels, train_pool, voices, spec, spec.unlabeled_rate),
        "holdout": _plan_split("holdout", 1, holdout_labels, holdout_pool, voices, spec, 0.0),
    }

    wanted = sorted({(row.stamp.key, row.audio_source[1]) for plan in plans.values() for row in plan
                     if row.audio_source and row.audio_source[0] == "espeak"})
    by_key = {stamp.key: stamp for stamp in stamps}
    progress(f"[stamps] voicing {len(wanted)} descriptions with espeak-ng")

    def speak(job):
        key, lang = job
        text = dict(by_key[key].descriptions)[lang]
        return job, _speak(text, _voice_for(lang, voices), (spec.seed, key, lang), spec)

    with ThreadPoolExecutor(max_workers=2) as pool:
        clips = dict(pool.map(speak, wanted))

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=out_dir.name + ".tmp-", dir=out_dir.parent))
    try:
        _write_split(plans["train"], staging / "train", spec.shards, art, clips, bank, spec, progress)
        _write_split(plans["holdout"], staging / "holdout", spec.holdout_shards, art, clips, bank, spec, progress)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    summary = {
        "version": DATASET_VERSION,
        "spec": asdict(spec),
        "classes": list(CLASSES),
        "class_counts": dict(zip(CLASSES, counts.tolist())),
        "holdout_counts": dict(zip(CLASSES, np.bincount(holdout_labels, minlength=len(CLASSES)).tolist())),
        "stamps": {label: {"train": len(train_pool[label]), "holdout": len(holdout_pool[label])} for label in CLASSES},
        "text_languages": len({lang for stamp in stamps for lang, _ in stamp.descriptions}),
        "espeak_clips": len(clips),
        "background_effects": len(bank),
        "seconds": round(time.perf_counter() - started, 1),
    }
    publish(staging, out_dir, summary)
    progress(f"[stamps] wrote {spec.shards} training and {spec.holdout_shards} holdout shards to {out_dir} "
             f"in {summary['seconds']}s (train with data.path={out_dir / 'train'})")
    return out_dir
