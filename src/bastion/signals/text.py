"""Text signals: ``text`` (exact, after normalisation) and ``text_minhash`` (near-duplicates).

Propaganda texts are re-posted with small changes meant to dodge exact hashes: other case and spacing, zero-width
characters, Cyrillic or Greek letters that look Latin, ``l33t`` digits, a few words changed. :func:`normalize_text`
folds the cosmetic changes away; ``text`` is the SHA-256 of that normal form; ``text_minhash`` estimates how many
word sequences two texts share, so a copy with a few words changed still matches.

Normalisation (the steps run in this order; the result is stable, ``normalize_text(normalize_text(s)) ==
normalize_text(s)``; changing any step changes stored ``text`` values and needs a new signal type name or a
recomputation of banked texts - tests pin the normal form and the signature of fixed samples):

1. Unicode NFKC: fullwidth, mathematical, circled and other compatibility letters to plain ones.
2. Homoglyphs to ASCII (before and after case folding, so both ``А`` and ``а`` fold): every character that
   Unicode's confusables data (UTS #39 ``confusables.txt``, as shipped by the MIT-licensed ``confusable-homoglyphs``
   package, pinned to 3.x) lists as confusable with a single ASCII letter becomes that letter (symbols may also
   fold to a digit; a letter never does, so Cyrillic ``б`` is not ``6``); decimal digits of every script become
   ASCII digits; ``l`` becomes ``i`` (``l``, ``I``, ``1`` and ``|`` are one glyph in many fonts). ``unidecode``
   was rejected: it transliterates whole scripts (Chinese to toneless pinyin merges unrelated words) rather than
   folding look-alikes, and it is GPL-licensed.
3. Case folding (``str.casefold``), then the marks removed: NFKD, every non-spacing/enclosing mark dropped
   (accents, Zalgo stacks, variation selectors), recomposed with NFC.
4. Invisible characters removed: all format characters (ZWSP, ZWNJ, ZWJ, WJ, BOM, soft hyphen, bidi controls,
   tags...), Hangul fillers, lone surrogates and control characters; other whitespace (including the braille
   blank) becomes a space.
5. Leetspeak, only within words that contain a letter, so plain numbers (``2024``, ``$100``) survive:
   ``0 1 3 4 5 7 8 9`` to ``o i e a s t b g``; ``@`` and ``$`` to ``a`` and ``s`` next to a letter (``$hit``,
   ``h@te``, ``leave$``); ``!`` and ``|`` to ``i`` before a letter (so a final ``!`` stays punctuation). Words
   that mix digits and letters for real (``4th``, ``mp3``) fold too; that only matters if two texts differ in
   nothing else. Digits are folded again after step 6 joins spaced letters.
6. Punctuation and symbols: apostrophes dropped (``don't`` = ``dont``); every other punctuation mark, symbol and
   emoji becomes a space; whitespace collapsed; runs of three or more single characters joined (``k i l l``,
   ``k.i.l.l``, ``k-i-l-l`` = ``kill``).

``text_minhash``: a MinHash signature over 3-word shingles of the normal form. Each word is hashed with BLAKE2b
(64 bits); a shingle hash combines its words with the MurmurHash3 64-bit finaliser; signature value *i* is the
minimum, over the text's shingles, of the top 32 bits of ``fmix64(shingle ^ seed_i)``, the seeds fixed in this
module. Everything is pinned here (no library defaults, no random generator) because signatures are stored and
exchanged. Value: ``"mh1:128:"`` + unpadded URL-safe base64 of the 128 big-endian 32-bit minimums.
``distance = 1 - (share of equal minimums)`` (the estimated Jaccard distance); a match when the similarity is at
least ``settings.text_near_duplicate_threshold``. Texts of fewer than :data:`MIN_WORDS` words give no MinHash
(six shingles or fewer: one changed word moves the estimate by a third; a short text is matched by its exact
``text`` signal).

Why 3-word shingles, N = 128 and threshold 0.5 (``bench/bench_text_minhash.py``, 200 generated documents of
100-1000 words, 19,900 unrelated pairs): with 3-word shingles a copy with 5% of its words replaced, inserted or
deleted scores at least 0.67 (median 0.78) and unrelated documents at most 0.055, so 0.5 sits in a wide gap (no
misses, no false matches; 10%-edited copies still score at least 0.50). 2-word shingles let unrelated texts share
more (up to 0.125; real prose shares far more word pairs than trigrams); 4 and 5 words make small edits cost too
much (5%-edited copies down to 0.52-0.59). N = 128 gives an estimate within about +/-0.09 (2 standard deviations)
at similarity 0.5, in 683 characters.
"""

from __future__ import annotations

import functools
import hashlib
import re
import unicodedata
from typing import ClassVar

import numpy as np

from bastion.content import Content, ContentType
from bastion.errors import ContentTooLarge, InvalidSignal
from bastion.settings import get_settings
from bastion.signals import _base64
from bastion.signals._digest import DigestSignalType
from bastion.signals.base import Signal, SignalType

SHINGLE_WORDS = 3
NUM_PERM = 128
MIN_WORDS = 8
MINHASH_PREFIX = f"mh1:{NUM_PERM}:"
_SIG_BYTES = NUM_PERM * 4
_CHUNK = 4096

_LEET_DIGITS = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "8": "b", "9": "g"})
_LETTER = r"[^\W\d_]"
_LEET_SYMBOLS = (  # "@" and "$" next to a letter; "!" and "|" before one
    (re.compile(rf"@(?={_LETTER})|(?<={_LETTER})@"), "a"),
    (re.compile(rf"\$(?={_LETTER})|(?<={_LETTER})\$"), "s"),
    (re.compile(rf"[!|](?={_LETTER})"), "i"),
)
_SYMBOLS = re.compile(r"[@$!|]+")
_SPACED_LETTERS = re.compile(r"(?<!\S)\w(?: \w){2,}(?!\S)")
_APOSTROPHES = "'\u2018\u2019\u02bc\u02bb\u0060\u00b4\u2032"
_INVISIBLE_LETTERS = "\u115f\u1160\u3164\uffa0"
_KEEP_CATEGORIES = frozenset({"Lu", "Ll", "Lt", "Lm", "Lo", "Nd", "Nl", "No", "Mc", "Cn", "Co"})


_LUT_SIZE = 0x40000  # planes 0-3; above them only tags and variation selectors (E0000-E0FFF) need handling
_DELETE = np.uint32(0xFFFFFFFF)


@functools.cache
def _tables() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(homoglyph fold, invisible/whitespace strip, punctuation) as code point lookup tables, built once.

    ``str.translate`` with a dict costs ~150 ns a character outside ASCII; a numpy table lookup is ~50x faster,
    which matters for the 20 MB texts settings allow.
    """
    from confusable_homoglyphs.utils import load

    homoglyphs, strip, punct = (np.arange(_LUT_SIZE, dtype=np.uint32) for _ in range(3))
    for char, confusables in load("confusables.json").items():
        if len(char) != 1 or char.isascii() or ord(char) >= _LUT_SIZE:
            continue
        targets = [c["c"] for c in confusables if len(c["c"]) == 1 and c["c"].isascii() and c["c"].isalnum()]
        letters = [t for t in targets if t.isalpha()]
        if char.isalpha():
            targets = letters  # a letter folds to a letter only (Cyrillic б is not the digit 6)
        if targets:
            homoglyphs[ord(char)] = ord((letters or targets)[0].lower())
    homoglyphs[ord("l")] = ord("i")
    for cp in range(0x20000):  # planes 2-3 hold only CJK ideographs (letters) and unassigned code points
        ch = chr(cp)
        cat = unicodedata.category(ch)
        if cat == "Nd":  # any script's decimal digits to ASCII ones
            homoglyphs[cp] = ord("0") + unicodedata.digit(ch)
        if cat in _KEEP_CATEGORIES and ch not in _INVISIBLE_LETTERS:
            continue
        if cat in ("Mn", "Me", "Cf", "Cs", "Cc") or ch in _INVISIBLE_LETTERS:
            strip[cp] = _DELETE
        if cat in ("Zs", "Zl", "Zp") or ch.isspace() or ch == "\u2800":
            strip[cp] = ord(" ")
        elif cat[0] in "PS" and ch not in "@$!|":
            punct[cp] = _DELETE if ch in _APOSTROPHES else ord(" ")
    return homoglyphs, strip, punct


def _translate(s: str, table: np.ndarray) -> str:
    """``s`` with each code point mapped through ``table`` (_DELETE drops it); tags and variation selectors above
    the table (U+E0000-E0FFF, all default-ignorable) are dropped, other code points above it kept."""
    codes = np.frombuffer(s.encode("utf-32-le", errors="surrogatepass"), dtype=np.uint32)
    high = codes >= _LUT_SIZE
    out = table[np.where(high, 0, codes)]
    if high.any():
        out = np.where(high & ((codes < 0xE0000) | (codes >= 0xE1000)), codes, np.where(high, _DELETE, out))
    return out[out != _DELETE].tobytes().decode("utf-32-le", errors="surrogatepass")


def _fold_digits(word: str) -> str:
    if word.isalpha() or word.isnumeric():  # most words: checked in C
        return word
    if word.isalnum() or any(c.isalpha() for c in word):  # alphanumeric but not all numeric: has a letter
        return word.translate(_LEET_DIGITS)
    return word


def _fold_leet(t: str) -> str:
    """Leetspeak symbols (by regex, in C) then digits in words with a letter; other symbols become spaces."""
    for pattern, letter in _LEET_SYMBOLS:
        t = pattern.sub(letter, t)
    return " ".join([_fold_digits(w) for w in _SYMBOLS.sub(" ", t).split()])


def normalize_text(s: str) -> str:
    """The normal form texts are hashed in (see the module docstring)."""
    homoglyphs, strip, punct = _tables()
    t = _translate(unicodedata.normalize("NFKC", s), homoglyphs).casefold()
    t = _translate(_translate(unicodedata.normalize("NFKD", t), strip), homoglyphs)
    t = _fold_leet(_translate(unicodedata.normalize("NFC", t), punct))  # punct: all to spaces but "@$!|"
    t = _SPACED_LETTERS.sub(lambda m: m.group().replace(" ", ""), t)
    return " ".join([_fold_digits(w) for w in t.split(" ")])  # again for joined words ("0 0 a" -> "ooa")


@functools.lru_cache(maxsize=1)
def _normalized(text: str) -> str:
    return normalize_text(text)


def _content_text(content: Content) -> str:
    """The normalised text of a text or PDF content, within settings.max_text_bytes."""
    text = content.text
    limit = content.settings.max_text_bytes
    if len(text) > limit or len(text.encode("utf-8", errors="surrogatepass")) > limit:
        raise ContentTooLarge(f"text is over the limit of {limit} bytes", code="text_too_large")
    return _normalized(text)


# -- MinHash ------------------------------------------------------------------------------------------------------
_M1, _M2 = np.uint64(0xFF51AFD7ED558CCD), np.uint64(0xC4CEB9FE1A85EC53)
GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_S33, _S32 = np.uint64(33), np.uint64(32)


def fmix64(x: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finaliser (a bijection) on an array, wrapping modulo 2**64 (a new array)."""
    x = x ^ (x >> _S33)
    tmp = np.empty_like(x)
    for m in (_M1, _M2):
        np.multiply(x, m, out=x)
        np.right_shift(x, _S33, out=tmp)
        np.bitwise_xor(x, tmp, out=x)
    return x


_SEEDS = fmix64(np.arange(1, NUM_PERM + 1, dtype=np.uint64) * GOLDEN)


def _word_hashes(words: list[str]) -> np.ndarray:
    ids = {w: int.from_bytes(hashlib.blake2b(w.encode("utf-8"), digest_size=8).digest(), "little") for w in set(words)}
    return np.fromiter((ids[w] for w in words), dtype=np.uint64, count=len(words))


def shingle_hashes(normalized: str, k: int = SHINGLE_WORDS) -> np.ndarray:
    """Distinct 64-bit hashes of the k-word shingles of a normalised text."""
    w = _word_hashes(normalized.split())
    n = len(w) - k + 1
    if n <= 0:
        return np.empty(0, np.uint64)
    h = w[:n].copy()
    for j in range(1, k):
        h = fmix64(h * GOLDEN + w[j : j + n])
    return np.unique(h)


def minhash_signature(shingles: np.ndarray) -> np.ndarray:
    """The NUM_PERM minimums (uint32) of a set of shingle hashes (non-empty)."""
    sig = np.full(NUM_PERM, np.iinfo(np.uint32).max, dtype=np.uint32)
    for start in range(0, len(shingles), _CHUNK):
        chunk = shingles[start : start + _CHUNK]
        mins = (fmix64(chunk[None, :] ^ _SEEDS[:, None]).min(axis=1) >> _S32).astype(np.uint32)  # top 32 bits
        np.minimum(sig, mins, out=sig)
    return sig


def encode_signature(sig: np.ndarray) -> str:
    return _base64.encode(MINHASH_PREFIX, sig.astype(">u4").tobytes())


_EMPTY_SIGNATURE = b"\xff" * _SIG_BYTES


def _signature_bytes(value: str) -> bytes:
    """The 512 raw bytes of a ``text_minhash`` value; raises InvalidSignal if malformed."""
    raw = _base64.decode(value, prefix=MINHASH_PREFIX, size=_SIG_BYTES, signal_type="text_minhash", code="minhash",
                         carries=f"{NUM_PERM} 32-bit values")
    if raw == _EMPTY_SIGNATURE:
        raise InvalidSignal("text_minhash of an empty text", code="minhash_empty", signal_type="text_minhash")
    return raw


def decode_signature(value: str) -> np.ndarray:
    """The uint32 minimums of a ``text_minhash`` value; raises InvalidSignal if malformed."""
    return np.frombuffer(_signature_bytes(value), dtype=">u4").astype(np.uint32)


def decode_signatures(values: list[str]) -> np.ndarray:
    """(len(values), NUM_PERM) uint32 minimums; raises InvalidSignal at the first malformed value."""
    raw = b"".join([_signature_bytes(v) for v in values])
    return np.frombuffer(raw, dtype=">u4").astype(np.uint32).reshape(len(values), NUM_PERM)


def minhash_of_text(normalized: str) -> str | None:
    """The ``text_minhash`` value of a normalised text; None below MIN_WORDS words."""
    if len(normalized.split()) < MIN_WORDS:
        return None
    return encode_signature(minhash_signature(shingle_hashes(normalized)))


def similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Estimated Jaccard similarity of two signatures."""
    return float(np.count_nonzero(a == b)) / NUM_PERM


# -- signal types -------------------------------------------------------------------------------------------------
class TextSignal(DigestSignalType):
    """SHA-256 of the normalised text: equal for texts that differ only cosmetically."""

    name = "text"
    content_types = frozenset({ContentType.TEXT, ContentType.PDF})
    hex_length = 64

    @classmethod
    def compute(cls, content: Content) -> list[Signal]:
        normalized = _content_text(content)
        if not normalized:
            return []
        return [Signal(cls.name, hashlib.sha256(normalized.encode("utf-8")).hexdigest())]

    @classmethod
    def examples(cls) -> list[str]:
        return [hashlib.sha256(normalize_text(t).encode()).hexdigest() for t in ("Hello world", "The harbour ferry")]


class TextMinHashSignal(SignalType):
    """MinHash of the normalised text's 3-word shingles: near-duplicate texts."""

    name = "text_minhash"
    content_types = frozenset({ContentType.TEXT, ContentType.PDF})
    exact: ClassVar[bool] = False

    @classmethod
    def compute(cls, content: Content) -> list[Signal]:
        value = minhash_of_text(_content_text(content))
        return [] if value is None else [Signal(cls.name, value)]

    @classmethod
    def validate(cls, value: str) -> str:
        return encode_signature(decode_signature(value))

    @classmethod
    def distance(cls, a: str, b: str) -> float:
        return 1.0 - similarity(_decoded(a), _decoded(b))

    @classmethod
    def is_match(cls, distance: float) -> bool:
        return 1.0 - distance >= get_settings().text_near_duplicate_threshold - 1e-9

    @classmethod
    def examples(cls) -> list[str]:
        text = "the ferry to the northern islands runs twice a day until march weather permitting"
        reordered = "weather permitting the ferry runs twice a day to the northern islands until march"
        return [minhash_of_text(text), minhash_of_text(reordered)]  # type: ignore[list-item]

    @classmethod
    def invalid_examples(cls) -> list[str]:
        good = cls.examples()[0]
        return [
            "",
            "   ",
            "mh2:128:" + good[8:],
            "mh1:64:" + good[8:],
            good[:-4],
            good + "AAAA",
            good[:-1] + "*",
            encode_signature(np.full(NUM_PERM, np.iinfo(np.uint32).max, dtype=np.uint32)),
        ]


@functools.lru_cache(maxsize=4096)
def _decoded(value: str) -> np.ndarray:
    return decode_signature(value)


SIGNAL_TYPES = (TextSignal, TextMinHashSignal)
__all__ = [
    "TextSignal",
    "TextMinHashSignal",
    "SIGNAL_TYPES",
    "normalize_text",
    "minhash_of_text",
    "decode_signature",
    "decode_signatures",
    "encode_signature",
    "similarity",
    "NUM_PERM",
    "SHINGLE_WORDS",
    "MIN_WORDS",
]
