"""How rlm-host writes a figure for people: a cost, a token saving, a one-line excerpt.

The values may come from a log someone forged, so each function takes anything, never raises,
and returns text that is safe on a screen (every dangerous character made visible).
"""

from __future__ import annotations

from ..sanitize import finite, visible


def money(value: object, places: int = 4, unknown: str = "-") -> str:
    """A cost in dollars to ``places`` decimals, or ``unknown`` when there is no (finite) number."""
    cost = finite(value)
    return f"${cost:.{places}f}" if cost is not None else unknown


def saving(saved_pct: object) -> str:
    """A token saving as "54% less" (or "12% more" when the RLM used more), "?" for no number."""
    pct = finite(saved_pct)
    if pct is None:
        return "?"
    return f"{pct:.0f}% less" if pct >= 0 else f"{-pct:.0f}% more"


def short(value: object, limit: int = 80) -> str:
    """One line of at most ``limit`` characters, with every dangerous character made visible."""
    text = visible(" ".join(str(value)[: limit * 1000].split()))  # bounded work for a huge field
    return text if len(text) <= limit else text[: limit - 1] + "…"
