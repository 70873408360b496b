"""Bounded key stores with LRU, FIFO or LFU eviction, shared by the cache stages.

Each store maps a key to an entry object and keeps the total `size` of what it holds at
or below `capacity` (entries or tokens; None is unlimited). All operations are O(1)
(LFU uses frequency buckets with a moving minimum, as in Shah et al.'s O(1) LFU).
"""

from __future__ import annotations

from collections import OrderedDict


class LRUStore:
    """Least recently used goes first."""

    touch_on_hit = True

    def __init__(self, capacity: float | None):
        self.capacity = capacity
        self.items: OrderedDict = OrderedDict()   # key -> (entry, size)
        self.size = 0.0
        self.evictions = 0

    def __len__(self) -> int:
        return len(self.items)

    def __contains__(self, key) -> bool:
        return key in self.items

    def get(self, key):
        """The entry for `key` (counted as a use), or None."""
        item = self.items.get(key)
        if item is None:
            return None
        if self.touch_on_hit:
            self.items.move_to_end(key)
        return item[0]

    def put(self, key, entry, size: float = 1.0) -> None:
        if key in self.items:
            self.remove(key)
        if self.capacity is not None and size > self.capacity:
            return  # larger than the whole cache: not stored
        self.items[key] = (entry, size)
        self.size += size
        self._evict()

    def remove(self, key) -> None:
        item = self.items.pop(key, None)
        if item is not None:
            self.size -= item[1]

    def _evict(self) -> None:
        if self.capacity is None:
            return
        while self.size > self.capacity:
            _, (_, size) = self.items.popitem(last=False)
            self.size -= size
            self.evictions += 1


class FIFOStore(LRUStore):
    """First stored goes first; a hit does not change the order."""

    touch_on_hit = False


class LFUStore:
    """Least frequently used goes first; ties go least recently used first."""

    def __init__(self, capacity: float | None):
        self.capacity = capacity
        self.items: dict = {}                      # key -> [entry, size, freq]
        self.buckets: dict[int, OrderedDict] = {}  # freq -> keys in use order
        self.min_freq = 1
        self.size = 0.0
        self.evictions = 0

    def __len__(self) -> int:
        return len(self.items)

    def __contains__(self, key) -> bool:
        return key in self.items

    def _bucket(self, freq: int) -> OrderedDict:
        b = self.buckets.get(freq)
        if b is None:
            b = self.buckets[freq] = OrderedDict()
        return b

    def get(self, key):
        item = self.items.get(key)
        if item is None:
            return None
        freq = item[2]
        bucket = self.buckets[freq]
        del bucket[key]
        if not bucket:
            del self.buckets[freq]
            if self.min_freq == freq:
                self.min_freq = freq + 1
        item[2] = freq + 1
        self._bucket(freq + 1)[key] = None
        return item[0]

    def put(self, key, entry, size: float = 1.0) -> None:
        if key in self.items:
            self.remove(key)
        if self.capacity is not None and size > self.capacity:
            return
        self._make_room(size)
        self.items[key] = [entry, size, 1]
        self._bucket(1)[key] = None
        self.min_freq = 1
        self.size += size

    def remove(self, key) -> None:
        item = self.items.pop(key, None)
        if item is None:
            return
        bucket = self.buckets[item[2]]
        del bucket[key]
        if not bucket:
            del self.buckets[item[2]]
        self.size -= item[1]

    def _make_room(self, size: float) -> None:
        """Evict least frequently used entries until `size` more fits."""
        if self.capacity is None:
            return
        while self.items and self.size + size > self.capacity:
            while self.min_freq not in self.buckets:
                self.min_freq += 1
            self.remove(next(iter(self.buckets[self.min_freq])))
            self.evictions += 1


POLICIES = {"lru": LRUStore, "fifo": FIFOStore, "lfu": LFUStore}


def make_store(policy: str, capacity: float | None):
    return POLICIES[policy](capacity)
