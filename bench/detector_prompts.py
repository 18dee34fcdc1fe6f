"""What each prompt costs the open-vocabulary detector, per query photo.

    python bench/detector_prompts.py [--prompts 4 32 256 1003] [--rounds 3]

An OWLv2 of the size of google/owlv2-base-patch16-ensemble (ViT-B/16 at 960 px,
text transformer of width 512, 16 tokens a prompt), built from its config with
random weights (no download; time does not depend on the weights), run through
DetectorRegions.detect on one 512-pixel dataset photo with N prompts, and its
text transformer alone on the same N prompts (what caching text embeddings per
prompt set would save). The tokenizer is a small CLIP BPE (the tests'), which
changes the embedding table's size only. Needs the machine to itself.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
import transformers
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _support import conditions, dataset_jpegs, median

from retrieval.config import RegionConfig
from retrieval.regions import DetectorRegions
from tests import factories
from tests.tiny_detector import clip_tokenizer


def base_sized_owlv2(folder: Path) -> Path:
    tokenizer = clip_tokenizer()
    size = len(tokenizer)  # type: ignore[arg-type]
    text = {"vocab_size": size, "bos_token_id": size - 2, "eos_token_id": size - 1}
    config = transformers.Owlv2Config(
        text_config={**text, "pad_token_id": size - 1},
        vision_config={"image_size": 960, "patch_size": 16},
    )
    transformers.Owlv2ForObjectDetection(config).save_pretrained(folder)
    image_processor = transformers.Owlv2ImageProcessor(size={"height": 960, "width": 960})
    transformers.Owlv2Processor(
        image_processor=image_processor, tokenizer=tokenizer
    ).save_pretrained(folder)
    return folder


def timed(call: Callable[[], object], rounds: int) -> float:
    call()  # warm-up
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return median(times)


def measure(model: str, photo: Image.Image, count: int, rounds: int) -> tuple[float, float]:
    """Median seconds of one detection with ``count`` prompts, and of its text encoder."""
    config = RegionConfig(
        kind="detector", detector_model=model, device="cpu", detector_max_prompts=count
    )
    detector = DetectorRegions.from_config(config)
    categories = [f"thing {i}" for i in range(count)]
    prompts = detector.prompts(categories)
    assert len(prompts) == count
    processor = transformers.Owlv2Processor.from_pretrained(model)
    owlv2 = transformers.Owlv2ForObjectDetection.from_pretrained(model).owlv2.eval()
    text = processor(text=[prompts], return_tensors="pt", padding="max_length")

    def encode_text() -> None:
        with torch.inference_mode():
            owlv2.get_text_features(text["input_ids"], text["attention_mask"])

    return timed(lambda: detector.detect(photo, categories), rounds), timed(encode_text, rounds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prompts", type=int, nargs="+", default=[4, 32, 256, 1003])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    photo = Image.open(factories.io_bytes(dataset_jpegs(1)[0])).convert("RGB")
    with tempfile.TemporaryDirectory() as folder:
        model = str(base_sized_owlv2(Path(folder)))
        print(conditions(model="owlv2-base-sized random weights", photo=photo.size))
        for count in args.prompts:
            whole, text = measure(model, photo, count, args.rounds)
            print(f"{count:5d} prompts: detect {whole:.2f} s per photo, text encoder {text:.3f} s")


if __name__ == "__main__":
    main()
