"""Strategies by name, and the one entry point callers use.

Callers (tasks, the CLI, the benchmark) name a strategy as configured; validating messages
here means every strategy can assume well-formed OpenAI messages.
"""

from __future__ import annotations

from collections.abc import Mapping

from strategies import failsafe, hybrid, sliding_window, summarization
from strategies.base import CompressionRequest, CompressionResult, Strategy
from strategies.clearing import with_clearing
from tokenwindow.errors import BudgetError, InvalidInputError
from tokenwindow.messages import Message, validate_messages
from tokenwindow.settings import StrategyName

STRATEGIES: Mapping[str, Strategy] = {
    StrategyName.SLIDING_WINDOW: sliding_window.sliding_window,
    StrategyName.SUMMARIZATION: summarization.summarization,
    StrategyName.HYBRID: hybrid.hybrid,
    failsafe.NAME: failsafe.failsafe,
}
"""Every strategy by name; ``failsafe`` is the emergency one."""


def get_strategy(name: str) -> Strategy:
    """The strategy called ``name``; ``InvalidInputError`` lists the known ones."""
    try:
        return STRATEGIES[name]
    except KeyError:
        known = ", ".join(STRATEGIES)
        raise InvalidInputError(f"strategy: unknown {name!r}; known: {known}") from None


def compress(
    messages: list[Message], strategy: str, request: CompressionRequest
) -> CompressionResult:
    """Compress ``messages`` to ``request.budget`` with the named strategy.

    Raises ``InvalidInputError`` for malformed messages and ``BudgetError`` when the budget
    cannot hold the system messages and newest turn (the failsafe then cuts and flags instead).
    With ``request.clearing`` set, old tool results are cleared first, for every strategy.
    """
    if request.budget <= 0:
        raise BudgetError(f"budget: must be positive, got {request.budget}")
    chosen = get_strategy(strategy)
    checked = validate_messages(messages)
    if request.clearing is None:
        return chosen(checked, request)
    return with_clearing(chosen, checked, request, request.clearing)
