"""Rate-limit buckets: a per-minute limit refilled continuously, as providers describe theirs.

The providers' own limits (the mock provider's 429s) and the client-side `rate_limit`
stage both meter requests and tokens with this one bucket.
"""

from __future__ import annotations


class TokenBucket:
    """A per-minute limit refilled continuously, as providers describe their rate limits."""

    def __init__(self, per_minute: float):
        self.capacity = float(per_minute)
        self.level = float(per_minute)
        self.rate_per_s = per_minute / 60.0
        self.t_s = 0.0

    def refill(self, now: float) -> None:
        self.level = min(self.capacity, self.level + (now - self.t_s) * self.rate_per_s)
        self.t_s = now

    def wait_s(self, amount: float, now: float) -> float:
        """0 if `amount` fits now, else how long until it would."""
        self.refill(now)
        if amount <= self.level + 1e-9:   # float dust must not become a zero-length wait
            return 0.0
        if amount > self.capacity:
            return float("inf")
        return (amount - self.level) / self.rate_per_s

    def take(self, amount: float) -> None:
        self.level -= amount
