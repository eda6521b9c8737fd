"""Pictures and questions about them as unit vectors: BAAI's multimodal embedders, run as BAAI runs them
(vision_recipes.py says how, with its sources), through transformers' own classes, never remote code.

Presets:
  bge-vl-base        BAAI/BGE-VL-base       CLIP: CLIPModel and CLIPProcessor
  bge-vl-v1.5        BAAI/BGE-VL-v1.5-zs    LLaVA-NeXT (llava-v1.6-mistral-7b): LlavaNextForConditionalGeneration
                                            and LlavaNextProcessor; -zs rather than -mmeb, see vision_recipes
  bge-vl-screenshot  BAAI/BGE-VL-Screenshot Qwen2.5-VL-3B: Qwen2_5_VLForConditionalGeneration and Qwen2.5-VL's
                                            processor, without its video half (which needs torchvision)
A local folder is accepted too, its architecture read from config.json's model_type.

A candidate is a picture alone (an image, or a rendered page); a query is a text, a picture, or both (a
composed query). The models' remote classes (LLaVANextForEmbedding, BGE_VL_Screenshot) are their base
classes with a prompt builder and a pooled forward; vision_recipes rebuilds the prompts, and the pooling
is done here on the base model's last hidden state. A VisionSpec's fingerprint names everything that moves
a candidate vector. torch, transformers and PIL are imported only when a model loads.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from codesearch import hardware, settings
from codesearch.embedding.prompts import read_json
from codesearch.embedding.vision_recipes import (
    ARCHITECTURES, CLIP_COMPOSED_TEXT_MARGIN, MODEL_TYPES, PICTURE_SETTINGS, PROMPTS, VISION_RECIPE_VERSION,
    instruction_for, prepared_picture, query_kind,
)
from codesearch.embedding.weights import folder_digest, local_source
from codesearch.errors import CodesearchError, first_line

if TYPE_CHECKING:
    import numpy as np
    from PIL.Image import Image


@dataclass(frozen=True)
class VisionSpec:
    name: str  # what was asked: a preset, a folder or a hub id
    source: str  # hub id or local directory handed to transformers
    architecture: str  # "clip", "llava-next" or "qwen2.5-vl"
    revision: str | None = None
    trust_remote_code: bool = False
    # Set by pin_vision_model before indexing: the weights' identity and the dtype vectors are computed in.
    weights: str = ""
    dtype: str = ""

    @property
    def fingerprint(self) -> str:
        """Identifies everything that changes a candidate vector: the model, its architecture's recipe (the
        prompt, the picture's preparation), the weights and the dtype once pinned. The folder's processor
        files are in the weights' identity (folder_digest reads every .json; a hub commit names them all)."""
        parts = [self.name, self.revision or "", self.architecture, VISION_RECIPE_VERSION,
                 PICTURE_SETTINGS.get(self.architecture, ""), self.weights, self.dtype]
        if self.trust_remote_code:  # a folder's own tokenizer or image processor code may run
            parts.append("trust-remote-code")
        return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


VISION_PRESETS: dict[str, VisionSpec] = {
    "bge-vl-base": VisionSpec(name="bge-vl-base", source="BAAI/BGE-VL-base", architecture="clip"),
    "bge-vl-v1.5": VisionSpec(name="bge-vl-v1.5", source="BAAI/BGE-VL-v1.5-zs", architecture="llava-next"),
    "bge-vl-screenshot": VisionSpec(name="bge-vl-screenshot", source="BAAI/BGE-VL-Screenshot",
                                    architecture="qwen2.5-vl"),
}
_HUB_ID = re.compile(r"[\w.-]+/[\w.-]+")


def resolve_vision_model(name: str, trust_remote_code: bool = False) -> VisionSpec:
    """A VisionSpec for a preset, a preset's hub id, a local model folder or a hub id in the local cache.
    Nothing is loaded: a folder's config.json is read for its architecture."""
    name = (name or "").strip()
    presets = ", ".join(VISION_PRESETS)
    by_source = {preset.source.lower(): preset for preset in VISION_PRESETS.values()}
    if name in VISION_PRESETS:
        spec = VISION_PRESETS[name]
    elif name.lower() in by_source:
        spec = replace(by_source[name.lower()], name=name)
    elif name and Path(name).expanduser().is_dir():
        folder = Path(name).expanduser().resolve()
        spec = VisionSpec(name=name, source=str(folder), architecture=_architecture(folder, name))
    elif not name:
        raise CodesearchError(f"no vision model named; use one of: {presets}, or a model folder")
    elif Path(name).expanduser().exists() or name.startswith((".", "/", "~")) or not _HUB_ID.fullmatch(name):
        raise CodesearchError(f"vision model {name!r:.80} is not a preset ({presets}) nor a model folder")
    else:
        snapshot = _cached_snapshot(name)
        if snapshot is None:
            raise CodesearchError(f"vision model {name!r:.80} is not a preset ({presets}) and is not in the local "
                                  "Hugging Face cache; download it, or pass its folder")
        spec = VisionSpec(name=name, source=name, architecture=_architecture(snapshot, name))
    return replace(spec, trust_remote_code=True) if trust_remote_code else spec


def _architecture(folder: Path, name: str) -> str:
    config = read_json(folder / "config.json")
    model_type = config.get("model_type") if isinstance(config, dict) else None
    if not model_type:
        raise CodesearchError(f"vision model {name!r:.80} has no config.json with a model_type")
    if model_type not in MODEL_TYPES:
        raise CodesearchError(f"vision model {name!r:.80} is a {model_type!r:.40} model; supported: "
                              f"{', '.join(MODEL_TYPES)}")
    return MODEL_TYPES[model_type]


def _cached_snapshot(source: str) -> Path | None:
    """The hub model's folder in the local cache, if it is there (no network)."""
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(source, local_files_only=True))
    except Exception:  # noqa: BLE001 - not cached, a malformed id, no hub client
        return None


def pin_vision_model(spec: VisionSpec) -> VisionSpec:
    """The spec with which weights (a folder's digest, or the hub snapshot's commit, fetched first when it
    is not cached, as loading would) and which dtype (bf16 on a GPU, hardware.planned_dtype; float32 on a
    CPU) its candidate vectors are computed in. Run before indexing: both are in the fingerprint."""
    if Path(spec.source).is_dir():
        weights = "folder:" + folder_digest(Path(spec.source))
    else:
        weights = "hub:" + Path(_local_source(spec)).name  # the hub cache's snapshots/<commit>
    return replace(spec, weights=weights, dtype=spec.dtype or _default_dtype(hardware.default_device()))


def _local_source(spec: VisionSpec) -> str:
    """weights.local_source, its way out worded for a vision model (it names the text models' flags)."""
    try:
        return local_source(spec)
    except CodesearchError:
        if not settings.hub_offline():  # the download itself failed: its own words say why
            raise
        raise CodesearchError(f"vision model {spec.source!r} is not in the local cache and the Hugging Face hub "
                              f"cannot be reached; download it where there is network (huggingface-cli download "
                              f"{spec.source}) and name its folder instead") from None


def _default_dtype(device: str) -> str:
    return hardware.planned_dtype(device) if device.startswith("cuda") else "float32"


def load_vision_embedder(spec: VisionSpec, device: str | None = None) -> VisionEmbedder:
    """Load the processor and weights; fail within seconds, in one line, when they cannot be had."""
    if spec.architecture not in ARCHITECTURES:
        raise CodesearchError(f"unknown vision architecture {spec.architecture!r:.40}")
    if spec.source.startswith((".", "/", "~")) and not Path(spec.source).expanduser().is_dir():
        raise CodesearchError(f"vision model folder not found: {spec.source}")
    source = _local_source(spec)
    import torch
    import transformers
    from transformers.utils import logging as transformers_logging

    if int(transformers.__version__.split(".")[0]) < 5:  # the base models' .model, PIL backends, token types
        raise CodesearchError(f"vision models need transformers 5 or later (this is {transformers.__version__}); "
                              "pip install -U 'transformers>=5'")
    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()
    device = device or hardware.default_device()
    settings.tokenizer_threads(parallel=device.startswith("cuda"))
    dtype = getattr(torch, spec.dtype or _default_dtype(device))
    options = {"revision": spec.revision, "trust_remote_code": spec.trust_remote_code}
    try:
        processor = _load_processor(spec.architecture, source, options)
        model = _model_class(spec.architecture).from_pretrained(source, dtype=dtype, **options)
    except (OSError, ValueError, TypeError, KeyError, ImportError, RuntimeError) as error:
        raise CodesearchError(f"cannot load vision model {spec.name!r}: {first_line(error)}") from None
    model.to(device).eval()
    tokenizer = processor.tokenizer
    tokenizer.padding_side = "right"  # pooled at the last attended position: a row is the same alone
    config = model.config
    if spec.architecture == "clip":
        dim = int(config.projection_dim)
    else:
        dim = int(config.text_config.hidden_size)
    if spec.architecture == "llava-next" and getattr(processor, "patch_size", None) is None:
        # A processor saved before transformers put these in processor_config.json: the model's own values,
        # and the vision tower's CLS (llava-hf's llava-v1.6 processors say num_additional_image_tokens 1).
        processor.patch_size = config.vision_config.patch_size
        processor.vision_feature_select_strategy = config.vision_feature_select_strategy
        processor.num_additional_image_tokens = 1
    return VisionEmbedder(spec, model, processor, device, dim, 32 if device.startswith("cuda") else 8)


def _model_class(architecture: str):
    import transformers

    return {"clip": transformers.CLIPModel, "llava-next": transformers.LlavaNextForConditionalGeneration,
            "qwen2.5-vl": transformers.Qwen2_5_VLForConditionalGeneration}[architecture]


def _load_processor(architecture: str, source: str, options: dict):
    """The folder's own processor, its image half in transformers' PIL backend (as transformers 4.45 ran
    it, with or without torchvision)."""
    from transformers import AutoImageProcessor, CLIPProcessor, LlavaNextProcessor

    image_processor = AutoImageProcessor.from_pretrained(source, backend="pil", **options)
    processor_class = {"clip": CLIPProcessor, "llava-next": LlavaNextProcessor,
                       "qwen2.5-vl": pictures_only_qwen_processor()}[architecture]
    return processor_class.from_pretrained(source, image_processor=image_processor, **options)


@cache
def pictures_only_qwen_processor():
    """Qwen2_5_VLProcessor without a video processor: transformers cannot build one without torchvision,
    and pictures never need it. Its image tokens, their expansion and its outputs are Qwen2_5_VLProcessor's."""
    from transformers import Qwen2_5_VLProcessor
    from transformers.processing_utils import ProcessorMixin

    class PicturesOnlyQwen2_5_VLProcessor(Qwen2_5_VLProcessor):
        def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
            self.image_token = getattr(tokenizer, "image_token", None) or "<|image_pad|>"
            self.video_token = getattr(tokenizer, "video_token", None) or "<|video_pad|>"
            self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)
            self.video_token_id = tokenizer.convert_tokens_to_ids(self.video_token)
            ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template)

    return PicturesOnlyQwen2_5_VLProcessor


class VisionEmbedder:
    """A loaded model. encode_candidates and encode_queries return float32 (n, dim) unit rows, in the
    order given, computed batch by batch on the device in the spec's dtype."""

    def __init__(self, spec: VisionSpec, model, processor, device: str, dim: int, batch_size: int):
        self.spec, self.model, self.processor = spec, model, processor
        self.device, self.dim, self.batch_size = device, dim, batch_size

    def encode_candidates(self, pictures: list[Image]) -> np.ndarray:
        return self._encode("candidate", [(None, picture) for picture in pictures])

    def encode_queries(self, texts: list[str | None], pictures: list[Image | None] | None = None) -> np.ndarray:
        """A text alone, a picture alone, or a picture with a text (composed), each in its kind's prompt."""
        pictures = [None] * len(texts) if pictures is None else list(pictures)
        if len(pictures) != len(texts):
            raise CodesearchError(f"{len(texts)} query texts but {len(pictures)} query pictures")
        if any(not text and picture is None for text, picture in zip(texts, pictures)):
            raise CodesearchError("a query needs a text, a picture or both")
        return self._encode("query", [(text or None, picture) for text, picture in zip(texts, pictures)])

    def _encode(self, role: str, items: list) -> np.ndarray:
        import numpy as np

        import torch

        output = np.zeros((len(items), self.dim), dtype=np.float32)
        # Queries of one kind share a prompt and a path through the model: batched together.
        groups: dict[str, list[int]] = {}
        for index, (text, picture) in enumerate(items):
            groups.setdefault(query_kind(text, picture is not None), []).append(index)
        with torch.inference_mode():
            for kind, indices in groups.items():
                for start in range(0, len(indices), self.batch_size):
                    batch = indices[start:start + self.batch_size]
                    output[batch] = self._within_memory(role, kind, [items[i] for i in batch])
        return output

    def _within_memory(self, role: str, kind: str, items: list) -> np.ndarray:
        """One batch's unit vectors; a device out of memory gets it in halves (a page of 16k visual tokens
        weighs as much as a batch of small pictures)."""
        import numpy as np

        import torch

        texts = [text for text, _ in items]
        pictures = [prepared_picture(self.spec.architecture, picture) for _, picture in items if picture is not None]
        forward = self._clip_vectors if self.spec.architecture == "clip" else self._decoder_vectors
        try:
            vectors = forward(role, kind, texts, pictures)
            return torch.nn.functional.normalize(vectors.float(), dim=-1).cpu().numpy()
        except torch.OutOfMemoryError:
            if len(items) == 1:
                raise CodesearchError(f"out of {self.device} memory embedding one {kind}; free the device or "
                                      "give smaller pictures") from None
        if self.device.startswith("cuda"):
            torch.cuda.empty_cache()
        half = len(items) // 2
        return np.concatenate([self._within_memory(role, kind, items[:half]),
                               self._within_memory(role, kind, items[half:])])

    def _on_device(self, inputs) -> dict:
        """Processor outputs on the device; floating ones (pixels) in the model's dtype."""
        dtype = self.model.dtype
        return {key: value.to(self.device, dtype=dtype) if value.is_floating_point() else value.to(self.device)
                for key, value in inputs.items()}

    def _clip_vectors(self, role: str, kind: str, texts: list, pictures: list):
        """BGE-VL-CLIP's encode: the projected pooled outputs, summed for a composed query (normalised by
        the caller, as encode_multimodal normalises the sum)."""
        features = 0
        if pictures:
            pixels = self._on_device(self.processor(images=pictures, return_tensors="pt"))
            features = features + _projected(self.model.get_image_features(pixel_values=pixels["pixel_values"]))
        if role == "query" and kind != "picture":
            limit = int(self.model.config.text_config.max_position_embeddings)
            if kind == "composed":
                limit -= CLIP_COMPOSED_TEXT_MARGIN
            tokens = self._on_device(self.processor(text=texts, padding=True, truncation=True, max_length=limit,
                                                    return_tensors="pt"))
            features = features + _projected(self.model.get_text_features(**tokens))
        return features

    def _decoder_vectors(self, role: str, kind: str, texts: list, pictures: list):
        """The language model's last hidden state at each row's last token, the prompt built as the recipe
        says; the base model's forward skips lm_head, which the remote classes never apply either."""
        from codesearch.embedding.torch_model import pool

        instruction = instruction_for(self.spec.architecture, kind) if role == "query" else None
        prompt = PROMPTS[self.spec.architecture]
        prompts = [prompt(role, text, bool(pictures), instruction) for text in texts]
        inputs = self.processor(text=prompts, images=pictures or None, padding=True, return_tensors="pt")
        inputs = self._on_device(inputs)
        hidden = self.model.model(**inputs, use_cache=False).last_hidden_state
        return pool(hidden, inputs["attention_mask"], "last_token")


def _projected(output):
    """transformers 5 returns the projected features as the output's pooler_output, 4.x as a tensor."""
    return getattr(output, "pooler_output", output)
