"""Words, sentences and dates in chat text, for the extractive summarizer and its benchmark.

Kept apart from the summarizer so the quality benchmark counts "content words" exactly the way
the summarizer reasons about them, from one stop-word list.
"""

from __future__ import annotations

import re
from datetime import date, timedelta

_STOP_WORDS = """
a about above after again against all am an and any are as at be because been before being
below between both but by can could did do does doing down during each few for from further had
has have having he her here hers herself him himself his how i if in into is it its itself just
me more most my myself no nor not of off on once only or other our ours ourselves out over own
same she should so some such than that the their theirs them themselves then there these they
this those through to too under until up very was we were what when where which while who whom
why will with would you your yours yourself yourselves s t don didn doesn isn wasn aren weren
won wouldn couldn shouldn ll re ve d m im ive id youre thats also get got really yeah oh wow hey
hi hello thanks thank okay ok lol
"""
STOP_WORDS: frozenset[str] = frozenset(_STOP_WORDS.split())
"""Common English function words and chat fillers: words that carry no fact."""
_NEGATIONS = "no not nor never don didn doesn isn wasn aren weren won wouldn couldn shouldn"
NEGATIONS: frozenset[str] = frozenset(_NEGATIONS.split())
"""Stop words that flip a sentence's meaning, so shortening must keep them."""

WORD = re.compile(r"[A-Za-z0-9]+")
SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")
_MONTHS = "January February March April May June July August September October November December"
MONTHS: list[str] = _MONTHS.split()
DATE = re.compile(r"\b(\d{1,2})\s+(" + "|".join(MONTHS) + r"),?\s+(\d{4})\b", re.IGNORECASE)


def words(text: str) -> list[str]:
    """Lower-cased alphanumeric words."""
    return [w.lower() for w in WORD.findall(text)]


def content_words(text: str) -> list[str]:
    """Lower-cased alphanumeric words that carry meaning (stop words removed)."""
    return [w for w in words(text) if w not in STOP_WORDS]


def sentences(text: str) -> list[str]:
    """Sentences and lines of ``text``, stripped, empty ones dropped."""
    return [s.strip() for s in SENTENCE_END.split(text) if s and s.strip()]


def find_date(text: str) -> date | None:
    """The first ``8 May, 2023``-style date in ``text``."""
    match = DATE.search(text)
    if match is None:
        return None
    day, month, year = match.groups()
    try:
        return date(int(year), MONTHS.index(month.capitalize()) + 1, int(day))
    except ValueError:
        return None


def format_date(day: date) -> str:
    return f"{day.day} {MONTHS[day.month - 1]} {day.year}"


def _month(day: date, delta: int) -> str:
    index = day.year * 12 + day.month - 1 + delta
    return f"{MONTHS[index % 12]} {index // 12}"


RELATIVE = re.compile(
    r"\b(yesterday|tomorrow|last (?:week|weekend|month|year)|next (?:week|month|year)"
    r"|this (?:month|year))\b(?! \()",
    re.IGNORECASE,
)
"""Relative time phrases not yet annotated (so annotating twice changes nothing)."""


def _resolve(phrase: str, day: date) -> str:
    phrase = phrase.lower()
    resolved = {
        "yesterday": format_date(day - timedelta(days=1)),
        "tomorrow": format_date(day + timedelta(days=1)),
        "last week": f"week before {format_date(day)}",
        "last weekend": f"weekend before {format_date(day)}",
        "next week": f"week after {format_date(day)}",
        "last month": _month(day, -1),
        "this month": _month(day, 0),
        "next month": _month(day, 1),
        "last year": str(day.year - 1),
        "this year": str(day.year),
        "next year": str(day.year + 1),
    }
    return resolved[phrase]


def resolve_relative_dates(text: str, day: date) -> str:
    """Annotate phrases such as "yesterday" with the date they mean, as of ``day``."""
    return RELATIVE.sub(lambda m: f"{m.group(0)} ({_resolve(m.group(0), day)})", text)
