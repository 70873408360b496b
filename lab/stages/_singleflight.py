"""Single-flight: identical requests in flight share one call (used by dedup and cache coalescing)."""

from __future__ import annotations


class SingleFlight:
    """Calls in flight by key: the first request leads, identical ones wait for its answer."""

    def __init__(self):
        self.groups: dict[int, list[int]] = {}     # key -> [leader, followers...]

    def follow(self, key: int, i: int) -> bool:
        """Attach request i to the call in flight for `key`; False when there is none."""
        group = self.groups.get(key)
        if group is None:
            return False
        group.append(i)
        return True

    def lead(self, key: int, i: int) -> None:
        """Request i goes to the provider for `key`; identical requests will follow it."""
        self.groups[key] = [i]

    def release(self, key: int, leader: int) -> list[int] | None:
        """`leader`'s answer is back: its followers, or None if it did not lead a call for `key`."""
        group = self.groups.get(key)
        if group is None or group[0] != leader:
            return None
        del self.groups[key]
        return group[1:]
