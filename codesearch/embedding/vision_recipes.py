"""What BAAI's multimodal embedders are given, per architecture: the prompt around a text and a picture, the
task instruction of each kind of query, and how a picture is prepared. vision.py runs the models on it.

Each point follows how BAAI runs the model, with its source; where none could be found it says so, and
what was chosen instead. Sources are public: FlagOpen/FlagEmbedding (FE), VectorSpaceLab/MegaPairs (MP) and
the Hugging Face model repositories (hub); `flag_mmret.py` and `flag_dataset.py` live in FE and MP under
research/BGE_VL/eval/ (FE) or eval/ (MP).

CLIP (bge-vl-base, BAAI/BGE-VL-base; FE research/BGE_VL/modeling_MMRet_CLIP.py, README.md, retrieval_demo.ipynb)
  picture   normalize(visual_projection(vision pooled output)): encode_image; CLIPProcessor(images=...), the
            picture converted to RGB (data_process).
  text      normalize(text_projection(text pooled output)): encode_text; CLIPProcessor(text=..., padding=True).
  composed  normalize(text_features + image_features), both unnormalised: encode_multimodal.
  no instruction, no prompt: the text goes in as it is.
  length    data_process does not truncate (a text over 77 tokens fails there); the evaluation does:
            encode_text truncates to max_length=77 and the composed query's caption to 75
            (flag_mmret.py, flag_dataset.py MMIT_Collator caption_max_len=75). We truncate as the evaluation.

LLaVA-NeXT (bge-vl-v1.5, BAAI/BGE-VL-v1.5-zs; built on llava-v1.6-mistral-7b like BGE-VL-MLLM-S1/S2)
  usage     FE research/BGE_VL/README.md and Tutorials/1_Embedding/1.2.6_BGE_VL.ipynb ("use BGE-VL-v1.5
            models in the exact same way as BGE-VL-MLLM"), FE docs/source/bge/bge_vl.rst:
            data_process(text, images, q_or_c="q"/"c", task_instruction=...), then
            model(**inputs, output_hidden_states=True)[:, -1, :] and L2 normalisation.
  template  the hub's remote code, class LLaVANextForEmbedding (prepare_text_input / data_process), read
            in a public copy (code index file 55992671731; the index names no repository): a query is
            "[INST] \\n <instruct> {instruction} <query> " + " {text} \\n" (if text) + " <image>" (if a
            picture) + " [/INST]"; a candidate "[INST] " + " {text} \\n" (if text) + " <image>" + " [/INST]",
            spaces as written (llava_next_prompt). The picture's tokens come after the text; the processor's
            tokenizer puts its BOS first. bge_vl.rst writes the same order: <instruct>{task_inst}
            <query>{q_t}{q_i}[EOS], "the normalized last hidden state" pooled.
  picture   every picture is resized to 512x512, then converted to RGB, before LlavaNextProcessor
            (data_process: Image.open(...).resize((512,512)).convert("RGB")); the processor is the folder's
            own (set_processor: LlavaNextProcessor.from_pretrained(model_name), nothing overridden), so
            anyres follows its image_grid_pinpoints and crop size (llava-v1.6-mistral-7b: 336 crops, pinpoints
            up to 672x672; a 512x512 picture takes the 672x672 grid: 4 crops and the whole picture).
  pooling   the last position, [:, -1, :], of the language model's last hidden state (the remote forward
            returns MistralForCausalLM's hidden states, before lm_head); the processor pads on the left (a
            third party's pinned BGE-VL-MLLM-S1 snapshot asserts padding_side == "left", code index file
            61504048304). We pad on the right and pool the last attended position: the same vector (RoPE sees
            relative positions only), and a picture embeds the same alone and in a batch.
  dtype     the README loads the model without a dtype (float32) and calls .cuda(); we use pin's dtype.
  -zs, not -mmeb: BGE-VL-v1.5-zs is BGE-VL-MLLM-S1 trained further on MegaPairs and BAAI's extra
            multi-task data only; -mmeb is that model fine-tuned on MMEB's training sets (MP README.md,
            FE bge_vl.rst). codesearch's pictures and questions are none of MMEB's tasks, so the zero-shot
            model, chosen for how it generalises, fits them better than one fitted to a benchmark.
  instructions: BAAI documents one, for composed image retrieval (README.md; the remote code's
            task_instruction_example_cir). For other tasks the remote code says "Instructions for other
            tasks can be referenced in the MMEB benchmark"; we take MMEB's for text-to-image (MSCOCO_t2i)
            and image-to-image (NIGHTS), as vllm-project/vllm's examples/offline_inference/
            vision_language_embedding.py writes them for VLM2Vec (MMEB's reference model).

Qwen2.5-VL (bge-vl-screenshot, BAAI/BGE-VL-Screenshot; UniSE-MLLM's successor, FE research/BGE_VL_Screenshot)
  usage     README.md: data_process(images, text, q_or_c="query"/"candidate", task_instruction="Represent the
            given image with the given query."), embeddings = model(**inputs), scores = their product: the
            model returns the embeddings itself (hub modeling_bge_vl_screenshot.py, class BGE_VL_Screenshot
            (Qwen2_5_VLForConditionalGeneration); marsh123/UniSE-MLLM modeling_qwen2vl_for_embedding.py,
            Qwen2VLForEmbedding). Only the first lines of those files could be read here: their prompt,
            pooling and processor settings were NOT found. Chosen instead, from what the base checkpoint
            (Qwen2.5-VL-3B-Instruct) documents and BAAI's other MLLM embedders do:
  template  Qwen2.5-VL's chat template, rendered as text (qwen_vl_prompt): "<|im_start|>system\\n{system}
            <|im_end|>\\n<|im_start|>user\\n" + "<|vision_start|><|image_pad|><|vision_end|>" (if a picture)
            + text + "<|im_end|>\\n<|im_start|>assistant\\n"; the picture before the text, as the template
            orders an image item before a text item. The system turn is the task instruction for a query
            and the template's default, "You are a helpful assistant.", for a candidate.
  pooling   last token (the generation prompt's last), L2-normalised, as BGE-VL-MLLM and other Qwen2-VL
            embedders do; right padding, pooled at the last attended position.
  picture   RGB, then the folder's own image processor as it is saved (min_pixels/max_pixels not
            overridden, as BAAI's set_processor does for BGE-VL-MLLM). With Qwen2.5-VL's defaults a picture
            takes up to 16384 visual tokens: render pages at a bounded size.
  instructions: the README's, for a picture with a question; for a text alone and a picture alone none is
            documented and these are codesearch's choice (QWEN_VL_INSTRUCTIONS).

Every architecture: pictures through the PIL image processors (transformers' backend="pil"), the ones
transformers 4.45 (BAAI's tested version, the READMEs) ran, whether or not torchvision is installed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PIL.Image import Image

# Part of every vision fingerprint: a change here that moves a candidate vector must change this too.
VISION_RECIPE_VERSION = "bge-vl-recipes/v1"

ARCHITECTURES = ("clip", "llava-next", "qwen2.5-vl")
# config.json's model_type for each architecture.
MODEL_TYPES = {"clip": "clip", "llava_next": "llava-next", "qwen2_5_vl": "qwen2.5-vl"}

LLAVA_PICTURE_SIZE = (512, 512)
# What prepares a picture beyond the folder's own processor files (those are in the weights' identity).
PICTURE_SETTINGS = {
    "clip": "rgb/processor-pil",
    "llava-next": f"resize-{LLAVA_PICTURE_SIZE[0]}x{LLAVA_PICTURE_SIZE[1]}/rgb/processor-pil-anyres",
    "qwen2.5-vl": "rgb/processor-pil-min-max-pixels",
}

# CLIP's text tower takes 77 positions; BAAI's evaluation cuts a composed query's caption at 75.
CLIP_COMPOSED_TEXT_MARGIN = 2

QUERY_KINDS = ("text", "picture", "composed")

LLAVA_NEXT_INSTRUCTIONS = {
    # MMEB MSCOCO_t2i, as VLM2Vec is prompted (vllm examples/offline_inference/vision_language_embedding.py).
    "text": "Find me an everyday image that matches the given caption: ",
    # MMEB NIGHTS, ibid.
    "picture": "Find a day-to-day image that looks similar to the provided image.",
    # BAAI's composed image retrieval instruction (research/BGE_VL/README.md, the remote code).
    "composed": "Retrieve the target image that best meets the combined criteria by using both the provided "
                "image and the image retrieval instructions: ",
}
QWEN_VL_INSTRUCTIONS = {
    "text": "Find the screenshot that answers the given query.",  # codesearch's choice: none documented
    "picture": "Find a screenshot that looks similar to the given screenshot.",  # codesearch's choice
    "composed": "Represent the given image with the given query.",  # research/BGE_VL_Screenshot/README.md
}
QWEN_VL_DEFAULT_SYSTEM = "You are a helpful assistant."  # Qwen2.5-VL's chat template, when no system turn
QWEN_VL_PICTURE = "<|vision_start|><|image_pad|><|vision_end|>"
LLAVA_NEXT_PICTURE = "<image>"


def query_kind(text: str | None, has_picture: bool) -> str:
    """"text", "picture" or "composed" (a picture with a text)."""
    if has_picture:
        return "composed" if text else "picture"
    return "text"


def instruction_for(architecture: str, kind: str) -> str | None:
    """The task instruction of a query of this kind; CLIP takes none."""
    if architecture == "llava-next":
        return LLAVA_NEXT_INSTRUCTIONS[kind]
    if architecture == "qwen2.5-vl":
        return QWEN_VL_INSTRUCTIONS[kind]
    return None


def llava_next_prompt(role: str, text: str | None, has_picture: bool, instruction: str | None = None) -> str:
    """The text LLaVANextForEmbedding.prepare_text_input builds, space for space: role "query" or
    "candidate"; the processor expands <image> into the picture's tokens."""
    if role == "query" and instruction is None:
        prompt = "[INST] \n <instruct>  <query>"
    elif role == "query":
        prompt = f"[INST] \n <instruct> {instruction} <query> "
    else:
        prompt = "[INST] "
    if text is not None:
        prompt = f"{prompt} {text} \n"
    if has_picture:
        prompt = f"{prompt} {LLAVA_NEXT_PICTURE}"
    return f"{prompt} [/INST]"


def qwen_vl_prompt(role: str, text: str | None, has_picture: bool, instruction: str | None = None) -> str:
    """Qwen2.5-VL's chat template for a system turn and one user turn (a picture, then the text), with the
    generation prompt: the instruction is a query's system turn, a candidate has the default one."""
    system = instruction if role == "query" and instruction else QWEN_VL_DEFAULT_SYSTEM
    user = (QWEN_VL_PICTURE if has_picture else "") + (text or "")
    return (f"<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n"
            "<|im_start|>assistant\n")


PROMPTS = {"llava-next": llava_next_prompt, "qwen2.5-vl": qwen_vl_prompt}


def prepared_picture(architecture: str, picture: Image) -> Image:
    """A picture as the recipe hands it to the processor: LLaVA-NeXT's resized to 512x512 first, then
    every one in RGB (a PNG with alpha or a palette otherwise reaches the processor as it is)."""
    if architecture == "llava-next":
        picture = picture.resize(LLAVA_PICTURE_SIZE)
    return picture.convert("RGB")
