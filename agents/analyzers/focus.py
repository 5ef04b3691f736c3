"""Which namespaces a question is about: "the hotel reservation app is slow".

People name an application the way they say it, not the way its namespace
is spelt: "Hotel Reservation", "hotel-reservation", "test-hotel-reservation",
"the social network app", "astronomy shop". A namespace is named when its
words (split on hyphens and underscores, ignoring case, with a generic
``test-`` prefix optional) appear in the question as consecutive words, or
run together as one ("hotelreservation"). A question naming none focuses on
nothing, and the diagnosis then weighs every namespace alike.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

_WORD = re.compile(r"[a-z0-9]+")
GENERIC_PREFIXES = ("test",)
"""Words a namespace may carry that a person leaves out ("test-social-network")."""


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def _spellings(namespace: str) -> set[str]:
    """The namespace's words run together, with and without a generic prefix."""
    words = _words(namespace)
    found = {"".join(words)} if words else set()
    if len(words) > 1 and words[0] in GENERIC_PREFIXES:
        found.add("".join(words[1:]))
    return found


def _named(question: list[str], spellings: set[str]) -> bool:
    longest = max((len(s) for s in spellings), default=0)
    for start in range(len(question)):
        joined = ""
        for word in question[start:]:
            joined += word
            if len(joined) > longest:
                break
            if joined in spellings:
                return True
    return False


def focus_namespaces(question: str, namespaces: Sequence[str]) -> list[str]:
    """The namespaces of ``namespaces`` that ``question`` names, in their given order."""
    words = _words(question)
    named: list[str] = []
    for namespace in namespaces:
        if namespace not in named and _named(words, _spellings(namespace)):
            named.append(namespace)
    return named


__all__ = ["GENERIC_PREFIXES", "focus_namespaces"]
