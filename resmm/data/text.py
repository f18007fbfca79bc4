"""Text tokenisation by the hashing trick: words plus character trigrams, so typos and unseen words still land."""
from __future__ import annotations

import functools
import re
import unicodedata
import zlib

import numpy as np

from resmm.data.decoded import Decoded

TEXT_TRUNCATED = "text_truncated"  # an input limit: text has no faults, any string tokenises

_WORD = re.compile(r"\w+", re.UNICODE)


def _bucket(token: str, buckets: int) -> int:
    # crc32 is stable across processes and Python versions, unlike hash(); 0 is reserved for padding.
    return 1 + zlib.crc32(token.encode("utf-8")) % (buckets - 1)


def tokenize(text: str, max_tokens: int, buckets: int) -> list[int]:
    """One string -> up to max_tokens ids: each word, then its boundary-marked character trigrams."""
    normalised = unicodedata.normalize("NFKC", text).casefold()
    ids: list[int] = []
    for word in _WORD.findall(normalised):
        ids.append(_bucket("w:" + word, buckets))
        marked = f"<{word}>"
        ids.extend(_bucket("c:" + marked[i : i + 3], buckets) for i in range(max(1, len(marked) - 2)))
        if len(ids) >= max_tokens:
            break
    return ids[:max_tokens]


def tokenize_texts(texts, max_tokens: int, buckets: int, max_chars: int) -> Decoded:
    """A column of strings (None = missing) -> (N, max_tokens) int64 ids (0-padded), presence, per-row event.

    Strings are cut to max_chars before normalisation, so a megabyte-long cell costs no more than that.
    """
    out = np.zeros((len(texts), max_tokens), dtype=np.int64)
    present = np.zeros(len(texts), dtype=bool)
    events: list = [None] * len(texts)
    for i, text in enumerate(texts):
        if text is None or not isinstance(text, str):
            continue
        if len(text) > max_chars:
            text, events[i] = text[:max_chars], TEXT_TRUNCATED
        ids = tokenize(text, max_tokens, buckets)
        if ids:  # an empty or punctuation-only string carries no signal: treat as missing
            out[i, : len(ids)] = ids
            present[i] = True
    return Decoded(out, present, events)


# --- Hugging Face tokenizers (data.text.tokenizer=hf:<source>, the `pretrained` extra) ---------------------------

PRETRAINED_EXTRA = "pip install 'resmm[pretrained]'"


def read_tokenizer(source: str) -> str:
    """The tokenizer.json of a local directory (or the file itself), or of a model id from the Hugging Face cache
    (HF_HOME; set HF_HUB_OFFLINE=1 on machines without internet). Raises ValueError with one line."""
    from pathlib import Path

    path = Path(source).expanduser()
    if path.is_dir():
        path = path / "tokenizer.json"
    if path.is_file():
        return path.read_text(encoding="utf-8")
    if Path(source).is_absolute() or source.startswith("."):
        raise ValueError(f"no tokenizer.json at '{source}' (a fast tokenizer, as save_pretrained writes it)")
    try:
        from huggingface_hub import hf_hub_download

        return Path(hf_hub_download(source, "tokenizer.json")).read_text(encoding="utf-8")
    except Exception as exc:  # offline, unknown id, no fast tokenizer: one line, whatever the hub raised
        raise ValueError(f"cannot load the tokenizer of '{source}' ({type(exc).__name__}): download it into "
                         f"HF_HOME first, or point at a local directory") from None


@functools.lru_cache(maxsize=4)
def _tokenizer(tokenizer_json: str):
    try:
        from tokenizers import Tokenizer
    except ImportError:
        raise ValueError(f"data.text.tokenizer=hf:... needs the tokenizers library: {PRETRAINED_EXTRA}") from None
    return Tokenizer.from_str(tokenizer_json)


def tokenizer_vocab_size(tokenizer_json: str) -> int:
    return _tokenizer(tokenizer_json).get_vocab_size(with_added_tokens=True)


def hf_token_counts(texts, tokenizer_json: str, max_chars: int) -> list[int]:
    """Tokens of each string under a Hugging Face tokenizer (special tokens included), for `auto` lengths."""
    kept = [t[:max_chars] for t in texts if isinstance(t, str) and t]
    return [len(e.ids) for e in _tokenizer(tokenizer_json).encode_batch(kept)] if kept else []


def tokenize_texts_with(texts, max_tokens: int, tokenizer_json: str, max_chars: int) -> Decoded:
    """As tokenize_texts, with a Hugging Face tokenizer (special tokens included): ids are the tokenizer's plus
    one, so that 0 stays resmm's padding everywhere (token dropout, masks, the cache's compact ids)."""
    tokenizer = _tokenizer(tokenizer_json)
    out = np.zeros((len(texts), max_tokens), dtype=np.int64)
    present = np.zeros(len(texts), dtype=bool)
    events: list = [None] * len(texts)
    rows = [i for i, text in enumerate(texts) if isinstance(text, str) and text.strip()]
    for i in rows:
        if len(texts[i]) > max_chars:
            events[i] = TEXT_TRUNCATED
    encodings = tokenizer.encode_batch([texts[i][:max_chars] for i in rows]) if rows else []
    for i, encoding in zip(rows, encodings):
        ids = encoding.ids[:max_tokens]
        if ids:
            out[i, : len(ids)] = np.asarray(ids, dtype=np.int64) + 1
            present[i] = True
    return Decoded(out, present, events)
