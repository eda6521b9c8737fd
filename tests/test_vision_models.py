"""BAAI's multimodal embedders run as BAAI runs them (codesearch/embedding/vision_recipes.py), on tiny
random-weight models of the exact architectures: CLIP, LLaVA-NeXT on a Mistral text model with a CLIP vision
tower, and Qwen2.5-VL with Qwen2.5's real vocabulary (tests/qwen_vocab.py). Each is saved as a model folder
with its processor, built once per session in about a second; nothing touches the network.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

from codesearch.embedding.vision import (VISION_PRESETS, VisionSpec, load_vision_embedder, pin_vision_model,
                                         resolve_vision_model)
from codesearch.embedding.vision_recipes import LLAVA_NEXT_INSTRUCTIONS, QWEN_VL_INSTRUCTIONS
from codesearch.errors import CodesearchError

FOLDERS = {"clip": "tiny_clip_dir", "llava-next": "tiny_llava_next_dir", "qwen2.5-vl": "tiny_qwen_vl_dir"}
DIMENSIONS = {"clip": 8, "llava-next": 32, "qwen2.5-vl": 32}
TEXT = "a red square on a green field"


def pictures(count: int, seed: int = 0):
    """Noise pictures of different sizes (so Qwen2.5-VL gives them different numbers of visual tokens)."""
    from PIL import Image

    generator = np.random.default_rng(seed)
    return [Image.fromarray(generator.integers(0, 256, (30 + 11 * i, 40 + 17 * i, 3), dtype=np.uint8))
            for i in range(count)]


# -- tiny models of the three architectures ----------------------------------------------------------------


@pytest.fixture(scope="session")
def tiny_llava_next_dir(tmp_path_factory):
    """LLaVA-NeXT: a Mistral text model, a CLIP vision tower, anyres with llava-v1.6's pinpoints scaled
    from 336-pixel crops down to 28, and a BPE tokenizer with <s> first and <image> added."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import (LlavaNextConfig, LlavaNextForConditionalGeneration, LlavaNextImageProcessorPil,
                              LlavaNextProcessor, PreTrainedTokenizerFast)

    directory = tmp_path_factory.mktemp("tiny-llava-next")
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer, bpe.decoder = pre_tokenizers.Metaspace(), decoders.Metaspace()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<unk>", "<s>", "</s>"], show_progress=False)
    bpe.train_from_iterator([*LLAVA_NEXT_INSTRUCTIONS.values(), "[INST] <instruct> <query> [/INST]", TEXT] * 3,
                            trainer=trainer)
    bpe.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                        pad_token="<unk>", padding_side="left")
    tokenizer.add_special_tokens({"additional_special_tokens": ["<image>"]})
    pinpoints = [[28, 56], [56, 28], [56, 56], [84, 28], [28, 84]]
    image_processor = LlavaNextImageProcessorPil(size={"shortest_edge": 28}, crop_size={"height": 28, "width": 28},
                                                 image_grid_pinpoints=pinpoints)
    LlavaNextProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=14,
                       vision_feature_select_strategy="default", num_additional_image_tokens=1,
                       ).save_pretrained(directory)
    torch.manual_seed(0)
    config = LlavaNextConfig(
        vision_config=dict(model_type="clip_vision_model", image_size=28, patch_size=14, hidden_size=16,
                           intermediate_size=32, num_hidden_layers=2, num_attention_heads=2, projection_dim=16),
        text_config=dict(model_type="mistral", vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=4096, sliding_window=None),
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"), image_grid_pinpoints=pinpoints,
        vision_feature_layer=-2, vision_feature_select_strategy="default", image_seq_length=4,
    )
    LlavaNextForConditionalGeneration(config).save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def qwen25_tokenizer(qwen25_vocabulary):
    from qwen_vocab import qwen_tokenizer

    return qwen_tokenizer(qwen25_vocabulary)


@pytest.fixture(scope="session")
def tiny_qwen_vl_dir(tmp_path_factory, qwen25_tokenizer):
    """Qwen2.5-VL with M-RoPE, window attention in its vision tower, 14-pixel patches merged 2x2, and 4 to
    16 visual tokens a picture."""
    import torch
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2VLImageProcessorPil

    directory = tmp_path_factory.mktemp("tiny-qwen2.5-vl")
    tokenizer = qwen25_tokenizer
    Qwen2VLImageProcessorPil(min_pixels=28 * 28 * 4, max_pixels=28 * 28 * 16).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    ids = tokenizer.convert_tokens_to_ids
    torch.manual_seed(0)
    config = Qwen2_5_VLConfig(
        text_config=dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
                         rope_scaling={"type": "mrope", "mrope_section": [2, 1, 1]}),
        vision_config=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=4, out_hidden_size=32,
                           patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=56,
                           fullatt_block_indexes=[1]),
        image_token_id=ids("<|image_pad|>"), video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"), vision_end_token_id=ids("<|vision_end|>"),
        tie_word_embeddings=True,
    )
    Qwen2_5_VLForConditionalGeneration(config).save_pretrained(directory)
    return directory


def _load(folder, **options):
    # A local folder puts the hub client offline; keep that out of the other tests.
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("HF_HUB_OFFLINE", raising=False)
        return load_vision_embedder(resolve_vision_model(str(folder), **options), device="cpu")


@pytest.fixture(scope="module")
def loaded():
    return {}


@pytest.fixture(params=list(FOLDERS))
def architecture(request):
    return request.param


@pytest.fixture
def embedder(request, architecture, loaded):
    if architecture not in loaded:
        loaded[architecture] = _load(request.getfixturevalue(FOLDERS[architecture]))
    return loaded[architecture]


class RecordingProcessor:
    """The embedder's processor, keeping what it was asked (keyword arguments) and what it answered."""

    def __init__(self, processor):
        self.processor, self.calls = processor, []

    def __call__(self, **kwargs):
        output = self.processor(**kwargs)
        self.calls.append((kwargs, output))
        return output

    def __getattr__(self, name):
        return getattr(self.processor, name)


@pytest.fixture
def recorded(embedder, monkeypatch):
    recording = RecordingProcessor(embedder.processor)
    monkeypatch.setattr(embedder, "processor", recording)
    return recording


def collapsed(ids: list[int], token: int) -> list[int]:
    """ids with each run of `token` (a picture's expansion) back to one token."""
    return [t for i, t in enumerate(ids) if t != token or i == 0 or ids[i - 1] != token]


# -- names, specs, fingerprints ----------------------------------------------------------------------------


def test_a_folder_resolves_to_its_architecture(request, architecture):
    folder = request.getfixturevalue(FOLDERS[architecture])
    spec = resolve_vision_model(str(folder))
    assert (spec.name, spec.source, spec.architecture) == (str(folder), str(folder.resolve()), architecture)
    assert not spec.trust_remote_code and resolve_vision_model(str(folder), trust_remote_code=True).trust_remote_code


def test_presets_name_baais_hub_models():
    assert {name: (spec.source, spec.architecture) for name, spec in VISION_PRESETS.items()} == {
        "bge-vl-base": ("BAAI/BGE-VL-base", "clip"),
        "bge-vl-v1.5": ("BAAI/BGE-VL-v1.5-zs", "llava-next"),
        "bge-vl-screenshot": ("BAAI/BGE-VL-Screenshot", "qwen2.5-vl"),
    }
    by_id = resolve_vision_model("BAAI/BGE-VL-Screenshot")
    assert (by_id.name, by_id.architecture) == ("BAAI/BGE-VL-Screenshot", "qwen2.5-vl")


def test_resolving_imports_nothing_heavy():
    code = ("import sys; from codesearch.embedding.vision import resolve_vision_model; "
            "resolve_vision_model('bge-vl-v1.5'); "
            "print([m for m in ('torch', 'transformers', 'PIL') if m in sys.modules])")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("case", ["empty", "unknown", "missing-folder", "file", "no-config", "bert", "not-cached"])
def test_a_bad_name_fails_in_one_line(tmp_path, monkeypatch, case):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    (tmp_path / "plain.txt").write_text("x")
    (tmp_path / "no-config").mkdir()
    (tmp_path / "bert").mkdir()
    (tmp_path / "bert" / "config.json").write_text(json.dumps({"model_type": "bert"}))
    name = {"empty": "", "unknown": "bge-vl-huge", "missing-folder": str(tmp_path / "gone"),
            "file": str(tmp_path / "plain.txt"), "no-config": str(tmp_path / "no-config"),
            "bert": str(tmp_path / "bert"), "not-cached": "nobody-here/no-such-vision-model"}[case]
    with pytest.raises(CodesearchError) as raised:
        resolve_vision_model(name)
    assert "\n" not in str(raised.value) and str(raised.value)


def test_pinning_names_the_weights_and_the_dtype(tiny_clip_dir, monkeypatch):
    from codesearch import hardware

    spec = resolve_vision_model(str(tiny_clip_dir))
    monkeypatch.setattr(hardware, "default_device", lambda: "cpu")
    pinned = pin_vision_model(spec)
    assert pinned.weights.startswith("folder:") and pinned.dtype == "float32"
    monkeypatch.setattr(hardware, "default_device", lambda: "cuda")
    monkeypatch.setattr(hardware, "planned_dtype", lambda device=None: "bfloat16")
    assert pin_vision_model(spec).dtype == "bfloat16"
    other_architecture = VisionSpec(pinned.name, pinned.source, "llava-next", weights=pinned.weights, dtype="float32")
    fingerprints = {pinned.fingerprint, spec.fingerprint, pin_vision_model(spec).fingerprint,
                    other_architecture.fingerprint}
    assert len(fingerprints) == 4
    assert all(len(f) == 16 and int(f, 16) >= 0 for f in fingerprints)
    assert VisionSpec(**pinned.__dict__).fingerprint == pinned.fingerprint


# -- vectors ------------------------------------------------------------------------------------------------


def test_vectors_are_unit_rows_of_the_models_dimension(embedder, architecture):
    picture = pictures(1)[0]
    for vectors in (embedder.encode_candidates(pictures(3)),
                    embedder.encode_queries([TEXT, None, TEXT], [None, picture, picture])):
        assert vectors.dtype == np.float32 and vectors.shape == (3, DIMENSIONS[architecture])
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    assert embedder.dim == DIMENSIONS[architecture] and embedder.encode_candidates([]).shape == (0, embedder.dim)


def test_a_candidate_embeds_the_same_alone_and_in_a_batch(embedder):
    batch = pictures(5)
    together = embedder.encode_candidates(batch)
    for i, picture in enumerate(batch):
        np.testing.assert_allclose(embedder.encode_candidates([picture])[0], together[i], atol=2e-5)
    np.testing.assert_allclose(embedder.encode_candidates(batch[::-1]), together[::-1], atol=2e-5)
    assert np.abs(together[0] - together[1]).max() > 1e-3
    texts = ["red", TEXT, TEXT + " beside a cat on a mat " * 4]
    queries = embedder.encode_queries(texts)
    for i, text in enumerate(texts):
        np.testing.assert_allclose(embedder.encode_queries([text])[0], queries[i], atol=2e-5)


def test_a_composed_query_differs_from_its_text_and_its_picture(embedder):
    picture = pictures(1)[0]
    composed, text, alone = embedder.encode_queries([TEXT, TEXT, None], [picture, None, picture])
    assert np.abs(composed - text).max() > 1e-3 and np.abs(composed - alone).max() > 1e-3


def test_a_query_needs_something_and_as_many_pictures_as_texts(embedder):
    with pytest.raises(CodesearchError, match="text, a picture or both"):
        embedder.encode_queries([None], [None])
    with pytest.raises(CodesearchError, match="1 query texts but 2 query pictures"):
        embedder.encode_queries([TEXT], pictures(2))


# -- each architecture's recipe ------------------------------------------------------------------------------


@pytest.mark.parametrize("architecture", ["clip"])
def test_clips_composed_vector_is_the_normalised_sum_of_its_features(embedder, tiny_clip_dir):
    import torch
    from transformers import CLIPModel, CLIPProcessor

    model, processor = CLIPModel.from_pretrained(tiny_clip_dir).eval(), CLIPProcessor.from_pretrained(tiny_clip_dir)
    picture = pictures(1)[0]
    with torch.inference_mode():
        text = model.get_text_features(**processor(text=[TEXT], padding=True, return_tensors="pt")).pooler_output
        image = model.get_image_features(**processor(images=[picture], return_tensors="pt")).pooler_output
    expected = torch.nn.functional.normalize(text + image, dim=-1)[0].numpy()
    composed, text_only, picture_only = embedder.encode_queries([TEXT, TEXT, None], [picture, None, picture])
    np.testing.assert_allclose(composed, expected, atol=1e-5)
    np.testing.assert_allclose(text_only, torch.nn.functional.normalize(text, dim=-1)[0].numpy(), atol=1e-5)
    np.testing.assert_allclose(picture_only, embedder.encode_candidates([picture])[0], atol=1e-6)


@pytest.mark.parametrize("architecture", ["clip"])
def test_clip_takes_77_positions_and_75_beside_a_picture(embedder, recorded):
    long = "red cat on a mat " * 40
    embedder.encode_queries([long])
    embedder.encode_queries([long], pictures(1))
    texts = [(call, output) for call, output in recorded.calls if "text" in call]
    assert [call["max_length"] for call, _ in texts] == [77, 75]
    assert [output["input_ids"].shape[1] for _, output in texts] == [77, 75]


@pytest.mark.parametrize("architecture", ["llava-next"])
def test_llava_next_prompts_are_bge_vl_mllms(embedder, recorded):
    picture = pictures(1)[0]
    embedder.encode_candidates([picture])
    embedder.encode_queries([TEXT, None, TEXT], [None, picture, picture])
    prompts = [call["text"][0] for call, _ in recorded.calls]
    instruct = LLAVA_NEXT_INSTRUCTIONS
    assert prompts == [
        "[INST]  <image> [/INST]",
        f"[INST] \n <instruct> {instruct['text']} <query>  {TEXT} \n [/INST]",
        f"[INST] \n <instruct> {instruct['picture']} <query>  <image> [/INST]",
        f"[INST] \n <instruct> {instruct['composed']} <query>  {TEXT} \n <image> [/INST]",
    ]
    tokenizer, image = embedder.processor.tokenizer, embedder.processor.image_token_id
    for (call, output), prompt in zip(recorded.calls, prompts):
        ids = output["input_ids"][0].tolist()
        assert collapsed(ids, image) == tokenizer(prompt)["input_ids"] and ids[0] == tokenizer.bos_token_id
        if call["images"]:  # every picture is 512x512 by then: 2x2 crops of 2x2 patches, unpadded, and the whole
            assert call["images"][0].size == (512, 512) and ids.count(image) == 4 * 4 + 4 + 4
    assert [call["images"] is None for call, _ in recorded.calls] == [False, True, False, False]


@pytest.mark.parametrize("architecture", ["llava-next"])
def test_llava_next_folders_without_patch_size_take_the_models(embedder, tiny_llava_next_dir, tmp_path):
    folder = tmp_path / "older"
    shutil.copytree(tiny_llava_next_dir, folder)
    config = json.loads((folder / "processor_config.json").read_text())
    for key in ("patch_size", "vision_feature_select_strategy", "num_additional_image_tokens"):
        config.pop(key, None)
    (folder / "processor_config.json").write_text(json.dumps(config))
    picture = pictures(1)[0]
    np.testing.assert_allclose(_load(folder).encode_candidates([picture]), embedder.encode_candidates([picture]),
                               atol=1e-6)


@pytest.mark.parametrize("architecture", ["qwen2.5-vl"])
def test_qwen_vl_prompts_follow_its_chat_template_in_qwen25s_ids(embedder, recorded):
    picture = pictures(1)[0]
    embedder.encode_candidates([picture])
    embedder.encode_queries([TEXT, None, TEXT], [None, picture, picture])
    vision = "<|vision_start|><|image_pad|><|vision_end|>"

    def prompt(system, user):
        return f"<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"

    prompts = [call["text"][0] for call, _ in recorded.calls]
    assert prompts == [prompt("You are a helpful assistant.", vision), prompt(QWEN_VL_INSTRUCTIONS["text"], TEXT),
                       prompt(QWEN_VL_INSTRUCTIONS["picture"], vision),
                       prompt(QWEN_VL_INSTRUCTIONS["composed"], vision + TEXT)]
    tokenizer = embedder.processor.tokenizer
    im_start, im_end, vision_start, vision_end, image_pad = 151644, 151645, 151652, 151653, 151655
    assert tokenizer.convert_tokens_to_ids(["<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                                            "<|image_pad|>"]) == [im_start, im_end, vision_start, vision_end, image_pad]
    text_ids = tokenizer(TEXT, add_special_tokens=False)["input_ids"]
    ids = recorded.calls[3][1]["input_ids"][0].tolist()
    assert collapsed(ids, image_pad) == tokenizer(prompts[3])["input_ids"]
    start, end = ids.index(vision_start), ids.index(vision_end)
    assert ids[:3] == [im_start] + tokenizer("system\n", add_special_tokens=False)["input_ids"]
    assert set(ids[start + 1:end]) == {image_pad} and end - start - 1 == 4 * 6 // 4  # 30x40 up to 56x84 px: 4x6 patches
    assert ids[end + 1:end + 1 + len(text_ids)] == text_ids and ids[end + 1 + len(text_ids)] == im_end
    assert ids[-3:] == [im_start] + tokenizer("assistant\n", add_special_tokens=False)["input_ids"]
    instruction = tokenizer(QWEN_VL_INSTRUCTIONS["composed"], add_special_tokens=False)["input_ids"]
    assert ids[3:3 + len(instruction)] == instruction and ids[3 + len(instruction)] == im_end
    assert "mm_token_type_ids" in recorded.calls[3][1]  # Qwen2.5-VL's 3-D positions need it


# -- loading ---------------------------------------------------------------------------------------------------


def test_a_missing_or_broken_folder_fails_to_load_in_one_line(tmp_path):
    with pytest.raises(CodesearchError, match="not found") as missing:
        load_vision_embedder(VisionSpec(name="gone", source=str(tmp_path / "gone"), architecture="clip"))
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "config.json").write_text(json.dumps({"model_type": "clip"}))
    with pytest.MonkeyPatch.context() as patch, pytest.raises(CodesearchError, match="cannot load") as broken:
        patch.delenv("HF_HUB_OFFLINE", raising=False)
        load_vision_embedder(resolve_vision_model(str(tmp_path / "empty")), device="cpu")
    assert "\n" not in str(missing.value) and "\n" not in str(broken.value)


def test_an_unreachable_hub_fails_fast_in_words_for_a_vision_model(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # the discard port: refused at once
    spec = VisionSpec(name="nobody-here/no-such-vision-model", source="nobody-here/no-such-vision-model",
                      architecture="qwen2.5-vl")
    started = time.monotonic()
    for step in (pin_vision_model, load_vision_embedder):
        with pytest.raises(CodesearchError, match="name its folder instead") as raised:
            step(spec)
        assert "\n" not in str(raised.value) and "--model" not in str(raised.value)
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("architecture", ["clip"])
def test_a_batch_too_large_for_the_device_is_embedded_in_halves(embedder, monkeypatch):
    import torch

    batch = pictures(5)
    expected = embedder.encode_candidates(batch)
    forward, sizes = embedder._clip_vectors, []

    def short_of_memory(role, kind, texts, pictures):
        sizes.append(len(pictures))
        if len(pictures) > 2:
            raise torch.OutOfMemoryError("CUDA out of memory")
        return forward(role, kind, texts, pictures)

    monkeypatch.setattr(embedder, "_clip_vectors", short_of_memory)
    np.testing.assert_allclose(embedder.encode_candidates(batch), expected, atol=1e-6)
    assert sizes == [5, 2, 3, 1, 2]
    monkeypatch.setattr(embedder, "_clip_vectors", lambda *args: short_of_memory("candidate", "picture", [], batch))
    with pytest.raises(CodesearchError, match="out of cpu memory embedding one picture"):
        embedder.encode_candidates(batch[:1])


@pytest.mark.parametrize("asked", [False, True])
def test_trust_remote_code_is_passed_only_when_asked(request, architecture, monkeypatch, asked):
    import transformers
    from transformers.processing_utils import ProcessorMixin

    calls = []

    def recording(owner, label):
        original = owner.from_pretrained.__func__

        def from_pretrained(cls, *args, **kwargs):
            calls.append((label, kwargs.get("trust_remote_code")))
            return original(cls, *args, **kwargs)

        monkeypatch.setattr(owner, "from_pretrained", classmethod(from_pretrained))

    recording(transformers.AutoImageProcessor, "image processor")
    recording(ProcessorMixin, "processor")
    recording(transformers.PreTrainedModel, "model")
    _load(request.getfixturevalue(FOLDERS[architecture]), trust_remote_code=asked)
    assert sorted(calls) == [("image processor", asked), ("model", asked), ("processor", asked)]
