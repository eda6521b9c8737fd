"""An index generation's files: `vectors-N.faiss` (an IndexIDMap2 over inner product, keyed by chunk id)
and `lexical-N/` (the bm25s folder of lexical.py), both derived from the database and rebuilt from it
when missing or unreadable.

write_generation is the one way a generation reaches the disk: from chunks and their vectors, whoever
computed them (this machine's `codesearch index`, or another executor), each file under a temporary name
first and then renamed (trust.replace_atomically). The database commit that makes generation N the
current one comes after both, so a run that dies at any moment leaves the old set or the new set.

The folder is codesearch's alone: files are opened without following links, and only names this module
writes are ever deleted.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from codesearch.lexical import LexicalIndex
from codesearch.trust import open_private, replace_atomically

MANIFEST_NAME = "manifest.json"
# The only names deleted here: generations codesearch wrote, and temporary files of killed runs.
_OWN_GENERATION = re.compile(r"(?:vectors-(\d+)\.faiss|lexical-(\d+))(?:\.tmp\d+)?")
_OWN_TEMPORARY = re.compile(re.escape(MANIFEST_NAME) + r"\.tmp\d+")


@dataclass
class Generation:
    number: int
    vectors: object  # a faiss IndexIDMap2 over chunk ids
    lexical: LexicalIndex


def vectors_path(directory: Path, number: int) -> Path:
    return directory / f"vectors-{number}.faiss"


def lexical_path(directory: Path, number: int) -> Path:
    return directory / f"lexical-{number}"


def vector_index(dimension: int, batches: Iterable[tuple] = ()):
    """A FAISS index of `dimension` over chunk ids, holding the (ids, vectors) batches given."""
    import faiss

    # fp16 storage halves memory and disk against flat fp32, and a memory-bound scan gets faster.
    index = faiss.IndexIDMap2(faiss.IndexScalarQuantizer(dimension, faiss.ScalarQuantizer.QT_fp16,
                                                         faiss.METRIC_INNER_PRODUCT))
    for ids, vectors in batches:
        index.add_with_ids(vectors, ids)
    return index


def write_generation(directory: Path, number: int, vectors, parts: Iterable[tuple[object, str]]) -> Generation:
    """Write generation `number` into `directory`: `vectors` is a FAISS index over the chunks' ids
    (vector_index makes one), `parts` every chunk with its lexical terms in unit order, from which the
    BM25 index is built here. Touches nothing else; making it current is the caller's commit."""
    write_vectors(directory, number, vectors)
    lexical = LexicalIndex.from_parts(parts)
    write_lexical(directory, number, lexical)
    return Generation(number, vectors, lexical)


def write_vectors(directory: Path, number: int, index) -> None:
    import faiss

    def write(temporary: Path) -> None:
        with os.fdopen(open_private(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL), "wb") as handle:
            writer = faiss.PyCallbackIOWriter(handle.write)
            faiss.write_index(index, writer)
            del writer  # flushes its buffer into the file

    replace_atomically(vectors_path(directory, number), write)


def write_lexical(directory: Path, number: int, index: LexicalIndex) -> None:
    index.save(lexical_path(directory, number))


def read_vectors(directory: Path, number: int):
    """The FAISS index of generation `number`, or None when its file is missing or unreadable."""
    import faiss

    try:
        with os.fdopen(open_private(vectors_path(directory, number), os.O_RDONLY), "rb") as handle:
            reader = faiss.PyCallbackIOReader(handle.read)
            index = faiss.read_index(reader)
            del reader  # before the file closes
            return index
    except (OSError, RuntimeError):
        return None


def read_lexical(directory: Path, number: int) -> LexicalIndex | None:
    return LexicalIndex.load(lexical_path(directory, number))


def remove_other_generations(directory: Path, number: int) -> None:
    remove_own_files(directory, keep={vectors_path(directory, number).name, lexical_path(directory, number).name})


def remove_own_files(directory: Path, keep: set[str]) -> None:
    """Delete the generations and temporary files codesearch wrote in `directory`, but those in `keep`:
    exact names it makes, never a pattern's other matches."""
    for name in os.listdir(directory):
        if name in keep or not (_OWN_GENERATION.fullmatch(name) or _OWN_TEMPORARY.fullmatch(name)):
            continue
        path = directory / name
        try:
            if stat.S_ISDIR(os.lstat(path).st_mode):
                shutil.rmtree(path, ignore_errors=True)  # never follows a link inside
            else:
                path.unlink()
        except FileNotFoundError:
            pass
