"""How many texts are encoded, whichever runtime runs the model: DocumentEncoder, the policy for a run
of documents (longest first across the run, a slice per call, the next slice tokenized while the model
runs, vectors handed back in the order given), and batches_under_budget, which cuts a length-sorted
slice into batches whose padded size stays under the token budget. Nothing heavy is imported.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Iterator, Sequence

if TYPE_CHECKING:
    import numpy as np

TOKEN_BUDGET = 4096  # padded tokens per batch on CPU (smaller batches stay in cache); x8 on a GPU


class DocumentEncoder:
    """How many documents are encoded, whichever model does it (a model provides tokenize(texts) and
    encode_token_ids(ids, progress), and `dim`):

    - longest text first across the whole run, so that batches of similar length waste little on padding;
    - `documents_per_call` texts at a time, each call's vectors handed back at once (indexing commits them
      to the cache between two calls, so an interrupted run keeps its work);
    - the next slice tokenized in a second thread while this one runs the model (on a GPU, tokenizing in
      line cost a quarter of the time, benchmarks/NOTES.md; the tokenizer releases the GIL, and so does
      waiting for the device);
    - every vector handed back with the position of its text, so the caller gets the order it gave.
    """

    documents_per_call: int = 256

    def use_threads(self, threads: int) -> "DocumentEncoder":
        """Run the model on `threads` CPU threads (0: the library's default); this encoder."""
        return self

    def release_memory(self) -> None:
        """Give back what the model holds between calls, for memory-hungry work in between (a merge of
        segments); the next call makes it again."""

    def encode_documents(self, texts: Sequence[str], progress: Callable[[int], None] | None = None) -> np.ndarray:
        """Vectors of `texts`, in their order."""
        import numpy as np

        texts = list(texts)
        output = np.zeros((len(texts), self.dim), dtype=np.float32)
        for positions, vectors in self.encode_documents_by_slice(texts, progress):
            output[positions] = vectors
        return output

    def encode_documents_by_slice(self, texts: Sequence[str], progress: Callable[[int], None] | None = None
                                  ) -> Iterator[tuple[list[int], np.ndarray]]:
        """The vectors of `texts` one call at a time: (the positions in `texts` of this call's texts, their vectors)."""
        order = sorted(range(len(texts)), key=lambda position: -len(texts[position]))
        size = self.documents_per_call
        slices = [order[start : start + size] for start in range(0, len(order), size)]
        parts = self.encode_document_slices([[texts[position] for position in part] for part in slices], progress)
        yield from zip(slices, parts)

    def encode_document_slices(self, slices: Sequence[Sequence[str]],
                               progress: Callable[[int], None] | None = None) -> Iterator[np.ndarray]:
        """Vectors slice by slice; a second thread tokenizes the next slice while this one runs the model."""
        from concurrent.futures import ThreadPoolExecutor

        if not slices:
            return
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="tokenize") as feeder:
            upcoming = feeder.submit(self.tokenize, list(slices[0]))
            for number in range(len(slices)):
                token_ids = upcoming.result()
                if number + 1 < len(slices):
                    upcoming = feeder.submit(self.tokenize, list(slices[number + 1]))
                yield self.encode_token_ids(token_ids, progress)


def batches_under_budget(order: list[int], token_ids: list[list[int]], budget: int) -> list[list[int]]:
    """Consecutive runs of the length-sorted order whose padded size stays under the token budget."""
    batches, current, width = [], [], 0
    for index in order:
        length = len(token_ids[index])
        new_width = max(width, length)
        if current and new_width * (len(current) + 1) > budget:
            batches.append(current)
            current, new_width = [], length
        current.append(index)
        width = new_width
    if current:
        batches.append(current)
    return batches

