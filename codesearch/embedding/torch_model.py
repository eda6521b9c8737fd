"""Turn text into unit vectors, per role: queries in the model's template with its instruction,
documents (code) with the model's document prompt, if it declares one.

Two backends behind one interface:
  decoder  last-token pooling over a causal LM (BAAI/bge-code-v1 and its Qwen2/Qwen3 kin): the template's
           markers as the tokens they are, left padding, one EOS token closing every input;
  encoder  the pooling a sentence-transformers folder declares (mean or CLS).
Vectors are L2-normalised. Encoding many documents follows the policy both runtimes share
(batching.DocumentEncoder). torch is imported only when a model runs (load.load_embedder loads one).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Sequence

from codesearch.embedding.batching import TOKEN_BUDGET, DocumentEncoder, batches_under_budget
from codesearch.embedding.spec import ModelSpec
from codesearch.errors import CodesearchError

if TYPE_CHECKING:
    import numpy as np

ROLES = ("query", "document")


@dataclass
class Embedder(DocumentEncoder):
    """A loaded model. encode_queries / encode_documents return float32 unit vectors."""

    spec: ModelSpec
    model: object
    tokenizer: object
    device: str
    dim: int
    # Padded tokens per batch. A device that runs out of memory halves it, and later calls keep the
    # smaller budget (encode_token_ids sets it, in the open).
    token_budget: int = TOKEN_BUDGET
    # Texts handed over per call when indexing, between two cache commits. Each call sorts its texts by
    # token count, so a GPU wants many (4096: padding 6 % instead of 29 % at 256, benchmarks/NOTES.md);
    # a CPU, ~1000x slower, wants its progress saved more often than every 4096.
    documents_per_call: int = 256
    _eos_id: int | None = field(default=None, repr=False)
    # Per tokenizer object: what it adds around a text itself, and its added tokens (see _layout).
    _layouts: dict = field(default_factory=dict, repr=False)

    def use_threads(self, threads: int) -> "Embedder":
        if threads and self.device == "cpu":
            import torch

            torch.set_num_threads(threads)
        return self

    def encode_queries(self, queries: Sequence[str]) -> np.ndarray:
        queries = list(queries)
        return self.encode_token_ids(self.tokenize_queries(queries) if queries else [])

    def tokenize(self, texts: Sequence[str], role: str = "document") -> list[list[int]]:
        """Token ids of texts in their role, with that role's prompt (ModelSpec.prompt_parts), truncated
        to max_length; a decoder's end with exactly one EOS."""
        items = [(*self.spec.prompt_parts(role, text), text) for text in texts]
        if self.spec.backend != "decoder":
            formatted = [before + text + after for before, after, text in items]
            return self.tokenizer(formatted, truncation=True, max_length=self.spec.max_length)["input_ids"]
        return self._decoder_ids([(before, text, after) for before, after, text in items])

    def tokenize_queries(self, queries: Sequence[str]) -> list[list[int]]:
        """Token ids of queries in the model's template: its markers as the tokens they are, the query as text."""
        return self.tokenize(queries, role="query")

    def _decoder_ids(self, items: list[tuple[str, str, str]]) -> list[list[int]]:
        """Each item is (template text before, the text, template text after). The template's added tokens
        (bge-code's <instruct>, <query>) become their ids; the text is tokenized with split_special_tokens, so
        a file or a query cannot smuggle in a control token: a literal "<|endoftext|>" in code is text, never
        a second EOS, and "<query>" in a query is text, never the marker. Text between two added tokens is
        tokenized as one piece, as the tokenizer does with a whole string. Then: the tokenizer's own
        prefix (a BOS), the ids cut to max_length, and exactly one EOS, appended after truncation so the
        token the model pools on is never cut off (also when the tokenizer adds an EOS itself).
        """
        prefix, suffix, markers = self._layout()
        budget = max(0, self.spec.max_length - len(prefix) - len(suffix) - 1)
        plans, segments = [], []
        for before, text, after in items:
            plan: list = []
            for piece in [*self._split_markers(before, markers), text, *self._split_markers(after, markers)]:
                if isinstance(piece, str) and plan and isinstance(plan[-1], str):
                    plan[-1] += piece
                elif piece != "":
                    plan.append(piece)
            for piece in plan:
                if isinstance(piece, str):
                    segments.append(piece)
            plans.append(plan)
        encoded = iter(self.tokenizer(segments, add_special_tokens=False, split_special_tokens=True, truncation=True,
                                      max_length=max(1, budget))["input_ids"] if segments else [])
        ids = []
        for plan in plans:
            body: list[int] = []
            for piece in plan:
                body.extend(next(encoded) if isinstance(piece, str) else [piece])
            ids.append(prefix + body[:budget] + suffix + [self._eos_id])
        return ids

    @staticmethod
    def _split_markers(text: str, markers) -> list:
        """Template text as text pieces and the ids of the added tokens in it."""
        if not text or markers is None:
            return [text]
        pattern, ids = markers
        pieces, at = [], 0
        for found in pattern.finditer(text):
            pieces += [text[at:found.start()], ids[found.group()]]
            at = found.end()
        return pieces + [text[at:]]

    def _layout(self) -> tuple[list[int], list[int], tuple | None]:
        """What the tokenizer puts around a text by itself (a BOS before; its EOS after is left to
        _decoder_ids), and a pattern for its added tokens. Found by asking it, once per tokenizer."""
        tokenizer = self.tokenizer
        layout = self._layouts.get(id(tokenizer))
        if layout is None or layout[0] is not tokenizer:
            bare = tokenizer(["a"], add_special_tokens=False)["input_ids"][0]
            full = tokenizer(["a"], add_special_tokens=True)["input_ids"][0]
            at = next((i for i in range(len(full) - len(bare) + 1) if full[i:i + len(bare)] == bare), None)
            prefix, suffix = (list(full[:at]), list(full[at + len(bare):])) if bare and at is not None else ([], [])
            if suffix and suffix[-1] == self._eos_id:
                suffix = suffix[:-1]
            added = getattr(tokenizer, "get_added_vocab", dict)() or {}
            markers = None
            if added:
                alternatives = sorted(added, key=len, reverse=True)
                markers = (re.compile("|".join(map(re.escape, alternatives))), dict(added))
            layout = self._layouts[id(tokenizer)] = (tokenizer, prefix, suffix, markers)
        return layout[1], layout[2], layout[3]

    def encode_token_ids(self, token_ids: list[list[int]],
                         progress: Callable[[int], None] | None = None) -> np.ndarray:
        """Vectors for already tokenized inputs, in their order: length-sorted batches under the token budget."""
        import numpy as np

        import torch

        output = np.zeros((len(token_ids), self.dim), dtype=np.float32)
        if not token_ids:
            return output
        order = sorted(range(len(token_ids)), key=lambda i: len(token_ids[i]), reverse=True)
        budget = self.token_budget
        with torch.inference_mode():
            for batch in batches_under_budget(order, token_ids, budget):
                output[batch], budget = self._forward_within_memory([token_ids[i] for i in batch], budget)
                if progress is not None:
                    progress(len(batch))
        self.token_budget = budget  # what the device held: later calls start from it
        return output

    def _forward_within_memory(self, batch_ids: list[list[int]], budget: int) -> tuple[np.ndarray, int]:
        """One batch's vectors, and the token budget after it: on out-of-memory the batch is halved, and
        so is the budget.

        The CUDA budget suits a large card; a smaller one, or one shared with other work, runs out.
        """
        import numpy as np

        import torch

        try:
            return self._forward(batch_ids), budget
        except torch.OutOfMemoryError:
            if len(batch_ids) == 1:
                raise CodesearchError(
                    f"out of {self.device} memory embedding one chunk of {len(batch_ids[0])} tokens; "
                    "free the device or lower the model's max length") from None
        if self.device.startswith("cuda"):
            torch.cuda.empty_cache()
        half = len(batch_ids) // 2
        first, budget = self._forward_within_memory(batch_ids[:half], max(1, budget // 2))
        second, budget = self._forward_within_memory(batch_ids[half:], budget)
        return np.concatenate([first, second]), budget

    @property
    def _no_cache(self) -> dict:
        # A decoder otherwise fills a key/value cache for generation: GBs per large batch, never read here.
        return {"use_cache": False} if self.spec.backend == "decoder" else {}

    def _forward(self, batch_ids: list[list[int]]) -> np.ndarray:
        # Vectors leave the device batch by batch: GPU memory stays bounded by the budget.
        return self._vectors_on_device(batch_ids).cpu().numpy()

    def _vectors_on_device(self, batch_ids: list[list[int]]):
        import torch

        input_ids, attention = (tensor.to(self.device, non_blocking=True) for tensor in self._padded(batch_ids))
        hidden = self.model(input_ids=input_ids, attention_mask=attention, **self._no_cache).last_hidden_state
        return torch.nn.functional.normalize(pool(hidden, attention, self.spec.pooling).float(), dim=-1)

    def _padded(self, batch_ids: list[list[int]]):
        """(input ids, attention mask) on the host, padded on the left for a decoder, on the right otherwise."""
        import torch

        width = max(len(ids) for ids in batch_ids)
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        left = self.spec.backend == "decoder"
        input_ids = torch.full((len(batch_ids), width), pad_id, dtype=torch.long)
        attention = torch.zeros((len(batch_ids), width), dtype=torch.long)
        for row, ids in enumerate(batch_ids):
            span = slice(width - len(ids), width) if left else slice(0, len(ids))
            input_ids[row, span] = torch.tensor(ids, dtype=torch.long)
            attention[row, span] = 1
        return input_ids, attention


def pool(hidden, attention, pooling: str):
    """Pool token states into one vector per input, whichever side the batch was padded on."""
    import torch

    if pooling == "cls":
        return hidden[:, 0]
    if pooling == "mean":
        mask = attention.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)
    # last_token: the last position whose attention mask is 1.
    positions = torch.arange(attention.shape[1], device=attention.device)
    last = (attention * positions).argmax(dim=1)
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]

