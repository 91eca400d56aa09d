"""The contract every registered signal type keeps (see bastion.signals.base), checked for each one.

Types registered by any module (built-in or extension) are picked up from the registry at collection time, so a
new type is covered as soon as it is registered.
"""

from __future__ import annotations

import itertools

import pytest

import bastion.signals as signals
from bastion.content import ContentType
from bastion.errors import InvalidSignal
from bastion.signals.base import SignalType

TYPES = signals.all_types()


def test_registry_is_not_empty_and_names_are_unique_lower_case_keys():
    names = [t.name for t in TYPES]
    assert {"md5", "sha256", "pdq", "vpdq"} <= set(names)
    assert len(names) == len(set(names))
    for name in names:
        assert name == name.lower() and name.replace("_", "").isalnum(), name
        assert signals.get(name).name == name


def test_a_second_type_cannot_take_a_registered_name():
    existing = TYPES[0]
    clone = type("Clone", (existing,), {})
    with pytest.raises(ValueError, match="registered twice"):
        signals.register(clone)
    assert signals.get(existing.name) is existing


def test_unknown_type_is_an_invalid_signal_with_a_code():
    with pytest.raises(InvalidSignal) as info:
        signals.get("no_such_type")
    assert info.value.code == "unknown_signal_type"


@pytest.mark.parametrize("signal_type", TYPES, ids=lambda t: t.name)
class TestSignalTypeContract:
    def test_declares_what_it_hashes(self, signal_type: type[SignalType]):
        assert issubclass(signal_type, SignalType)
        assert signal_type.content_types and all(isinstance(c, ContentType) for c in signal_type.content_types)
        assert isinstance(signal_type.exact, bool)

    def test_examples_are_valid_and_canonical(self, signal_type: type[SignalType]):
        examples = signal_type.examples()
        assert examples, "every type documents at least one valid signal"
        for example in examples:
            canonical = signal_type.validate(example)
            assert canonical == example, "examples are given in canonical form"
            assert signal_type.validate(canonical) == canonical, "validate is idempotent"
            assert signals.validate(signal_type.name, example) == canonical

    def test_invalid_examples_are_refused_with_a_code(self, signal_type: type[SignalType]):
        invalid = signal_type.invalid_examples()
        assert "" in invalid
        for value in invalid:
            with pytest.raises(InvalidSignal) as info:
                signal_type.validate(value)
            assert info.value.code and info.value.code == info.value.code.lower()
            assert info.value.message

    def test_a_signal_is_at_distance_zero_from_itself_and_matches(self, signal_type: type[SignalType]):
        for example in signal_type.examples():
            distance = signal_type.distance(example, example)
            assert distance == 0
            assert signal_type.is_match(distance)

    def test_distance_is_symmetric_and_non_negative(self, signal_type: type[SignalType]):
        for a, b in itertools.combinations(signal_type.examples(), 2):
            d = signal_type.distance(a, b)
            assert d == signal_type.distance(b, a)
            assert d >= 0
            if signal_type.exact:
                assert d in (0, 1)
                assert signal_type.is_match(d) == (a == b)
