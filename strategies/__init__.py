"""Pure compression strategies: no Redis, no network."""

from strategies.registry import STRATEGIES, compress, get_strategy

__all__ = ["STRATEGIES", "compress", "get_strategy"]
