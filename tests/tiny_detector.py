"""A tiny randomly initialised OWLv2 / OWL-ViT, saved like a real checkpoint (offline)."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from open_clip.tokenizer import bytes_to_unicode, default_bpe
from torch.nn.modules.module import register_module_forward_hook

PATCHES = 8  # per side of the tiny detectors' 64x64 input


def clip_tokenizer() -> object:
    """A CLIP tokenizer with the first merges of open_clip's bundled English BPE (offline)."""
    from transformers import CLIPTokenizer

    with gzip.open(default_bpe()) as bpe:
        lines = bpe.read().decode("utf-8").split("\n")[1:2001]
    merges = [tuple(line.split()) for line in lines]
    symbols = list(bytes_to_unicode().values())
    vocab = [*symbols, *(symbol + "</w>" for symbol in symbols)]
    vocab += ["".join(merge) for merge in merges] + ["<|startoftext|>", "<|endoftext|>"]
    return CLIPTokenizer(
        vocab={token: i for i, token in enumerate(vocab)},
        merges=merges,  # type: ignore[arg-type]
        model_max_length=16,
    )


def build_tiny_detector(folder: Path, model_type: str) -> Path:
    """A randomly initialised OWLv2 / OWL-ViT saved like a real checkpoint.

    Its box head outputs zero, so every box is its patch's cell (1/8 of the
    model's input per side), and its logit scale spreads scores over (0, 1).
    """
    import transformers

    tokenizer = clip_tokenizer()
    size = len(tokenizer)  # type: ignore[arg-type]
    text = {
        "vocab_size": size,
        "hidden_size": 32,
        "intermediate_size": 37,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "max_position_embeddings": 16,
        "bos_token_id": size - 2,
        "eos_token_id": size - 1,
        "pad_token_id": size - 1,
    }
    vision = {
        "image_size": 64,
        "patch_size": 64 // PATCHES,
        "hidden_size": 32,
        "intermediate_size": 37,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
    }
    prefix = {"owlv2": "Owlv2", "owlvit": "OwlViT"}[model_type]
    config = getattr(transformers, f"{prefix}Config")(
        text_config=text, vision_config=vision, projection_dim=32
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = getattr(transformers, f"{prefix}ForObjectDetection")(config)
    with torch.no_grad():
        model.box_head.dense2.weight.zero_()
        model.box_head.dense2.bias.zero_()
        model.class_head.logit_scale.bias.fill_(3.0)
    image_processor = getattr(transformers, f"{prefix}ImageProcessor")(
        size={"height": 64, "width": 64}, crop_size={"height": 64, "width": 64}
    )
    processor = getattr(transformers, f"{prefix}Processor")(
        image_processor=image_processor, tokenizer=tokenizer
    )
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@contextmanager
def prompts_scored() -> Iterator[list[int]]:
    """How many prompts each detection in this process scored: the last dimension of an
    OWLv2 / OWL-ViT detector's logits (a score per patch and prompt), read from the
    model's output by a torch hook."""
    counts: list[int] = []

    def record(module: torch.nn.Module, args: object, output: object) -> None:
        if type(module).__name__.endswith("ForObjectDetection"):
            counts.append(output.logits.shape[-1])  # type: ignore[attr-defined]

    handle = register_module_forward_hook(record)
    try:
        yield counts
    finally:
        handle.remove()
