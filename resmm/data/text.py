"""Text tokenisation by the hashing trick: words plus character trigrams, so typos and unseen words still land."""
from __future__ import annotations

import re
import unicodedata
import zlib

import numpy as np

from resmm.data.decoded import TEXT_TRUNCATED, Decoded

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
