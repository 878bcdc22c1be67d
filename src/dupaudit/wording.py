"""Counted nouns in messages: `1 group`, `2 groups`, `1,000 images` (one rule for every message)."""

from __future__ import annotations

# the few nouns whose plural is not noun + "s"
_IRREGULAR = {"copy": "copies", "class": "classes", "match": "matches", "is": "are", "was": "were", "has": "have"}


def plural(count: int, noun: str, many: str | None = None) -> str:
    """'1 group', '2 groups', '1,234 copies': the count with thousands separators and the noun agreeing with it."""
    if count == 1:
        return f"1 {noun}"
    last = noun.rsplit(" ", 1)[-1]
    form = many or (noun[: len(noun) - len(last)] + _IRREGULAR.get(last, last + "s"))
    return f"{count:,} {form}"
