"""How often a key was asked for lately: a count-min sketch with aging, as TinyLFU uses.

The admission filter only needs to compare two keys' recent popularity, so
four rows of 4-bit-range counters (one byte each, capped at 15) in one
`bytearray` are enough: a few bytes a key, no per-key objects, and nothing the
garbage collector ever traverses. Counts are halved once `sample_size`
additions were made, so a key's past popularity fades and the filter follows
a changing workload (TinyLFU's "reset").

The table grows as the cache fills, not to its bound at once: a proxy allowed
100,000 entries that holds a few hundred costs 64 KiB, not 2 MiB (Caffeine,
too, sizes its sketch only as the cache fills). It grows by repeating itself
(twice, or any power of two): a key's block is its hash masked to the table,
and each more bit of mask lands it in its old block or in a copy of it, so
every key keeps its counts. A key that lands in a copy also finds the counts
of the keys that shared its old block, which the wider table keeps apart, so
the grown table is halved, as a reset would: the borrowed counts fade at once.
"""

from __future__ import annotations

import sys
from collections.abc import Hashable, Iterable

_ROWS = 4
_CAP = 15  # a counter saturates here: popularity beyond this is not worth distinguishing
_HALVE = bytes(value >> 1 for value in range(256))  # translate table: every counter halved in C
_PLUS_ONE = bytes(min(value + 1, _CAP) for value in range(256))  # a counter's next value: one lookup, no branch
WIDTH_PER_ENTRY = 4  # counters a row holds for each entry: few enough collisions that ties mean ties
SAMPLE_PER_ENTRY = 10  # additions between halvings, for each entry (TinyLFU's own choice)
_BLOCK_ROW = 16  # a row's counters in one 64-byte block
_MIN_WIDTH = 1 << 14  # 64 KiB at least: a small cache still tells apart the keys of a working set
# many times its size (in a loop of 50x the cache, a narrower table made every count a collision)
_MAX_WIDTH = 1 << 20  # 4 MiB at most, enough to tell a quarter million entries' keys apart
_SALT = 0x2545F491  # hashing (key, salt) mixes an int key's bits, which hash(int) leaves as they are


def _width_for(entries: int) -> int:
    """A row's counters for a cache of `entries`: a power of two, from _MIN_WIDTH to _MAX_WIDTH."""
    width = _MIN_WIDTH
    while width < WIDTH_PER_ENTRY * entries and width < _MAX_WIDTH:
        width <<= 1
    return width


def _sample_for(entries: int) -> int:
    """Additions between halvings for a cache of `entries`."""
    return SAMPLE_PER_ENTRY * min(max(entries, 16), _MAX_WIDTH)


class FrequencySketch:
    """Estimated recent request counts (0-15) of keys, in `_ROWS * width` bytes.

    A key's four counters, one a row, lie in one 64-byte block, as in Caffeine's
    sketch: one cache line touched per addition, not four. At a few hundred
    thousand entries the table outgrows the CPU's caches, and four scattered
    reads cost a miss more than all the rest of the sketch's arithmetic."""

    def __init__(self, max_entries: int) -> None:
        self._max_width = _width_for(max_entries)
        self._table = bytearray(_ROWS * _MIN_WIDTH)
        self._block_mask = _MIN_WIDTH // _BLOCK_ROW - 1
        self.fits = self._fits(_MIN_WIDTH)
        self.sample_size = _sample_for(max_entries)
        self._additions = 0

    def _fits(self, width: int) -> int:
        """How many entries a table `width` wide is for; the largest int once it can grow no more."""
        return width // WIDTH_PER_ENTRY if width < self._max_width else sys.maxsize

    def grow(self, entries: int) -> None:
        """Widen the table for a cache of `entries`, each key keeping half its counts (see the
        module's docstring); never past the width its `max_entries` asks for."""
        width = min(_width_for(entries), self._max_width)
        copies = width // (len(self._table) // _ROWS)  # a power of two: each copy is one more bit of mask
        if copies > 1:
            self._table = (self._table * copies).translate(_HALVE)
            self._block_mask = width // _BLOCK_ROW - 1
            self.fits = self._fits(width)

    def resize(self, entries: int) -> None:
        """For a cache that holds `entries` once full, not the `max_entries` it was made for (a byte
        bound binds first): its sample, and its table as `grow` widens it."""
        self.grow(entries)
        self.sample_size = _sample_for(entries)
        self._additions = min(self._additions, self.sample_size - 1)  # (a shorter sample halves once)

    def _slots(self, key: Hashable) -> tuple[int, int, int, int]:
        mixed = hash((key, _SALT))
        block, spread = (mixed & self._block_mask) << 6, mixed >> 32 & 0xFFFF
        return (block + (spread & 15), block + 16 + (spread >> 4 & 15), block + 32 + (spread >> 8 & 15),
                block + 48 + (spread >> 12))

    def add(self, key: Hashable) -> None:
        self.add_many((key,))

    def add_many(self, keys: Iterable[Hashable]) -> None:
        """One addition per key, in order. (_slots and the loop unrolled, and small ints
        (spread): this runs for every miss and every hit folded in.)"""
        table, mask, additions, sample_size = self._table, self._block_mask, self._additions, self.sample_size
        for key in keys:
            mixed = hash((key, _SALT))
            block, spread = (mixed & mask) << 6, mixed >> 32 & 0xFFFF
            slot = block + (spread & 15)
            table[slot] = _PLUS_ONE[table[slot]]
            slot = block + 16 + (spread >> 4 & 15)
            table[slot] = _PLUS_ONE[table[slot]]
            slot = block + 32 + (spread >> 8 & 15)
            table[slot] = _PLUS_ONE[table[slot]]
            slot = block + 48 + (spread >> 12)
            table[slot] = _PLUS_ONE[table[slot]]
            additions += 1
            if additions >= sample_size:
                self._table = table = table.translate(_HALVE)
                additions //= 2
        self._additions = additions

    def frequency(self, key: Hashable) -> int:
        table = self._table
        first, second, third, fourth = self._slots(key)
        return min(table[first], table[second], table[third], table[fourth])  # (a generator: twice the time)
