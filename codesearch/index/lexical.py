"""BM25 over code terms. Each segment keeps its units' term frequencies (Postings) and scores are computed
at query time with statistics over every live unit of every segment, so a refresh writes postings for what
changed only, and a unit scores exactly as in one index built from scratch.

A document is a whole unit (a function, however many parts the model needed), the thing an answer
shows: a question's words often sit in the doc comment of a function's first part and its identifiers
in another, and scoring each part alone missed that. Its terms are terms.unit_document's.
SQLite keeps each part's terms, from which a new segment's postings are built.
"""

from __future__ import annotations

import hashlib
import math
from array import array
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from codesearch.index.terms import unit_document
from codesearch.source.chunk import units_of

if TYPE_CHECKING:
    import numpy as np


class Postings:
    """The BM25 documents of one segment's units as term frequencies, for BM25 computed at query time from
    statistics over every segment. Units are in id order (each known by its first chunk's id); terms are
    ordered by a stable 64-bit hash, so a term is found with one binary search over memory-mapped arrays."""

    _ARRAYS = ("unit_ids", "unit_lengths", "term_hashes", "term_offsets", "term_bytes", "posting_starts",
               "posting_units", "posting_counts")

    def __init__(self, unit_ids, unit_lengths, term_hashes, term_offsets, term_bytes, posting_starts,
                 posting_units, posting_counts):
        self.unit_ids = unit_ids  # int64, ascending
        self.unit_lengths = unit_lengths  # int64: terms in each unit's document
        self.term_hashes = term_hashes  # uint64, ascending
        self.term_offsets = term_offsets  # int64: term i is term_bytes[term_offsets[i]:term_offsets[i + 1]]
        self.term_bytes = term_bytes  # uint8
        self.posting_starts = posting_starts  # int64: term i's postings are posting_starts[i]:[i + 1]
        self.posting_units = posting_units  # int32: unit positions
        self.posting_counts = posting_counts  # uint16: the term's frequency in that unit (capped)

    def __len__(self) -> int:
        return len(self.unit_ids)

    @classmethod
    def build(cls, documents: Iterable[tuple[int, list[str]]]) -> "Postings":
        """From (first chunk id, unit_document) pairs, read one at a time: a document's terms are counted and
        let go, so a segment of a quarter of a million units never holds its words at once."""
        import numpy as np
        from collections import Counter

        columns: dict[str, int] = {}
        # Machine integers, not Python's: a segment of 250,000 units has some ten million postings.
        unit_ids, unit_lengths = array("q"), array("q")
        term_column, unit_column, count_column = array("q"), array("q"), array("q")
        for position, (unit_id, document) in enumerate(documents):
            unit_ids.append(unit_id)
            unit_lengths.append(len(document))
            for term, count in Counter(document).items():
                term_column.append(columns.setdefault(term, len(columns)))
                unit_column.append(position)
                count_column.append(count)
        ids = np.frombuffer(unit_ids, np.int64)
        order = np.argsort(ids, kind="stable")  # units are kept in id order
        new_position = np.empty(len(ids), dtype=np.int64)
        new_position[order] = np.arange(len(ids))
        terms = [term.encode("utf-8") for term in columns]
        return cls._from_triples(ids[order], np.frombuffer(unit_lengths, np.int64)[order], terms,
                                 np.frombuffer(term_column, np.int64), new_position[np.frombuffer(unit_column, np.int64)],
                                 np.frombuffer(count_column, np.int64))

    @classmethod
    def from_parts(cls, parts: Iterable[tuple[object, str]]) -> "Postings":
        """One document per unit, from (chunk, its terms) in unit order (the parts of a split function
        adjacent: database.unit_parts); each unit is known by its first chunk's id."""
        units = units_of(parts, chunk_of=lambda part: part[0])
        return cls.build((unit[0][0].id, unit_document(unit[0][0].symbol, unit[0][0].path, [terms for _, terms in unit]))
                         for unit in units)

    @classmethod
    def _from_triples(cls, unit_ids, unit_lengths, terms: list[bytes], term_column, unit_column, count_column,
                      hashes: np.ndarray | None = None):
        """From (term number, unit position, count) triples over `terms` (UTF-8, any order, one triple per
        pair), with the terms' hashes when known."""
        import numpy as np

        if hashes is None:
            hashes = np.fromiter((_bytes_hash(term) for term in terms), np.uint64, len(terms))
        # Terms sharing a hash (never seen yet) may lie in any order: column() compares each of them.
        order = np.argsort(hashes, kind="stable")
        rank = np.empty(len(terms), dtype=np.int64)
        rank[order] = np.arange(len(terms))
        encoded = [terms[number] for number in order.tolist()]
        lengths = np.fromiter((len(term) for term in encoded), np.int64, len(encoded))
        # One sort of (term rank, unit) packed in 64 bits, each pair once: a merge of 250,000 units sorts some
        # ten million postings, and every array here is that long.
        pairs = rank[term_column] << 32
        pairs |= unit_column
        by_term = np.argsort(pairs)
        pairs = pairs[by_term]
        return cls(np.asarray(unit_ids, np.int64), np.asarray(unit_lengths, np.int64), hashes[order],
                   np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
                   np.frombuffer(b"".join(encoded), dtype=np.uint8).copy(),
                   np.searchsorted(pairs, np.arange(len(terms) + 1, dtype=np.int64) << 32).astype(np.int64),
                   (pairs & 0xFFFF_FFFF).astype(np.int32),
                   np.minimum(count_column[by_term], np.iinfo(np.uint16).max).astype(np.uint16))

    @classmethod
    def merge(cls, sources: list[tuple["Postings", object]]) -> "Postings":
        """One Postings of the units of `sources` that live, each (postings, deleted chunk ids). Term numbers
        and unit positions are 32-bit, counts 16-bit, as stored: the postings of a merge are its memory."""
        import numpy as np

        if not sources:
            return cls.build([])
        columns: dict[bytes, int] = {}
        hashes: list[int] = []
        unit_ids, unit_lengths, term_column, unit_column, count_column = [], [], [], [], []
        placed = 0
        for postings, deleted in sources:
            live = ~np.isin(postings.unit_ids, np.asarray(deleted, dtype=np.int64))
            position = (np.cumsum(live) - 1 + placed).astype(np.int32)  # each live unit's place in the merge
            unit_ids.append(np.asarray(postings.unit_ids)[live])
            unit_lengths.append(np.asarray(postings.unit_lengths)[live])
            mine = np.empty(len(postings.term_hashes), dtype=np.int32)
            for number, (term, hashed) in enumerate(zip(postings.encoded_terms(), postings.term_hashes.tolist())):
                column = columns.get(term)
                if column is None:
                    column = columns[term] = len(columns)
                    hashes.append(hashed)
                mine[number] = column
            units = np.asarray(postings.posting_units)
            keep = live[units]
            term_column.append(np.repeat(mine, np.diff(postings.posting_starts))[keep])
            unit_column.append(position[units[keep]])
            count_column.append(np.asarray(postings.posting_counts)[keep])
            placed += int(live.sum())
        # Units are put in id order; a merge's sources hold disjoint ids.
        ids = np.concatenate(unit_ids)
        order = np.argsort(ids, kind="stable")
        new_position = np.empty(len(ids), dtype=np.int32)
        new_position[order] = np.arange(len(ids), dtype=np.int32)
        units = new_position[np.concatenate(unit_column)]
        del unit_column
        # A term whose every unit was deleted is dropped, as a fresh build would never have seen it.
        terms_column = np.concatenate(term_column)
        del term_column
        seen = np.zeros(len(columns), dtype=bool)
        seen[terms_column] = True
        used = np.flatnonzero(seen)
        renumber = np.full(len(columns), -1, dtype=np.int32)
        renumber[used] = np.arange(len(used), dtype=np.int32)
        names = list(columns)
        return cls._from_triples(ids[order], np.concatenate(unit_lengths)[order], [names[i] for i in used.tolist()],
                                 renumber[terms_column], units, np.concatenate(count_column),
                                 np.asarray(hashes, dtype=np.uint64)[used])

    def encoded_terms(self) -> list[bytes]:
        """Every term in UTF-8, in the stored order."""
        data, offsets = bytes(self.term_bytes), self.term_offsets.tolist()
        return [data[start:end] for start, end in zip(offsets, offsets[1:])]

    def columns(self, terms: list[str], hashed: np.ndarray) -> list[int]:
        """Each term's number here, or -1; `hashed` holds their term_hash values (uint64). One search of the
        hashes for all of them: a query asks every segment for every term."""
        import numpy as np

        hashes = self.term_hashes
        numbers = np.searchsorted(hashes, hashed)
        present = np.zeros(len(terms), dtype=bool) if not len(hashes) else \
            hashes[np.minimum(numbers, len(hashes) - 1)] == hashed
        found = [-1] * len(terms)
        for position in np.flatnonzero(present).tolist():
            number, encoded = int(numbers[position]), terms[position].encode("utf-8")
            while number < len(hashes) and hashes[number] == hashed[position]:  # a collision: the next one
                if bytes(self.term_bytes[self.term_offsets[number]:self.term_offsets[number + 1]]) == encoded:
                    found[position] = number
                    break
                number += 1
        return found

    def postings(self, column: int) -> tuple[np.ndarray, np.ndarray]:
        start, end = self.posting_starts[column], self.posting_starts[column + 1]
        return self.posting_units[start:end], self.posting_counts[start:end]

    def save(self, folder: Path, save_array) -> None:
        for name in self._ARRAYS:
            save_array(folder / f"{name}.npy", getattr(self, name))

    @classmethod
    def load(cls, folder: Path) -> "Postings":
        import numpy as np

        # Plain arrays over the mapped pages: numpy.memmap's own slicing costs more than the searches here.
        return cls(*(np.load(folder / f"{name}.npy", mmap_mode="r", allow_pickle=False).view(np.ndarray)
                     for name in cls._ARRAYS))


def _holding(units: np.ndarray, wanted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each of `wanted`, its position in `units` (ascending) and whether it is there."""
    import numpy as np

    if not len(units):
        return np.zeros(len(wanted), dtype=np.int64), np.zeros(len(wanted), dtype=bool)
    # Keys of the array's own type: numpy would otherwise copy the whole posting list to the keys' type.
    wanted = np.asarray(wanted).astype(units.dtype, copy=False)
    where = np.minimum(np.searchsorted(units, wanted), len(units) - 1)
    return where, units[where] == wanted


def term_hash(term: str) -> int:
    return _bytes_hash(term.encode("utf-8"))


def _bytes_hash(term: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(term, digest_size=8).digest(), "little")


class LexicalIndex:
    """BM25 over the live units of several segments, scored at query time with statistics over all of them
    (units, each term's document frequency, the average length), so every score is the one a single index
    built from the same units would give. Lucene's variant of BM25, as bm25s computes it."""

    K1, B = 1.2, 0.75

    def __init__(self, parts: list[tuple[Postings, object]]):
        """parts: each segment's Postings with the chunk ids deleted from it."""
        import numpy as np

        self.parts = []
        for postings, deleted in parts:
            deleted = np.asarray(deleted, dtype=np.int64)
            live = ~np.isin(postings.unit_ids, deleted) if len(deleted) else None
            self.parts.append((postings, live))
        # Per part, the positions of its deleted units (None: none deleted), looked up in each term's postings.
        self._dead = [None if live is None else np.flatnonzero(~live).astype(postings.posting_units.dtype)
                      for postings, live in self.parts]
        self.documents = sum(len(p) if live is None else int(live.sum()) for p, live in self.parts)
        length = sum(int(np.sum(p.unit_lengths if live is None else np.asarray(p.unit_lengths)[live]))
                     for p, live in self.parts)
        self.average_length = length / self.documents if self.documents else 1.0
        self._norms: list | None = None
        self._searched: dict[str, int] = {}  # the last search's terms and their frequencies, which fusion asks for

    def __len__(self) -> int:
        return self.documents

    def _norm(self, part: int) -> np.ndarray:
        """k1 · (1 − b + b · length / average length) per unit of a part: each term's denominator."""
        import numpy as np

        if self._norms is None:
            self._norms = [self.K1 * (1 - self.B + self.B * np.asarray(p.unit_lengths, dtype=np.float64)
                                      / self.average_length) for p, _ in self.parts]
        return self._norms[part]

    def _postings(self, terms: list[str], live_only: bool = True) -> dict[str, list[tuple[int, np.ndarray, np.ndarray]]]:
        """Per term, (part, unit positions, counts) of the units holding it: the live ones, or (not live_only)
        all, deleted ones included, as stored (memory-mapped, by position)."""
        import numpy as np

        hashed = np.fromiter((term_hash(term) for term in terms), dtype=np.uint64, count=len(terms))
        found: dict[str, list] = {term: [] for term in terms}
        for number, (postings, live) in enumerate(self.parts):
            for term, column in zip(terms, postings.columns(terms, hashed)):
                if column < 0:
                    continue
                units, counts = postings.postings(column)
                if live_only and live is not None:
                    keep = live[units]
                    units, counts = units[keep], counts[keep]
                if len(units):
                    found[term].append((number, units, counts))
        return found

    def _frequency(self, found: list[tuple[int, np.ndarray, np.ndarray]]) -> int:
        """How many live units hold a term, from all its postings: deleted units are looked up, not scanned."""
        import numpy as np

        total = 0
        for part, units, _ in found:
            total += len(units)
            if self._dead[part] is not None:
                total -= int(np.count_nonzero(_holding(units, self._dead[part])[1]))
        return total

    def _idf(self, frequency: int) -> float:
        return math.log(1 + (self.documents - frequency + 0.5) / (frequency + 0.5))

    def _weights(self, part: int, idf: float, units: np.ndarray, counts: np.ndarray) -> np.ndarray:
        import numpy as np

        counts = counts.astype(np.float64)
        return idf * counts / (counts + self._norm(part)[units])

    def search(self, terms: list[str], limit: int, allowed: np.ndarray | None = None) -> list[tuple[int, float]]:
        """(first chunk id, score) of the best `limit` units that contain a term, ties in id order; `allowed`
        (chunk ids) filters first (a unit's parts share path and language, so its first chunk stands for all).

        Exact, without reading every posting (MaxScore, as Lucene prunes): no term adds more than its idf to a
        unit (tf / (tf + k1 · norm) < 1), so terms are taken rarest first, and once the idfs of the terms left
        add up to less than the limit-th best score so far, a unit holding none of the terms taken cannot
        enter the answer: the common terms left are only looked up for the units already found, and of
        those only for the ones whose score plus the idfs left can still reach the limit-th best."""
        import numpy as np

        if not self.documents or not terms or limit <= 0:
            return []
        weighted, frequencies = [], {}
        self._searched = frequencies
        for term, found in self._postings(list(dict.fromkeys(terms)), live_only=False).items():
            frequencies[term] = self._frequency(found)
            if found:
                weighted.append((self._idf(frequencies[term]), term, found))
        weighted.sort(key=lambda item: (-item[0], item[1]))
        left_after = [sum(item[0] for item in weighted[number + 1:]) for number in range(len(weighted))]
        scores = {part: np.zeros(len(postings), dtype=np.float64) for part, (postings, _) in enumerate(self.parts)}
        leaders = {part: np.zeros(0, dtype=np.int64) for part in scores}  # the best `limit` units found so far
        candidates = None  # per part, unit positions, once only they can be answers
        for number, (idf, _, found) in enumerate(weighted):
            left = left_after[number]
            if candidates is None:
                for part, units, counts in found:
                    live = self.parts[part][1]
                    if live is not None:
                        keep = live[units]
                        units, counts = units[keep], counts[keep]
                    scores[part][units] += self._weights(part, idf, units, counts)
                    # Only the units this term raised can pass the ones that led before it.
                    before = leaders[part]
                    raised = _holding(units, before)[1]
                    leaders[part] = np.concatenate([before[~raised], self._allowed(part, units, allowed)])
                threshold = self._threshold(scores, leaders, limit)
                leaders = self._reaching(scores, leaders, threshold)
                if left and threshold > left:
                    # Every unit found scores above zero; those below the floor cannot reach the answer.
                    candidates = {part: self._allowed(part, np.flatnonzero(score >= threshold - left), allowed)
                                  for part, score in scores.items()}
            else:
                for part, units, counts in found:
                    mine = candidates[part]
                    if not len(mine):
                        continue
                    if len(units) <= 4 * len(mine):
                        # Adding all its postings costs less than looking the candidates up; units that are not
                        # candidates (deleted ones among them) never reach the answer whatever they score.
                        scores[part][units] += self._weights(part, idf, units, counts)
                        continue
                    where, hit = _holding(units, mine)
                    if hit.any():
                        scores[part][mine[hit]] += self._weights(part, idf, mine[hit], counts[where[hit]])
                if left:
                    candidates = self._reaching(scores, candidates, self._threshold(scores, candidates, limit) - left)
        if candidates is None:
            candidates = {part: self._allowed(part, np.flatnonzero(score), allowed) for part, score in scores.items()}
        ids, values = [], []
        for part, mine in candidates.items():
            score = scores[part][mine]
            if len(mine) > limit:  # all that tie with the limit-th best stay: ids decide among them below
                best = score >= np.partition(score, len(score) - limit)[len(score) - limit]
                mine, score = mine[best], score[best]
            ids.append(np.asarray(self.parts[part][0].unit_ids)[mine])
            values.append(score)
        if not ids:
            return []
        ids, values = np.concatenate(ids), np.concatenate(values)
        best = np.lexsort((ids, -values))[:limit]
        return [(int(ids[i]), float(values[i])) for i in best if values[i] > 0]

    @staticmethod
    def _reaching(scores, units: dict, floor: float) -> dict:
        """Of `units` (per part), those scoring at least `floor` so far: the others cannot reach the answer."""
        return {part: mine[scores[part][mine] >= floor] for part, mine in units.items()}

    def _allowed(self, part: int, units: np.ndarray, allowed: np.ndarray | None) -> np.ndarray:
        import numpy as np

        if allowed is None:
            return units
        return units[np.isin(np.asarray(self.parts[part][0].unit_ids)[units], allowed)]

    @staticmethod
    def _threshold(scores, found, limit: int) -> float:
        """The limit-th best score of the units found so far (0 while fewer than that were found)."""
        import numpy as np

        values = np.concatenate([scores[part][units] for part, units in found.items()] or [np.zeros(0)])
        return float(np.partition(values, len(values) - limit)[len(values) - limit]) if len(values) >= limit else 0.0

    def frequencies(self, terms: list[str]) -> dict[str, int]:
        """Per term the live units hold, in how many of them it occurs (BM25's document frequency); those of
        the last search's terms are not computed again."""
        unknown = [term for term in dict.fromkeys(terms) if term not in self._searched]
        counts = {**self._searched, **{term: self._frequency(found)
                                       for term, found in self._postings(unknown, live_only=False).items()}}
        return {term: counts[term] for term in terms if counts[term]}

    def term_scores(self, terms: list[str], unit_ids: list[int]) -> list[list[float]]:
        """The score of each unit (by its first chunk's id) split by term: one row per unit, one column per term."""
        import numpy as np

        rows = np.zeros((len(unit_ids), len(terms)), dtype=np.float64)
        wanted = np.asarray(unit_ids, dtype=np.int64)
        postings = self._postings(list(dict.fromkeys(terms)))
        for column, term in enumerate(terms):
            found = postings[term]
            if not found:
                continue
            idf = self._idf(sum(len(units) for _, units, _ in found))
            for part, units, counts in found:
                held = np.asarray(self.parts[part][0].unit_ids)[units]
                mine = np.isin(held, wanted)
                if mine.any():
                    weights = self._weights(part, idf, units[mine], counts[mine])
                    for unit_id, weight in zip(held[mine].tolist(), weights.tolist()):
                        rows[wanted == unit_id, column] = weight
        return rows.tolist()
