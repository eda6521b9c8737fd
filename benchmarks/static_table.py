"""Static embedding tables made from minilm, for the ranking lab's `static-*` variants (RETRIEVAL.md, "a static
table instead of the model"). A text's vector is then a weighted mean of its word pieces' rows: no transformer runs
at index or query time.

    python benchmarks/static_table.py distill VECTORS_DIR
        each word piece's row is minilm's output at that piece read alone ([CLS] piece [SEP]), projected on the
        table's first 256 principal components: VECTORS_DIR/static-table.npy (about 20 s)
    python benchmarks/static_table.py train VECTORS_DIR --source DIR [--source DIR ...] [--exclude NAME ...]
        starting from those rows (all 384 dimensions), trained so that a 30-line window's mean row points where
        minilm's vector of the window points, over windows of the code under each DIR (at most 200 files and 400
        windows from each of its folders; folders named by --exclude left out, such as the evaluated packages):
        VECTORS_DIR/static-trained.npy; minilm's vectors of the windows are kept there too
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from codesearch.embedding.spec import _minilm_directory  # noqa: E402

DIMENSIONS = 256
WINDOW_LINES = 30
PATTERNS = ("*.py", "*.pyi", "*.c", "*.h", "*.cpp", "*.js", "*.ts", "*.go", "*.rs", "*.java")


def piece_rows():
    """minilm's output at each word piece read alone, one row per piece."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    source = str(_minilm_directory())
    tokenizer, model = AutoTokenizer.from_pretrained(source), AutoModel.from_pretrained(source).eval()
    pieces = torch.arange(tokenizer.vocab_size)
    rows = np.zeros((len(pieces), model.config.hidden_size), dtype=np.float32)
    with torch.inference_mode():
        for start in range(0, len(pieces), 1024):
            batch = pieces[start:start + 1024]
            inputs = torch.stack([torch.full_like(batch, tokenizer.cls_token_id), batch,
                                  torch.full_like(batch, tokenizer.sep_token_id)], 1)
            rows[start:start + len(batch)] = model(input_ids=inputs).last_hidden_state[:, 1].numpy()
    return rows


def distill(out: Path) -> Path:
    rows = piece_rows()
    centred = rows - rows.mean(0)
    _, _, components = np.linalg.svd(centred, full_matrices=False)
    np.save(out / "static-table.npy", (centred @ components[:DIMENSIONS].T).astype(np.float32))
    return out / "static-table.npy"


def windows_of(sources: list[Path], excluded: set[str]) -> list[str]:
    chosen = random.Random(0)
    windows = []
    for source in sources:
        for folder in sorted(path for path in source.iterdir() if path.is_dir() and path.name not in excluded
                             and not path.name.endswith(".dist-info")):
            files = sorted(path for pattern in PATTERNS for path in folder.rglob(pattern)
                           if path.is_file() and path.stat().st_size < 200_000)
            chosen.shuffle(files)
            mine = []
            for path in files[:200]:
                lines = path.read_text(errors="ignore").split("\n")
                for start in range(0, len(lines), WINDOW_LINES):
                    text = "\n".join(lines[start:start + WINDOW_LINES]).strip()
                    if len(text) > 80:
                        mine.append(f"{path.relative_to(source)}\n{text}")
            chosen.shuffle(mine)
            windows += mine[:400]
    return windows


def train(out: Path, sources: list[Path], excluded: set[str], epochs: int = 10, rate: float = 0.01) -> Path:
    import torch
    from tokenizers import Tokenizer

    from codesearch.embedding.load import load_embedder
    from codesearch.embedding.spec import resolve_model

    windows = windows_of(sources, excluded)
    cache = out / f"static-teacher-{hashlib.sha256(json.dumps(windows).encode()).hexdigest()[:16]}.npy"
    if not cache.exists():
        np.save(cache, np.asarray(load_embedder(resolve_model("minilm")).encode_documents(windows), dtype=np.float32))
    teacher = torch.tensor(np.load(cache))
    tokenizer = Tokenizer.from_file(str(_minilm_directory() / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.enable_truncation(256)  # as much of a window as minilm read
    pieces = [encoding.ids[1:-1] for encoding in tokenizer.encode_batch(windows)]
    torch.manual_seed(0)
    table = torch.nn.EmbeddingBag.from_pretrained(torch.tensor(piece_rows()), freeze=False, mode="mean")
    optimiser = torch.optim.Adam(table.parameters(), lr=rate)

    def loss(rows):
        flat = torch.tensor([piece for row in rows for piece in pieces[row]])
        offsets = torch.tensor([0, *np.cumsum([len(pieces[row]) for row in rows])[:-1]])
        vectors = torch.nn.functional.normalize(table(flat, offsets), dim=1)
        return (1 - (vectors * teacher[rows]).sum(1)).mean()

    usable = [row for row, ids in enumerate(pieces) if ids]
    held_out, trained = usable[:len(usable) // 20], usable[len(usable) // 20:]
    order = np.random.default_rng(0)
    for epoch in range(epochs):
        shuffled = order.permutation(trained)
        for start in range(0, len(shuffled), 256):
            optimiser.zero_grad()
            loss(list(shuffled[start:start + 256])).backward()
            optimiser.step()
        with torch.no_grad():
            print(f"epoch {epoch + 1}: held-out cosine to minilm {1 - float(loss(held_out)):.3f}", flush=True)
    np.save(out / "static-trained.npy", table.weight.detach().numpy().astype(np.float32))
    print(f"{len(windows)} windows")
    return out / "static-trained.npy"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=("distill", "train"))
    parser.add_argument("vectors", type=Path)
    parser.add_argument("--source", type=Path, action="append", default=[])
    parser.add_argument("--exclude", action="append", default=[])
    args = parser.parse_args()
    if args.what == "train" and not args.source:
        parser.error("train needs at least one --source")
    print(distill(args.vectors) if args.what == "distill" else train(args.vectors, args.source, set(args.exclude)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
