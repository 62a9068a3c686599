"""A simulated exchange rate: a random walk, rounded, so that it often does not
change between ticks, like the exchange-rate ticker that publishes only when
the rates changed."""

from __future__ import annotations

import random


class RandomWalk:
    def __init__(
        self,
        start: float,
        volatility: float,
        decimals: int,
        low: float | None,
        high: float | None,
        seed: int | None = None,
    ):
        self.value = start
        self.volatility = volatility
        self.decimals = decimals
        self.low = low
        self.high = high
        self.random = random.Random(seed)

    async def fetch(self) -> float:
        step = (
            self.random.gauss(0.0, self.volatility) * self.value
            if self.value
            else self.random.gauss(0.0, self.volatility)
        )
        value = self.value + step
        if self.low is not None:
            value = max(self.low, value)
        if self.high is not None:
            value = min(self.high, value)
        self.value = value
        return round(value, self.decimals)


def build(options, widget, config) -> RandomWalk:
    start = options.number("start", 100.0)
    volatility = options.number("volatility", 0.001, min=0)
    decimals = options.int("decimals", 4, min=0, max=12)
    low = options.number("min", None)
    high = options.number("max", None)
    if low is not None and high is not None and low >= high:
        raise options.error("max", f"expected a number above min ({low}), got {high}")
    return RandomWalk(start, volatility, decimals, low, high, options.int("seed", None))
