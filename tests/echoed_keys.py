"""Vendor text that echoes the key, and a check that no piece of it survived.

A reader that cuts vendor text before redacting it leaves half a key that the redactor no longer
recognises. ``straddling()`` puts the key across every cut an adapter has made, so whichever cut a
reader makes, it cuts the key; ``key_fragments()`` finds any piece of it left in the result.
"""

from __future__ import annotations

import pickle

from conftest import CANARY_KEY

#: Where adapters have cut vendor text (200, 300, 500, 600, 1000 and 2000 characters).
CUTS = (200, 300, 500, 600, 1000, 2000)


def straddling(cuts: tuple[int, ...] = CUTS, total: int = 2600, key: str = CANARY_KEY) -> str:
    """Filler text with ``key`` straddling each of ``cuts``."""
    text = ["."] * total
    for cut in cuts:
        start = cut - len(key) // 2
        text[start : start + len(key)] = key
    return "".join(text)


def key_fragments(text: str, size: int = 8, key: str = CANARY_KEY) -> list[str]:
    """Every piece of ``key`` of ``size`` characters that appears in ``text``."""
    return [key[i : i + size] for i in range(len(key) - size + 1) if key[i : i + size] in text]


def error_fragments(error: BaseException, key: str = CANARY_KEY) -> list[str]:
    """Pieces of ``key`` anywhere an error shows itself: its text, repr, body and pickle."""
    shown = [str(error), repr(error), repr(getattr(error, "body", None)), repr(getattr(error, "vendor_request_id", ""))]
    shown.append(pickle.dumps(error).decode("latin-1"))
    return key_fragments(" ".join(shown), key=key)
