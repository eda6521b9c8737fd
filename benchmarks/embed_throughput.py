"""How fast codesearch's own embedder turns real-sized chunks into vectors, against the hardware ceiling.

The chunk lengths come from benchmarks/chunk_token_lengths.json: the token lengths of every chunk that
codesearch cuts from the evaluation corpus (15 real repositories, 15 languages), so the machine running
this needs no parsing and no tokenizer. Each chunk is fed to the product's Embedder as synthetic token
ids of its length; the embedder's own batching, padding, forward pass and pooling do the rest.
Throughput does not depend on the weights' values or on which ids are fed.

The model is either a real folder (--model PATH) or a random-weight model with BAAI/bge-code-v1's exact
architecture (Qwen2.5-Coder-1.5B), built from its config, so nothing is downloaded.

The ceiling is matmul-bound: a forward pass costs about 2 x (non-embedding parameters) FLOPs per real
token, so ceiling tokens/s = (matmul FLOP/s measured here, in the run's dtype) / that. Attention's own
FLOPs (about 1 % at these lengths) are left out, as are padded tokens: padding is waste, not work.

    python benchmarks/embed_throughput.py                           # whole distribution, CUDA if present
    python benchmarks/embed_throughput.py --layers 2 --limit 200    # CPU smoke run
    python benchmarks/embed_throughput.py --write-lengths ../evalcorpus/*   # recompute the data file
"""

from __future__ import annotations

import argparse
import copy
import gzip
import json
import math
import os
import resource
import sys
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))  # the real Qwen2.5 vocabulary (tests/qwen_vocab.py)

from codesearch.embedding.batching import batches_under_budget  # noqa: E402
from codesearch.embedding.torch_model import Embedder  # noqa: E402
from codesearch.embedding.spec import PRESETS, resolve_model  # noqa: E402
from codesearch.embedding.load import default_documents_per_call, default_token_budget, load_embedder  # noqa: E402
from qwen_vocab import BGE_CODE_V1_VOCAB_SIZE, QWEN_EOS_ID, qwen_tokenizer  # noqa: E402

LENGTHS_FILE = Path(__file__).with_name("chunk_token_lengths.json")
# Qwen2.5-Coder's byte-level BPE averages roughly 3.2 characters per token on source code. The real
# tokenizer cannot be fetched offline, so chunk lengths in characters are converted with this ratio.
CHARS_PER_TOKEN = 3.2

# BAAI/bge-code-v1 = Qwen2.5-Coder-1.5B: its config.json, minus what does not change the compute (vocab_size
# 151667: Qwen2.5's 151,643 ranks and 22 added tokens, then <instruct> and <query>; tests/qwen_vocab.py).
BGE_CODE_V1_ARCHITECTURE = dict(
    hidden_size=1536, num_hidden_layers=28, num_attention_heads=12, num_key_value_heads=2,
    intermediate_size=8960, vocab_size=BGE_CODE_V1_VOCAB_SIZE, rope_theta=1_000_000.0, tie_word_embeddings=True,
    max_position_embeddings=32768, rms_norm_eps=1e-6, hidden_act="silu",
    bos_token_id=151643, eos_token_id=151643, pad_token_id=151643,
)
DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}


# ---------------------------------------------------------------------------------------------------------
# The length distribution


def corpus_chunks(repositories: list[str]):
    """(repository, chunk) for every chunk `codesearch index` would embed (bge-code-v1's cut)."""
    from codesearch.source.chunk import chunk_file
    from codesearch.source.discover import discover_files, looks_binary

    for repository in map(Path, repositories):
        if not repository.is_dir() or repository.name.startswith("."):
            continue
        for source in discover_files(repository):
            data = (repository / source.path).read_bytes()
            if not looks_binary(data):
                for chunk in chunk_file(source.path, data):
                    yield repository.name, chunk


def write_lengths(repositories: list[str], path: Path, max_length: int, tokenizer=None,
                  texts_out: Path | None = None) -> None:
    """Chunk every file of the repositories as `codesearch index` would and save the token-length histogram.

    With a tokenizer the lengths are counted, as Embedder.tokenize counts them; without, estimated.
    """
    histogram: Counter[int] = Counter()
    per_language: dict[str, list[int]] = {}
    per_repository: Counter[str] = Counter()
    texts = []
    for repository, chunk in corpus_chunks(repositories):
        text = chunk.embedding_text  # what the model sees: header + code
        if tokenizer is not None:
            counted = len(tokenizer(text, truncation=True, max_length=max_length - 1,
                                    split_special_tokens=True)["input_ids"])
            tokens = counted + 1  # the EOS
        else:
            tokens = min(math.ceil(len(text) / CHARS_PER_TOKEN), max_length - 1) + 1
        histogram[tokens] += 1
        per_language.setdefault(chunk.language, []).append(tokens)
        per_repository[repository] += 1
        texts.append(text)
    lengths = np.repeat(np.array(sorted(histogram)), [histogram[k] for k in sorted(histogram)])
    characters = sum(map(len, texts))
    data = {
        "about": "Token lengths (EOS included) of the chunks codesearch cuts from real repositories, as the "
                 "embedder sees them (Chunk.embedding_text), truncated at max_length.",
        "tokens": ("counted with Qwen2.5's vocabulary (BPE ranks of qwen.tiktoken, Qwen2 split pattern)"
                   if tokenizer is not None else
                   f"estimated as ceil(characters / {CHARS_PER_TOKEN}) + 1; the real tokenizer was not at hand"),
        "characters_per_token": round(characters / max(1, int(lengths.sum()) - len(texts)), 2),
        "max_length": max_length,
        "chunks": int(lengths.size),
        "mean": round(float(lengths.mean()), 1),
        "percentiles": {str(p): int(np.percentile(lengths, p)) for p in (10, 25, 50, 75, 90, 99)},
        "repositories": dict(sorted(per_repository.items())),
        "languages": {name: {"chunks": len(values), "mean": round(float(np.mean(values)), 1)}
                      for name, values in sorted(per_language.items())},
        "histogram": {str(length): histogram[length] for length in sorted(histogram)},
    }
    path.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {path}: {data['chunks']} chunks, mean {data['mean']} tokens, percentiles {data['percentiles']}, "
          f"{data['characters_per_token']} characters per token")
    if texts_out is not None:
        with gzip.open(texts_out, "wt", encoding="utf-8") as handle:
            json.dump(texts, handle)
        print(f"wrote {texts_out}: {len(texts)} chunk texts")


def sample_lengths(path: Path, limit: int | None, seed: int) -> list[int]:
    """All chunk lengths of the histogram in random order, or a random sample of `limit` of them."""
    histogram = json.loads(path.read_text(encoding="utf-8"))["histogram"]
    lengths = np.repeat(np.array([int(k) for k in histogram]), list(histogram.values()))
    rng = np.random.default_rng(seed)
    rng.shuffle(lengths)
    return lengths[:limit].tolist() if limit else lengths.tolist()


class SyntheticTokenizer:
    """Stands in for the tokenizer: each "text" names a chunk, answered with its precomputed random ids.

    The ids leave room for the EOS that Embedder.tokenize appends, so every input has its sampled length.
    """

    padding_side = "left"

    def __init__(self, lengths: list[int], vocab_size: int, eos_id: int, pad_id: int, seed: int):
        rng = np.random.default_rng(seed)
        high = min(vocab_size, eos_id) if eos_id > 1000 else vocab_size
        self.ids = {f"chunk {i}": rng.integers(0, high, length - 1).tolist() for i, length in enumerate(lengths)}
        self.texts = list(self.ids)
        self.eos_token_id = eos_id
        self.pad_token_id = pad_id

    def __call__(self, texts, truncation=True, max_length=None, **_):
        ids = [self.ids.get(text, []) for text in texts]  # any other text (the embedder's probe): no ids
        if truncation and max_length:
            ids = [token_ids[:max_length] for token_ids in ids]
        return {"input_ids": ids}


# ---------------------------------------------------------------------------------------------------------
# Model, ceiling, measurement


def build_embedder(args, lengths: list[int], tokenizer=None) -> Embedder:
    """The product's Embedder over a real folder or a random bge-code-v1; a real tokenizer when one is given."""
    import torch

    dtype = getattr(torch, DTYPES[args.dtype])
    if args.model:
        embedder = load_embedder(resolve_model(args.model), device=args.device)
        embedder.model.to(dtype)
        if tokenizer is None:
            pad_id = embedder.tokenizer.pad_token_id
            tokenizer = SyntheticTokenizer(lengths, embedder.model.config.vocab_size, embedder._eos_id,
                                           pad_id if pad_id is not None else embedder._eos_id, args.seed)
        embedder.tokenizer = tokenizer
    else:
        from transformers import AutoModel, Qwen2Config

        architecture = dict(BGE_CODE_V1_ARCHITECTURE)
        if args.layers:
            architecture["num_hidden_layers"] = args.layers
        config = Qwen2Config(**architecture)
        torch.manual_seed(args.seed)
        with torch.device(args.device):  # weights are made where they run: no 6 GB host copy for a GPU
            model = AutoModel.from_config(config, dtype=dtype, attn_implementation=args.attn)
        model.eval()
        spec = PRESETS["bge-code-v1"]
        if tokenizer is None:
            tokenizer = SyntheticTokenizer(lengths, config.vocab_size, QWEN_EOS_ID, QWEN_EOS_ID, args.seed)
        tokenizer.padding_side = "left"
        embedder = Embedder(spec, model, tokenizer, args.device, config.hidden_size, token_budget_for(args),
                            default_documents_per_call(args.device), QWEN_EOS_ID)
    if args.max_length:
        embedder.spec = replace(embedder.spec, max_length=args.max_length)
    embedder.token_budget = token_budget_for(args)
    return embedder


def token_budget_for(args) -> int:
    """The token budget: as asked, or the product's own choice for the device."""
    if args.token_budget:
        return args.token_budget
    return default_token_budget(args.device)


def non_embedding_parameters(model) -> int:
    return sum(p.numel() for name, p in model.named_parameters() if "embed_tokens" not in name)


def matmul_flops(device: str, dtype_name: str, seconds: float = 1.0) -> float:
    """FLOP/s of torch.matmul on large square matrices in the given dtype, on this device, now."""
    import torch

    dtype = getattr(torch, DTYPES[dtype_name])
    n = 8192 if device.startswith("cuda") else 2048
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    torch.matmul(a, b)
    synchronize(device)
    runs, started = 0, time.perf_counter()
    while runs < 3 or time.perf_counter() - started < seconds:
        torch.matmul(a, b)
        runs += 1
        if runs % 10 == 0 or not device.startswith("cuda"):
            synchronize(device)
    synchronize(device)
    return 2 * n**3 * runs / (time.perf_counter() - started)


def synchronize(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def measure(embedder: Embedder, encode: Callable[[], np.ndarray], chunks: int, tokens: int, device: str) -> dict:
    """Run encode() once; count the tokens each forward pass was handed (padding included)."""
    import torch

    padded = []

    def record(_module, args, kwargs):
        padded.append((kwargs.get("input_ids") if "input_ids" in kwargs else args[0]).numel())

    hook = embedder.model.register_forward_pre_hook(record, with_kwargs=True)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    try:
        synchronize(device)
        started = time.perf_counter()
        vectors = encode()
        synchronize(device)
        seconds = time.perf_counter() - started
    finally:
        hook.remove()
    assert vectors.shape[0] == chunks and np.isfinite(vectors).all()
    total = sum(padded)
    return {
        "seconds": seconds, "chunks": chunks, "batches": len(padded), "tokens": tokens, "padded_tokens": total,
        "tokens_per_s": tokens / seconds, "chunks_per_s": chunks / seconds,
        "padding_waste_pct": 100.0 * (total - tokens) / total if total else 0.0,
        "peak_gpu_gib": torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else None,
        "vectors": vectors,
    }


def in_slices(embedder: Embedder, texts: list[str], size: int) -> np.ndarray:
    """Hand the embedder `size` texts per call, in the given order."""
    return np.vstack([embedder.encode_documents(texts[start:start + size]) for start in range(0, len(texts), size)])


def as_index_calls(embedder: Embedder, texts: list[str], feeder: bool = True, per_call: int | None = None) -> np.ndarray:
    """What `codesearch index` does: DocumentEncoder's policy, longest text first, embedder.documents_per_call
    texts per call.

    feeder=True is the product (the next slice is tokenized in a second thread during this one's forward
    passes); False tokenizes each slice in line. Results in input order.
    """
    per_call = per_call or embedder.documents_per_call
    if feeder:
        return replace(embedder, documents_per_call=per_call).encode_documents(texts)
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    slices = [order[start:start + per_call] for start in range(0, len(order), per_call)]
    output = np.zeros((len(texts), embedder.dim), dtype=np.float32)
    for part in slices:
        output[part] = embedder.encode_token_ids(embedder.tokenize([texts[i] for i in part]))
    return output


class PackedEmbedder(Embedder):
    """Padding-free: each batch's sequences laid end to end in rows as wide as its longest one.

    Position ids restart at every sequence and no attention mask is passed, so transformers' masking
    detects the packing and keeps each sequence to itself (a block-diagonal causal mask).
    """

    def _forward(self, batch_ids):
        import torch

        width = max(map(len, batch_ids))
        rows: list[list[int]] = []  # indices into batch_ids; longest first, so next-fit packs tightly
        room = 0
        for index, ids in enumerate(batch_ids):
            if not rows or len(ids) > room:
                rows.append([])
                room = width
            rows[-1].append(index)
            room -= len(ids)
        pad_id = self.tokenizer.pad_token_id
        input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
        positions = torch.zeros((len(rows), width), dtype=torch.long)
        ends = [None] * len(batch_ids)
        for row, members in enumerate(rows):
            offset = 0
            for index in members:
                ids = batch_ids[index]
                input_ids[row, offset:offset + len(ids)] = torch.tensor(ids)
                positions[row, offset:offset + len(ids)] = torch.arange(len(ids))
                offset += len(ids)
                ends[index] = (row, offset - 1)
            positions[row, offset:] = torch.arange(width - offset)  # the tail is a sequence of its own
        hidden = self.model(input_ids=input_ids.to(self.device), position_ids=positions.to(self.device),
                            **self._no_cache).last_hidden_state
        rows_of, columns_of = (torch.tensor(values, device=hidden.device) for values in zip(*ends))
        pooled = torch.nn.functional.normalize(hidden[rows_of, columns_of].float(), dim=-1)
        return pooled.cpu().numpy()


class PinnedEmbedder(Embedder):
    """Inputs built in page-locked memory, so the product's non-blocking copies really do not block."""

    def _padded(self, batch_ids):
        return tuple(tensor.pin_memory() for tensor in super()._padded(batch_ids))


class CachingEmbedder(Embedder):
    """Lets the decoder fill its key/value cache, as a plain model call does by default."""

    _no_cache = {}


class OnDeviceEmbedder(Embedder):
    """Vectors stay on the GPU until the call ends (one copy to the host instead of one per batch)."""

    def encode_token_ids(self, token_ids, progress=None):
        import torch

        order = sorted(range(len(token_ids)), key=lambda i: len(token_ids[i]), reverse=True)
        parts, placed = [], []
        with torch.inference_mode():
            for batch in batches_under_budget(order, token_ids, self.token_budget):
                parts.append(self._vectors_on_device([token_ids[i] for i in batch]))
                placed.extend(batch)
            stacked = torch.cat(parts)
            output = torch.empty_like(stacked)
            output[torch.tensor(placed, device=stacked.device)] = stacked
        return output.cpu().numpy()


def as_variant(embedder: Embedder, kind: type, **changes) -> Embedder:
    """The same loaded model and tokenizer behind another Embedder class or settings."""
    variant = copy.copy(embedder)
    variant.__class__ = kind
    for name, value in changes.items():
        setattr(variant, name, value)
    return variant


def fp32_twin(embedder: Embedder) -> Embedder:
    """The simple path to compare with: the same weights, in fp32."""
    import torch

    twin = as_variant(embedder, Embedder)
    twin.model = copy.deepcopy(embedder.model).to(torch.float32)
    return twin


def tokenize_seconds(embedder: Embedder, texts: list[str], parallel: bool) -> float:
    os.environ["TOKENIZERS_PARALLELISM"] = "true" if parallel else "false"
    started = time.perf_counter()
    embedder.tokenize(texts)
    return time.perf_counter() - started


def run_suite(args, embedder: Embedder, texts: list[str], log: Callable[[dict], None]) -> None:
    """Every technique on the same model and chunks, one after another; each row against the product default."""
    import torch

    device, default_budget = args.device, embedder.token_budget
    token_counts = [len(ids) for ids in embedder.tokenize(texts)]
    tokens = sum(token_counts)
    cuda = device.startswith("cuda")
    flops = matmul_flops(device, args.dtype)
    parameters = non_embedding_parameters(embedder.model)
    ceiling = flops / (2 * parameters)
    log({"row": "ceiling", "matmul_tflops": flops / 1e12, "ceiling_tokens_per_s": ceiling,
         "non_embedding_parameters": parameters, "chunks": len(texts), "tokens": tokens})
    for parallel in (False, True):
        seconds = tokenize_seconds(embedder, texts, parallel)
        log({"row": f"tokenizer alone, TOKENIZERS_PARALLELISM={str(parallel).lower()}", "seconds": seconds,
             "tokens_per_s": tokens / seconds})
    parallelism = "true" if cuda else "false"  # what load_embedder sets
    os.environ["TOKENIZERS_PARALLELISM"] = parallelism

    reference = None

    def row(name: str, encode: Callable[[], np.ndarray], subject: Embedder = embedder, chunks=texts, count=None):
        nonlocal reference
        try:
            result = measure(subject, encode, len(chunks), count if count is not None else tokens, device)
        except Exception as error:  # a technique the installed stack cannot run is a finding, not a crash
            log({"row": name, "error": f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"})
            if cuda:
                torch.cuda.empty_cache()
            return None
        vectors = result.pop("vectors")
        if reference is None:
            reference = vectors
        if len(vectors) == len(reference):
            result["min_cosine_to_default"] = float(np.min(np.sum(vectors * reference, axis=1)))
        result.update(row=name, ceiling_ratio=result["tokens_per_s"] / ceiling)
        log(result)
        return vectors

    wanted = set(args.rows.split(","))
    # An untimed pass first: the first large shapes pay for kernel selection and allocator growth.
    embedder.encode_documents(texts)
    row(f"product: as `codesearch index` calls it (longest first, {embedder.documents_per_call} per call, feeder), "
        f"budget {default_budget}", lambda: as_index_calls(embedder, texts))
    if "alternate" in wanted:  # feeder or not, 256 or 4096 per call, each twice in turn: order effects show
        for _ in range(2):
            for per_call in (256, 4096):
                for feeder in (True, False):
                    row(f"  {per_call} per call, {'feeder thread' if feeder else 'tokenized in line'}",
                        lambda: as_index_calls(embedder, texts, feeder, per_call))
    if "inline" in wanted:
        row("  same, each slice tokenized in line (no feeder)", lambda: as_index_calls(embedder, texts, feeder=False))
    if "serial" in wanted:
        os.environ["TOKENIZERS_PARALLELISM"] = "false"
        row("  same, no feeder, tokenizer on one thread", lambda: as_index_calls(embedder, texts, feeder=False))
        os.environ["TOKENIZERS_PARALLELISM"] = parallelism
    if "onecall" in wanted:
        row("  one call over everything", lambda: embedder.encode_documents(texts))
    if "naive" in wanted:
        row("naive: arrival order, 32 per batch, no budget", lambda: in_slices(embedder, texts, 32))
    for budget in args.budgets if "budgets" in wanted else []:
        tuned = as_variant(embedder, Embedder, token_budget=budget)
        row(f"token budget {budget}", lambda: as_index_calls(tuned, texts), tuned)
    if "packed" in wanted:
        packed = as_variant(embedder, PackedEmbedder)
        row("padding-free packing (position ids, block-diagonal mask)", lambda: as_index_calls(packed, texts), packed)
    if "pinned" in wanted and cuda:
        pinned = as_variant(embedder, PinnedEmbedder)
        row("pinned memory + non-blocking copies", lambda: as_index_calls(pinned, texts), pinned)
    if "cache" in wanted:
        caching = as_variant(embedder, CachingEmbedder)
        row("key/value cache left on (use_cache=True)", lambda: as_index_calls(caching, texts), caching)
    if "ondevice" in wanted:
        kept = as_variant(embedder, OnDeviceEmbedder)
        row("vectors kept on the device until each call ends", lambda: as_index_calls(kept, texts), kept)
    if "eager" in wanted and args.attn != "eager" and hasattr(embedder.model, "set_attn_implementation"):
        embedder.model.set_attn_implementation("eager")
        try:
            row("eager attention (no SDPA)", lambda: as_index_calls(embedder, texts))
        finally:
            embedder.model.set_attn_implementation(args.attn)
    if "oom" in wanted and cuda:  # a budget far past the card: the product must halve it and finish
        greedy = as_variant(embedder, Embedder, token_budget=1 << 26)
        row("out-of-memory backoff from a budget of 2^26 tokens, one call", lambda: greedy.encode_documents(texts),
            greedy)
        log({"row": "budget after backoff", "token_budget": greedy.token_budget})
        torch.cuda.empty_cache()
    if "compile" in wanted:
        compiled = as_variant(embedder, Embedder)
        compiled.model = torch.compile(embedder.model, dynamic=True)
        started = time.perf_counter()
        try:
            as_index_calls(compiled, texts[:512])
            log({"row": "torch.compile(dynamic=True): first two slices, compiling", "seconds": time.perf_counter() - started})
            row("torch.compile(dynamic=True)", lambda: as_index_calls(compiled, texts), compiled)
        except Exception as error:
            log({"row": "torch.compile", "error": f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"})
    # The simple path: the same weights in fp32, on a subset (it is the slow one).
    subset = texts[: args.check or 512]
    simple = fp32_twin(embedder)
    fast = embedder.encode_documents(subset)
    subset_tokens = sum(token_counts[: len(subset)])
    slow = row("fp32 (the simple path), %d chunks" % len(subset), lambda: simple.encode_documents(subset), simple,
               subset, subset_tokens)
    if slow is not None:
        log({"row": "bf16 product vs fp32, min cosine per vector", "chunks": len(subset),
             "min_cosine": float(np.min(np.sum(fast * slow, axis=1)))})
    del simple


# ---------------------------------------------------------------------------------------------------------


def parse_arguments(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="a real model folder; default: random weights, bge-code-v1's architecture")
    parser.add_argument("--device", help="cuda or cpu (default: cuda when present)")
    parser.add_argument("--dtype", choices=DTYPES, help="default: bf16 on CUDA, fp32 on CPU")
    parser.add_argument("--attn", default="sdpa", help="attention implementation for the random model (sdpa, eager, ...)")
    parser.add_argument("--token-budget", type=int, help="padded tokens per batch (default: the product's)")
    parser.add_argument("--max-length", type=int, help="truncate inputs (default: the preset's 1024)")
    parser.add_argument("--slice", type=int, default=0,
                        help="chunks per encode_documents call (codesearch index uses 256); default: all in one")
    parser.add_argument("--limit", type=int, help="embed only N chunks, sampled from the distribution")
    parser.add_argument("--layers", type=int, help="fewer decoder layers than 28, for CPU smoke runs")
    parser.add_argument("--threads", default="", help="CPU threads; a comma list measures each (e.g. 1,2)")
    parser.add_argument("--warmup", type=int, default=16, help="chunks embedded before timing")
    parser.add_argument("--check", type=int, default=0, help="compare N vectors with the fp32 path (cosine)")
    parser.add_argument("--lengths", type=Path, default=LENGTHS_FILE, help="the length distribution file")
    parser.add_argument("--texts", type=Path, help="real chunk texts (from --write-texts) instead of synthetic ids; "
                                                   "needs --tokenizer")
    parser.add_argument("--tokenizer", type=Path,
                        help="Qwen2.5's tokenizer: a qwen.tiktoken ranks file or a tokenizer.json saved from one")
    parser.add_argument("--save-tokenizer", type=Path, help="save the --tokenizer as tokenizer.json and exit")
    parser.add_argument("--suite", action="store_true", help="measure every technique in one run (see run_suite)")
    parser.add_argument("--budgets", default="16384,65536,131072",
                        help="token budgets the suite compares with the default")
    parser.add_argument("--rows", default="inline,serial,onecall,naive,budgets,packed,pinned,cache,ondevice,eager,oom",
                        help="the suite's rows besides the product's (add compile for torch.compile)")
    parser.add_argument("--out", type=Path, help="write the suite's rows here as JSON lines")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="also print one JSON object per measurement")
    parser.add_argument("--write-lengths", nargs="+", metavar="REPO",
                        help="recompute the length distribution from these repositories and exit")
    parser.add_argument("--write-texts", type=Path, help="with --write-lengths: also save the chunk texts (.json.gz)")
    return parser.parse_args(argv)


def load_texts(path: Path, limit: int | None, seed: int) -> list[str]:
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        texts = json.load(handle)
    order = np.random.default_rng(seed).permutation(len(texts))
    return [texts[i] for i in (order[:limit] if limit else order)]


def print_row(row: dict) -> None:
    name = row["row"]
    if "error" in row:
        print(f"{name}: FAILED {row['error']}")
    elif "ceiling_tokens_per_s" in row:
        print(f"{name}: matmul {row['matmul_tflops']:.1f} TFLOP/s over {row['non_embedding_parameters'] / 1e9:.3f} B "
              f"parameters -> {row['ceiling_tokens_per_s']:,.0f} tokens/s; {row['chunks']} chunks, {row['tokens']} tokens")
    elif "ceiling_ratio" in row:
        peak = f", peak {row['peak_gpu_gib']:.1f} GiB" if row.get("peak_gpu_gib") is not None else ""
        cosine = f", min cos {row['min_cosine_to_default']:.5f}" if "min_cosine_to_default" in row else ""
        print(f"{name}: {row['tokens_per_s']:,.0f} tokens/s, {row['chunks_per_s']:,.1f} chunks/s, "
              f"{100 * row['ceiling_ratio']:.1f} % of ceiling, padding {row['padding_waste_pct']:.1f} %, "
              f"{row['batches']} batches, {row['seconds']:.2f} s{peak}{cosine}")
    else:
        print(f"{name}: " + ", ".join(f"{key} {value:.4g}" if isinstance(value, float) else f"{key} {value}"
                                      for key, value in row.items() if key != "row"))


def main(argv=None) -> int:
    args = parse_arguments(argv)
    tokenizer = qwen_tokenizer(args.tokenizer) if args.tokenizer else None
    if args.save_tokenizer:
        tokenizer.backend_tokenizer.save(str(args.save_tokenizer))
        return 0
    if args.write_lengths:
        write_lengths(args.write_lengths, args.lengths, args.max_length or PRESETS["bge-code-v1"].max_length,
                      tokenizer, args.write_texts)
        return 0
    import torch

    args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    args.dtype = args.dtype or ("bf16" if args.device.startswith("cuda") else "fp32")
    args.budgets = [int(value) for value in args.budgets.split(",") if value]
    if args.texts:
        if tokenizer is None:
            raise SystemExit("--texts needs --tokenizer")
        texts = load_texts(args.texts, args.limit, args.seed)
        warmup_texts = load_texts(args.texts, args.warmup, args.seed + 1) if args.warmup else []
        lengths = []
    else:
        lengths = sample_lengths(args.lengths, args.limit, args.seed)
        warmup = sample_lengths(args.lengths, args.warmup, args.seed + 1) if args.warmup else []
        lengths += warmup
    started = time.perf_counter()
    embedder = build_embedder(args, lengths, tokenizer)
    built = time.perf_counter() - started
    if not args.texts:
        count = len(lengths) - len(warmup)
        texts, warmup_texts = embedder.tokenizer.texts[:count], embedder.tokenizer.texts[count:]
    parameters = non_embedding_parameters(embedder.model)
    layers = embedder.model.config.num_hidden_layers
    print(f"model: {args.model or 'random bge-code-v1 architecture'}, {layers} layers, "
          f"{parameters / 1e9:.3f} B non-embedding parameters, built in {built:.1f} s; "
          f"torch {torch.__version__}, {torch.cuda.get_device_name() if args.device.startswith('cuda') else 'CPU'}")
    print(f"device {args.device}, {args.dtype}, attention {embedder.model.config._attn_implementation}, "
          f"token budget {embedder.token_budget}, {len(texts)} chunks"
          + (" of real text, real tokenizer" if args.texts else ", synthetic ids")
          + (f", {args.slice} chunks per call" if args.slice else ""))
    if warmup_texts:
        embedder.encode_documents(warmup_texts)

    if args.suite:
        out = args.out.open("w", encoding="utf-8") if args.out else None

        def log(row: dict) -> None:
            print_row(row)
            if out:
                out.write(json.dumps(row) + "\n")
                out.flush()

        run_suite(args, embedder, texts, log)
        return 0

    tokens = sum(len(ids) for ids in embedder.tokenize(texts))
    for threads in [int(t) for t in args.threads.split(",") if t] or [torch.get_num_threads()]:
        torch.set_num_threads(threads)
        if warmup_texts:
            embedder.encode_documents(warmup_texts)
        encode = (lambda: in_slices(embedder, texts, args.slice)) if args.slice else \
            (lambda: embedder.encode_documents(texts))
        result = measure(embedder, encode, len(texts), tokens, args.device)
        result.pop("vectors")
        flops = matmul_flops(args.device, args.dtype)
        ceiling = flops / (2 * parameters)
        result.update(threads=threads, matmul_tflops=flops / 1e12, ceiling_tokens_per_s=ceiling,
                      ceiling_ratio=result["tokens_per_s"] / ceiling, device=args.device, dtype=args.dtype,
                      layers=layers, token_budget=embedder.token_budget, slice=args.slice)
        peak = f"{result['peak_gpu_gib']:.2f} GiB" if result["peak_gpu_gib"] is not None else \
            f"n/a (CPU; process peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.1f} GiB)"
        print(f"threads {threads}: {result['tokens_per_s']:,.0f} tokens/s, {result['chunks_per_s']:,.2f} chunks/s "
              f"({result['seconds']:.2f} s, {result['batches']} batches), padding waste "
              f"{result['padding_waste_pct']:.1f} %, peak GPU memory {peak}")
        print(f"  ceiling: {args.dtype} matmul {result['matmul_tflops']:.3f} TFLOP/s -> "
              f"{ceiling:,.0f} tokens/s; achieved {100 * result['ceiling_ratio']:.1f} % of it")
        if args.json:
            print(json.dumps(result))
    if args.check:
        subset = texts[: args.check]
        simple = fp32_twin(embedder)
        cosine = float(np.min(np.sum(embedder.encode_documents(subset) * simple.encode_documents(subset), axis=1)))
        print(f"check: smallest cosine to the fp32 path over {len(subset)} chunks: {cosine:.5f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
