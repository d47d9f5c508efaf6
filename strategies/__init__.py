"""Pure compression strategies: no Redis, no network."""
