"""Is a combination's precision better than luck? Block permutation p-values that hold on market data.

Rows of windowed market data are not independent: every ticker of one date
shares that date's market move, and a label looks LABEL_HORIZON trading days
ahead, so neighbouring dates' labels overlap. A test that treats rows as
independent (the binomial test of precision against the base rate) then
finds "skill" far more often than its level says. Here the evaluated labels
are permuted in blocks of whole dates, each block at least one label horizon
long, with every ticker keeping its own column: a permuted label set has the
same market days, the same overlap and the same tickers as the real one, and
only its link to the predictions is broken.

The statistic of a combination is the one-sided binomial tail of its
precision, on its reruns' predictions pooled (a row predicted positive by two
reruns counts twice). Its p-value is the share of the label orders, the real
one included, under which that statistic is at least as extreme as observed:
valid whatever the dependence between reruns. The best of many combinations
is judged against the best of them under each permutation (the minP method of
Westfall and Young, 1993): the family-wise p-value.

A file without dates is taken to be in time order and is cut into blocks of
rows instead (PERMUTATION_BLOCK_LENGTH, by default a twentieth of the rows),
which cannot follow dates or tickers.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
from scipy import special, stats

UNDATED_BLOCKS = 20  # a file without dates is cut into this many blocks of rows


@dataclass(frozen=True)
class Blocks:
    """The evaluated rows as slots (dates, or rows) grouped into blocks that move as wholes."""
    slot_of_row: np.ndarray    # [rows] the slot of each row
    column_of_row: np.ndarray  # [rows] the ticker of each row (0 without dates)
    bounds: np.ndarray         # [blocks + 1] slot boundaries of the blocks
    by_date: bool
    span_days: int             # weekdays from the first evaluated date to the last (0 without dates)

    @property
    def count(self) -> int:
        return len(self.bounds) - 1

    @property
    def slots(self) -> int:
        return int(self.bounds[-1])


def date_blocks(dates: np.ndarray, tickers: np.ndarray, horizon: int) -> Blocks:
    """Blocks of consecutive dates, each spanning at least `horizon` weekdays (the last one absorbs a short rest)."""
    days, slot_of_row = np.unique(dates, return_inverse=True)
    _, column_of_row = np.unique(tickers, return_inverse=True)
    bounds = [0]
    for i in range(1, len(days)):
        if np.busday_count(days[bounds[-1]], days[i]) >= horizon:
            bounds.append(i)
    if len(bounds) > 1 and np.busday_count(days[bounds[-1]], days[-1]) + 1 < horizon:
        bounds.pop()  # a last block shorter than a horizon joins the one before
    bounds.append(len(days))
    span = int(np.busday_count(days[0], days[-1])) + 1
    return Blocks(slot_of_row, column_of_row, np.array(bounds), True, span)


def row_blocks(n_rows: int, block_rows: int | None) -> Blocks:
    """Blocks of `block_rows` consecutive rows (default: a twentieth of them), for a file without dates."""
    size = block_rows or math.ceil(n_rows / UNDATED_BLOCKS)
    bounds = np.append(np.arange(0, n_rows, size), n_rows)
    return Blocks(np.arange(n_rows), np.zeros(n_rows, dtype=np.int64), bounds, False, 0)


class PermutationTest:
    """The evaluated labels under every block order; scores pooled predictions against all of them at once.

    Column 0 of every matrix is the real order. With few blocks every order
    is enumerated (an exact test); otherwise `permutations` random orders are
    drawn from `seed`, so the p-values are the same in every run.
    """

    def __init__(self, labels: np.ndarray, blocks: Blocks, permutations: int, seed: int) -> None:
        self.blocks = blocks
        orders = block_orders(blocks.count, permutations, seed)
        self.exact = math.factorial(blocks.count) <= permutations + 1  # every order enumerated
        self.orders = len(orders)
        ranges = [np.arange(a, b) for a, b in zip(blocks.bounds[:-1], blocks.bounds[1:])]
        source = np.stack([np.concatenate([ranges[b] for b in order]) for order in orders])  # [orders, slots]
        columns = int(blocks.column_of_row.max()) + 1 if len(labels) else 1
        panel = np.zeros((blocks.slots, columns), dtype=np.float32)
        present = np.zeros((blocks.slots, columns), dtype=bool)
        panel[blocks.slot_of_row, blocks.column_of_row] = labels
        present[blocks.slot_of_row, blocks.column_of_row] = True
        # [rows, orders]: the label each row has under each order; a ticker absent on the date
        # a row's labels come from leaves that row out of that order's count
        rows_source = source[:, blocks.slot_of_row].T
        self.labels = np.ascontiguousarray(panel[rows_source, blocks.column_of_row[:, None]])
        mask = present[rows_source, blocks.column_of_row[:, None]]
        self.mask = None if mask.all() else np.ascontiguousarray(mask, dtype=np.float32)
        counted = mask.sum(axis=0)
        self.rate = self.labels.sum(axis=0, dtype=np.float64) / np.maximum(counted, 1)

    @property
    def smallest_p_value(self) -> float:
        return 1.0 / self.orders

    def counts(self, pooled: np.ndarray) -> np.ndarray:
        """[combinations, orders] how many orders give each combination a statistic at least as extreme.

        pooled: [combinations, rows] how many of a combination's reruns
        predicted each row positive. Row c's entry 0, over the number of
        orders, is combination c's p-value; its other entries are the
        p-values it would have had under each permuted order (for minP).
        """
        return self.counts_of_hits(*self.hits(pooled))

    def hits(self, pooled: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """([combinations, orders] true positives under each order, [combinations, orders] rows predicted
        positive that each order counts, None when every order counts every row).

        Both are sums over rows, so they add up over reruns and over row
        ranges: a worker computes them for the rows and trainings it has
        (training/loop.py), and the sums are what `counts_of_hits` ranks.
        """
        pooled = np.atleast_2d(np.asarray(pooled, dtype=np.float32))
        hits = np.rint(pooled @ self.labels).astype(np.int64)
        return hits, None if self.mask is None else np.rint(pooled @ self.mask).astype(np.int64)

    def counts_of_hits(self, hits: np.ndarray, predicted: np.ndarray | None) -> np.ndarray:
        """`counts`, from the true positives (and rows predicted positive) under each order (`hits`)."""
        hits = np.atleast_2d(hits).astype(np.int64, copy=False)
        if self.mask is None:
            # every order counts the same rows, so the same predictions and the same positive rate: the
            # tail falls as the hits rise, and ordering by hits is ordering by the statistic (exactly, where
            # the tails of very large counts would round to the same float; and without the special function,
            # which was most of the main process's time per combination)
            return at_least_as_many(hits)
        predicted = np.atleast_2d(predicted).astype(np.int64, copy=False)
        tail = np.where(hits > 0, special.bdtrc(np.maximum(hits - 1, 0), predicted, self.rate), 1.0)
        return stats.rankdata(tail, method="max", axis=1).astype(np.int32)

    def p_values(self, counts: np.ndarray) -> np.ndarray:
        return np.atleast_2d(counts)[:, 0] / self.orders


def at_least_as_many(hits: np.ndarray) -> np.ndarray:
    """[combinations, orders] int32: per row, how many of its entries are >= each one (whole numbers >= 0).

    What scipy's rankdata(-hits, method="max") gives, by tallying each row's
    values instead of sorting them: a tally is a few times faster than a
    sort on the main process's hot path. Each row is tallied from its own
    smallest value, so the tally spans a row's spread across the orders (a
    few hundred), not the size of the hits (up to the evaluated rows times
    the reruns).
    """
    spread = hits - hits.min(axis=1, keepdims=True) if hits.size else hits
    rows, top = len(spread), int(spread.max(initial=0)) + 1
    offset = (np.arange(rows, dtype=np.int64) * top)[:, None]
    tally = np.bincount((spread + offset).ravel(), minlength=rows * top).reshape(rows, top)
    at_least = np.cumsum(tally[:, ::-1], axis=1, dtype=np.int32)[:, ::-1]
    return np.take_along_axis(at_least, spread, axis=1)


def block_orders(n_blocks: int, permutations: int, seed: int) -> np.ndarray:
    """[orders, blocks]: the identity first, then every other order (when few) or `permutations` random ones."""
    if math.factorial(n_blocks) <= permutations + 1:
        return np.array(list(itertools.permutations(range(n_blocks))), dtype=np.int64).reshape(-1, n_blocks)
    rng = np.random.default_rng(seed)
    drawn = np.argsort(rng.random((permutations, n_blocks)), axis=1)
    return np.vstack([np.arange(n_blocks), drawn])


def family_wise_p_values(counts: np.ndarray) -> np.ndarray:
    """Each combination's p-value adjusted for being one of all of them (single-step minP, Westfall and Young).

    The share of label orders under which the best of all combinations
    has a p-value at most this combination's. Combinations without a
    statistic (pruned) pass rows of the largest count and never win.
    """
    counts = np.atleast_2d(counts)
    if counts.size == 0:
        return np.zeros(0)
    return family_wise_from(counts[:, 0], counts.min(axis=0))


def family_wise_from(own: np.ndarray, best: np.ndarray) -> np.ndarray:
    """family_wise_p_values from each combination's own count and the smallest count per order."""
    return np.searchsorted(np.sort(best), own, side="right") / len(best)


class KeptCounts:
    """What the ranking keeps of each combination's row of PermutationTest.counts: O(orders) in all.

    A combination's p-value needs only entry 0 of its row, and the
    family-wise p-values need only the smallest entry per order over all
    the combinations (family_wise_p_values): keeping those instead of every
    row keeps the main process's memory flat however many combinations a
    sweep has (a row is ~4 KB; 100,000 of them would be 400 MB).
    """

    def __init__(self, orders: int) -> None:
        self.orders = orders
        self.own: dict[str, int] = {}                          # combination -> entry 0 of its row
        self.best = np.full(orders, orders, dtype=np.int32)    # the smallest entry per order so far

    @classmethod
    def of(cls, rows: dict, orders: int) -> KeptCounts:
        kept = cls(orders)
        for cid, row in rows.items():
            kept.add(cid, row)
        return kept

    def add(self, cid: str, row: np.ndarray | None) -> None:
        """A combination's row (None: pruned, no statistic: p = 1, and it never wins a permutation)."""
        if row is None:
            self.own[cid] = self.orders
            return
        self.own[cid] = int(row[0])
        np.minimum(self.best, row, out=self.best)

    def p_values(self, cids) -> np.ndarray:
        return self._own(cids) / self.orders

    def family_wise(self, cids) -> np.ndarray:
        """family_wise_p_values of these combinations' rows, from what is kept."""
        return family_wise_from(self._own(cids), self.best)

    def _own(self, cids) -> np.ndarray:
        return np.array([self.own.get(cid, self.orders) for cid in cids], dtype=np.int64)


def bh_q_values(p_values) -> np.ndarray:
    """Benjamini-Hochberg q-values (false discovery rate), via scipy."""
    p = np.asarray(p_values, dtype=float)
    return stats.false_discovery_control(p, method="bh") if len(p) else p


def pooled_predictions(bits: list[bytes], rows: int) -> np.ndarray:
    """[rows] how many of these packed 0/1 prediction vectors predict each row positive."""
    pooled = np.zeros(rows, dtype=np.float32)
    for packed in bits:
        pooled += np.unpackbits(np.frombuffer(packed, dtype=np.uint8), count=rows)
    return pooled
