"""Placeholder: being written."""

from bastion.content import ContentType
from bastion.signals.base import SignalType


class _Pending(SignalType):
    name = "text"
    content_types = frozenset({ContentType.OTHER})

    @classmethod
    def compute(cls, content):
        return []

    @classmethod
    def validate(cls, value):
        return value

    @classmethod
    def examples(cls):
        return []


SIGNAL_TYPE = _Pending


def available():
    return False
