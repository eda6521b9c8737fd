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
import json
import math
import resource
import sys
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from codesearch.embed import PRESETS, TOKEN_BUDGET, Embedder, load_embedder, resolve_model  # noqa: E402

LENGTHS_FILE = Path(__file__).with_name("chunk_token_lengths.json")
# Qwen2.5-Coder's byte-level BPE averages roughly 3.2 characters per token on source code. The real
# tokenizer cannot be fetched offline, so chunk lengths in characters are converted with this ratio.
CHARS_PER_TOKEN = 3.2

# BAAI/bge-code-v1 = Qwen2.5-Coder-1.5B: its config.json, minus what does not change the compute.
BGE_CODE_V1_ARCHITECTURE = dict(
    hidden_size=1536, num_hidden_layers=28, num_attention_heads=12, num_key_value_heads=2,
    intermediate_size=8960, vocab_size=151646, rope_theta=1_000_000.0, tie_word_embeddings=True,
    max_position_embeddings=32768, rms_norm_eps=1e-6, hidden_act="silu",
    bos_token_id=151643, eos_token_id=151643, pad_token_id=151643,
)
QWEN_EOS_ID = 151643  # "<|endoftext|>"; also Qwen2.5's pad token
DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}


# ---------------------------------------------------------------------------------------------------------
# The length distribution


def write_lengths(repositories: list[str], path: Path, max_length: int) -> None:
    """Chunk every file of the repositories as `codesearch index` would and save the token-length histogram."""
    from codesearch.chunk import chunk_file
    from codesearch.discover import discover_files, looks_binary

    histogram: Counter[int] = Counter()
    per_language: dict[str, list[int]] = {}
    per_repository: dict[str, int] = {}
    for repository in map(Path, repositories):
        if not repository.is_dir() or repository.name.startswith("."):
            continue
        count = 0
        for source in discover_files(repository):
            data = (repository / source.path).read_bytes()
            if looks_binary(data):
                continue
            for chunk in chunk_file(source.path, data):
                # What the model sees (header + code), at most max_length - 1 tokens, then the EOS.
                tokens = min(math.ceil(len(chunk.embedding_text) / CHARS_PER_TOKEN), max_length - 1) + 1
                histogram[tokens] += 1
                per_language.setdefault(chunk.language, []).append(tokens)
                count += 1
        per_repository[repository.name] = count
    lengths = np.repeat(np.array(sorted(histogram)), [histogram[k] for k in sorted(histogram)])
    data = {
        "about": "Token lengths (EOS included) of the chunks codesearch cuts from real repositories, as the "
                 "embedder sees them (Chunk.embedding_text), truncated at max_length.",
        "tokens_estimated_as": f"ceil(characters / {CHARS_PER_TOKEN}) + 1: Qwen2.5-Coder's tokenizer averages "
                               f"about {CHARS_PER_TOKEN} characters per token on code; the real tokenizer is not "
                               "available offline",
        "max_length": max_length,
        "chunks": int(lengths.size),
        "mean": round(float(lengths.mean()), 1),
        "percentiles": {str(p): int(np.percentile(lengths, p)) for p in (10, 25, 50, 75, 90, 99)},
        "repositories": per_repository,
        "languages": {name: {"chunks": len(values), "mean": round(float(np.mean(values)), 1)}
                      for name, values in sorted(per_language.items())},
        "histogram": {str(length): histogram[length] for length in sorted(histogram)},
    }
    path.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {path}: {data['chunks']} chunks, mean {data['mean']} tokens, percentiles {data['percentiles']}")


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
        ids = [self.ids[text] for text in texts]
        if truncation and max_length:
            ids = [token_ids[:max_length] for token_ids in ids]
        return {"input_ids": ids}


# ---------------------------------------------------------------------------------------------------------
# Model, ceiling, measurement


def build_embedder(args, lengths: list[int]) -> Embedder:
    import torch

    dtype = getattr(torch, DTYPES[args.dtype])
    if args.model:
        embedder = load_embedder(resolve_model(args.model), device=args.device)
        embedder.model.to(dtype)
        pad_id = embedder.tokenizer.pad_token_id
        embedder.tokenizer = SyntheticTokenizer(lengths, embedder.model.config.vocab_size, embedder._eos_id,
                                                pad_id if pad_id is not None else embedder._eos_id, args.seed)
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
        tokenizer = SyntheticTokenizer(lengths, config.vocab_size, QWEN_EOS_ID, QWEN_EOS_ID, args.seed)
        embedder = Embedder(spec, model, tokenizer, args.device, config.hidden_size, token_budget_for(args), QWEN_EOS_ID)
    if args.max_length:
        embedder.spec = replace(embedder.spec, max_length=args.max_length)
    embedder.token_budget = token_budget_for(args)
    return embedder


def token_budget_for(args) -> int:
    """The token budget: as asked, or the product's own choice for the device."""
    if args.token_budget:
        return args.token_budget
    return TOKEN_BUDGET * 8 if args.device.startswith("cuda") else TOKEN_BUDGET


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


def measure(embedder: Embedder, texts: list[str], device: str, slice_size: int = 0) -> dict:
    """Encode the texts once through the product's encode_documents; count real and padded tokens.

    slice_size > 0 hands the embedder that many chunks per call, as `codesearch index` does (EMBED_SLICE).
    """
    import torch

    shapes = []

    def record(_module, _args, kwargs):
        mask = kwargs["attention_mask"]
        shapes.append((mask.numel(), int(mask.sum())))

    hook = embedder.model.register_forward_pre_hook(record, with_kwargs=True)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    try:
        synchronize(device)
        started = time.perf_counter()
        step = slice_size or len(texts)
        vectors = np.vstack([embedder.encode_documents(texts[start:start + step])
                             for start in range(0, len(texts), step)])
        synchronize(device)
        seconds = time.perf_counter() - started
    finally:
        hook.remove()
    padded = sum(total for total, _ in shapes)
    real = sum(used for _, used in shapes)
    assert vectors.shape[0] == len(texts) and np.isfinite(vectors).all()
    return {
        "seconds": seconds, "chunks": len(texts), "batches": len(shapes), "tokens": real, "padded_tokens": padded,
        "tokens_per_s": real / seconds, "chunks_per_s": len(texts) / seconds,
        "padding_waste_pct": 100.0 * (padded - real) / padded if padded else 0.0,
        "peak_gpu_gib": torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else None,
    }


def check_against_fp32(embedder: Embedder, texts: list[str]) -> float:
    """Smallest cosine between this run's vectors and the same weights' in fp32 (the simple path)."""
    import copy

    import torch

    fast = embedder.encode_documents(texts)
    reference = copy.copy(embedder)
    reference.model = copy.deepcopy(embedder.model).to(torch.float32)
    slow = reference.encode_documents(texts)
    del reference
    return float(np.min(np.sum(fast * slow, axis=1)))


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
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="also print one JSON object per measurement")
    parser.add_argument("--write-lengths", nargs="+", metavar="REPO",
                        help="recompute the length distribution from these repositories and exit")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_arguments(argv)
    if args.write_lengths:
        write_lengths(args.write_lengths, args.lengths, args.max_length or PRESETS["bge-code-v1"].max_length)
        return 0
    import torch

    args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    args.dtype = args.dtype or ("bf16" if args.device.startswith("cuda") else "fp32")
    lengths = sample_lengths(args.lengths, args.limit, args.seed)
    warmup = sample_lengths(args.lengths, args.warmup, args.seed + 1) if args.warmup else []
    started = time.perf_counter()
    embedder = build_embedder(args, lengths + warmup)
    built = time.perf_counter() - started
    texts, warmup_texts = embedder.tokenizer.texts[: len(lengths)], embedder.tokenizer.texts[len(lengths):]
    parameters = non_embedding_parameters(embedder.model)
    layers = embedder.model.config.num_hidden_layers
    print(f"model: {args.model or 'random bge-code-v1 architecture'}, {layers} layers, "
          f"{parameters / 1e9:.3f} B non-embedding parameters, built in {built:.1f} s")
    print(f"device {args.device}, {args.dtype}, attention {embedder.model.config._attn_implementation}, "
          f"token budget {embedder.token_budget}, {len(texts)} chunks, {sum(lengths)} tokens"
          + (f", {args.slice} chunks per call" if args.slice else ""))

    for threads in [int(t) for t in args.threads.split(",") if t] or [torch.get_num_threads()]:
        torch.set_num_threads(threads)
        if warmup_texts:
            embedder.encode_documents(warmup_texts)
        result = measure(embedder, texts, args.device, args.slice)
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
        cosine = check_against_fp32(embedder, texts[: args.check])
        print(f"check: smallest cosine to the fp32 path over {min(args.check, len(texts))} chunks: {cosine:.5f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
