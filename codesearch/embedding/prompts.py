"""What a model is told besides the text: query templates and instructions, and prompts per role.

bge-code-v1 is run as BAAI runs it (README "Models" lists the sources): a question in words gets CoIR's
CosQA instruction, a pasted snippet CodeTrans-DL's, both in BAAI's `<instruct>{instruction}\n<query>{query}`
template; documents get no prompt. A model that declares prompts in config_sentence_transformers.json
(gte-Qwen2's `Instruct: ...\nQuery: `) gets those instead, per role: one for queries, one for documents.
Nothing is imported, so `status` describes prompts without loading anything.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

# BAAI's own instructions for bge-code-v1, quoted exactly: FlagEmbedding's
# research/BGE_Coder/evaluation/coir_eval/prompts.py (its CoIR evaluation), also listed in
# research/BGE_Coder/README.md "Instructions for Evaluation" and the CodeR paper's Table 8.
# A question in words: CoIR's CosQA ("cosqa"), web search queries answered by code, the task
# closest to a developer's question (also the training task "Web Query to Code Retrieval").
BGE_CODE_TEXT_INSTRUCTION = "Given a web search query, retrieve relevant code that can help answer the query."
# A pasted snippet: CoIR's "codetrans-dl" (the training task "Similar Code Retrieval"), the one
# code-to-code instruction that names no language ("codetrans-contest" is Python to C++, and
# "CodeSearchNet-ccr" asks for the code that continues the snippet, not code like it).
BGE_CODE_CODE_INSTRUCTION = "Given a piece of code, retrieve code that is semantically equivalent to the input code."
# The query template of FlagEmbedding's eval.sh (CoIR and CodeRAG) and model_mapping.py; documents get none.
# <instruct> and <query> are tokens of their own in bge-code-v1's tokenizer (Embedder.tokenize_queries).
BGE_CODE_QUERY_FORMAT = "<instruct>{instruction}\n<query>{query}"

# A query is code when it has two or more non-blank lines, ends like a statement or block (; { }),
# opens with a declaration (def f(, class A:, func (s, function f(, fn f(, ...), is an SQL statement,
# or has at least 3 of ; { } ( ) [ ] = < > making up at least 12 % of its non-space characters.
_DECLARATION = re.compile(
    r"^\s*(?:(?:async\s+)?def|class|interface|struct|enum|trait|impl|fn|func|function|sub|proc)\s*"
    r"[A-Za-z_$(][\w$]*\s*[(<{:\[]")
_SQL = re.compile(r"^\s*(?:SELECT\s.+\sFROM\s|INSERT\s+INTO\s|DELETE\s+FROM\s|UPDATE\s+\S+\s+SET\s|CREATE\s+"
                  r"(?:TABLE|INDEX|VIEW)\s)")
_CODE_PUNCTUATION = frozenset(";{}()[]=<>")


def looks_like_code(text: str) -> bool:
    """Whether a query is a pasted snippet rather than a question: simple and deterministic (rules above)."""
    stripped = text.strip()
    if not stripped:
        return False
    if sum(1 for line in stripped.splitlines() if line.strip()) >= 2:
        return True
    if stripped.endswith((";", "{", "}")) or _DECLARATION.match(stripped) or _SQL.match(stripped):
        return True
    visible = [char for char in stripped if not char.isspace()]
    punctuation = sum(1 for char in visible if char in _CODE_PUNCTUATION)
    return punctuation >= 3 and punctuation >= 0.12 * len(visible)


BGE_CODE_PROMPTS = dict(query_format=BGE_CODE_QUERY_FORMAT, query_instruction=BGE_CODE_TEXT_INSTRUCTION,
                        code_query_instruction=BGE_CODE_CODE_INSTRUCTION, prompt_source="bge-code")


def describe_prompts(record: dict | None) -> str:
    """One line for `codesearch status`: where the query template comes from, and its instructions."""
    if not isinstance(record, dict):
        return "not recorded (an index from before prompts were recorded; `codesearch index` records them)"
    source = {"bge-code": "bge-code's template", "model": "the model's declared prompts"}.get(record.get("source"),
                                                                                          "none")
    parts = [source]
    if "{instruction}" in str(record.get("format")) and record.get("source") == "bge-code":
        parts.append(json.dumps(record.get("format")))
    if record.get("text"):
        parts.append(f"question: {json.dumps(record['text'])}")
    if record.get("code"):
        parts.append(f"code: {json.dumps(record['code'])}")
    if record.get("document"):
        parts.append(f"documents: {json.dumps(record['document'])}")
    return "; ".join(parts) if len(parts) > 1 or source != "none" else "none (queries and documents as they are)"


def declared_prompts(directory: Path) -> tuple[str, str] | None:
    """(query prompt, document prompt) from config_sentence_transformers.json; None when it declares none.

    The query's is "query" (else the default prompt); the documents' "document", "passage" or "corpus"
    (else the default prompt, else none).
    """
    config = read_json(directory / "config_sentence_transformers.json")
    prompts = config.get("prompts") if isinstance(config, dict) else None
    if not isinstance(prompts, dict) or not prompts:
        return None
    prompts = {key: value for key, value in prompts.items() if isinstance(value, str)}
    default = prompts.get(config.get("default_prompt_name") or "", "")
    document = next((prompts[key] for key in ("document", "passage", "corpus") if key in prompts), default)
    return prompts.get("query", default), document


def read_json(path: Path, default=None):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {} if default is None else default
