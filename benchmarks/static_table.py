"""A static embedding table distilled from minilm, for the ranking lab's `static-*` variants (RETRIEVAL.md, "a
static table instead of the model"): each word piece's vector is minilm's output at that piece when it is read
alone ([CLS] piece [SEP]), projected on the table's first 256 principal components. A text's vector is then a
weighted mean of its pieces' rows: no transformer runs at index or query time.

    python benchmarks/static_table.py VECTORS_DIR     # writes VECTORS_DIR/static-table.npy (about 20 s)
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from codesearch.embedding.spec import _minilm_directory  # noqa: E402

DIMENSIONS = 256


def main() -> int:
    import torch
    from transformers import AutoModel, AutoTokenizer

    source = str(_minilm_directory())
    tokenizer, model = AutoTokenizer.from_pretrained(source), AutoModel.from_pretrained(source).eval()
    pieces = torch.arange(tokenizer.vocab_size)
    table = np.zeros((len(pieces), model.config.hidden_size), dtype=np.float32)
    with torch.inference_mode():
        for start in range(0, len(pieces), 1024):
            batch = pieces[start:start + 1024]
            inputs = torch.stack([torch.full_like(batch, tokenizer.cls_token_id), batch,
                                  torch.full_like(batch, tokenizer.sep_token_id)], 1)
            table[start:start + len(batch)] = model(input_ids=inputs).last_hidden_state[:, 1].numpy()
    centred = table - table.mean(0)
    _, _, components = np.linalg.svd(centred, full_matrices=False)
    out = Path(sys.argv[1]) / "static-table.npy"
    np.save(out, (centred @ components[:DIMENSIONS].T).astype(np.float32))
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
