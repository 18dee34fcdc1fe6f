"""An in-process multimodal LLM through transformers (Qwen2-VL, LLaVA, Idefics3, ...)."""

from __future__ import annotations

import logging
import re
import threading
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from transformers import (
    AutoModelForImageTextToText,
    AutoProcessor,
    StoppingCriteria,
    StoppingCriteriaList,
    TextIteratorStreamer,
)

from retrieval.config import GeneratorConfig
from retrieval.devices import resolve_device
from retrieval.errors import GeneratorUnavailable, ModelLoadError
from retrieval.generators.base import Generation, GenerationOptions, Stream, Usage
from retrieval.prompt import Prompt, to_transformers_conversation

logger = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


class TransformersGenerator:
    """A model and its processor on one device; generations run one at a time.

    The chat template is the processor's own. Build it with ``from_config``.
    """

    name = "transformers"
    supports_tools = False  # answers memory "read" only: no tool calling in process

    def __init__(
        self,
        *,
        model: Any,
        processor: Any,
        model_id: str,
        device: torch.device,
        dtype: torch.dtype,
        image_max_side: int,
    ) -> None:
        self._model = model
        self._processor = processor
        self._tokenizer = processor.tokenizer
        self.model = model_id
        self._device = device
        self._dtype = dtype
        self._image_max_side = image_max_side
        self._lock = threading.Lock()
        self._sanitize = True
        eos = model.generation_config.eos_token_id
        self._eos_ids = set(eos if isinstance(eos, list) else [eos])

    @classmethod
    def from_config(cls, config: GeneratorConfig) -> TransformersGenerator:
        """Load the model and processor, or raise ModelLoadError saying why."""
        if not config.model:
            raise ModelLoadError("the transformers generator needs a model (a Hub id or a folder)")
        try:
            device = resolve_device(config.device)
        except RuntimeError as error:
            raise ModelLoadError(f"unknown device {config.device!r}: {error}") from error
        dtype = _dtype(config.dtype, device)
        # A directory is a checkpoint on disk: never reach out to the Hub for it.
        local = Path(config.model).is_dir()
        try:
            processor = AutoProcessor.from_pretrained(config.model, local_files_only=local)
            model: Any = AutoModelForImageTextToText.from_pretrained(
                config.model, local_files_only=local, dtype=dtype
            )
            model.to(device).eval()
        except Exception as error:
            raise ModelLoadError(
                f"could not load multimodal model {config.model!r}: {type(error).__name__}: {error}"
            ) from error
        if getattr(processor, "chat_template", None) is None:
            raise ModelLoadError(f"the processor of {config.model!r} has no chat template")
        return cls(
            model=model,
            processor=processor,
            model_id=config.model,
            device=device,
            dtype=dtype,
            image_max_side=config.image_max_side,
        )

    def generate(self, prompt: Prompt, options: GenerationOptions) -> Generation:
        inputs = self._inputs(prompt)
        output = self._run(inputs, options)
        new_tokens = output[0, inputs["input_ids"].shape[1] :]
        text = self._tokenizer.decode(new_tokens, skip_special_tokens=True)
        return self._generation(text, inputs, new_tokens, options)

    def stream(self, prompt: Prompt, options: GenerationOptions) -> Stream:
        inputs = self._inputs(prompt)
        streamer = TextIteratorStreamer(self._tokenizer, skip_prompt=True, skip_special_tokens=True)
        cancelled = threading.Event()
        outcome: dict[str, Any] = {}

        def work() -> None:
            try:
                outcome["output"] = self._run(inputs, options, streamer=streamer, cancel=cancelled)
            except BaseException as error:
                outcome["error"] = error
                streamer.end()  # wakes the consumer, which would otherwise wait forever

        worker = threading.Thread(target=work, name="rapport-generate", daemon=True)
        worker.start()
        pieces: list[str] = []
        try:
            for piece in streamer:
                if piece:
                    pieces.append(piece)
                    yield piece
        finally:
            # Also reached when the consumer stops early: free the device at the next token.
            cancelled.set()
            worker.join()
        if "error" in outcome:
            raise outcome["error"]
        new_tokens = outcome["output"][0, inputs["input_ids"].shape[1] :]
        yield self._generation("".join(pieces), inputs, new_tokens, options)

    def close(self) -> None:
        with self._lock:
            self._model = None
        if self._device.type == "cuda":
            torch.cuda.empty_cache()

    def _inputs(self, prompt: Prompt) -> Any:
        conversation, images = to_transformers_conversation(
            prompt, image_max_side=self._image_max_side
        )
        try:
            inputs = self._encode(conversation, images)
        except Exception as error:
            logger.exception("the processor of %s could not encode a prompt", self.model)
            raise GeneratorUnavailable(
                f"the model could not read the prompt ({type(error).__name__})"
            ) from error
        return inputs.to(self._device, dtype=self._dtype)

    def _encode(self, conversation: list[dict], images: list[Image.Image]) -> Any:
        options: dict[str, Any] = {
            "add_generation_prompt": True,
            "tokenize": True,
            "return_dict": True,
            "return_tensors": "pt",
            "processor_kwargs": {"images": images} if images else {},
        }
        if self._sanitize:
            try:
                # User text (a question, a concept description) that spells a control
                # or image token is encoded as plain text, never as a placeholder.
                return self._processor.apply_chat_template(
                    conversation, sanitize_control_tokens=True, **options
                )
            except NotImplementedError:
                # Templates that leave BOS to the tokenizer can't be sanitised: strip instead.
                logger.info("the chat template of %s cannot sanitise user text", self.model)
                self._sanitize = False
        conversation = _strip(conversation, self._control_tokens())
        return self._processor.apply_chat_template(conversation, **options)

    def _run(
        self,
        inputs: Any,
        options: GenerationOptions,
        *,
        streamer: Any = None,
        cancel: threading.Event | None = None,
    ) -> torch.Tensor:
        sampling: dict[str, Any] = (
            {"do_sample": True, "temperature": options.temperature}
            if options.temperature > 0
            else {"do_sample": False}
        )
        stopping = StoppingCriteriaList([_Cancelled(cancel)] if cancel is not None else [])
        with self._lock:
            if self._model is None:
                raise GeneratorUnavailable("the generator is closed")
            try:
                output: torch.Tensor = self._model.generate(
                    **inputs,
                    max_new_tokens=options.max_new_tokens,
                    streamer=streamer,
                    stopping_criteria=stopping,
                    **sampling,
                )
            except Exception as error:
                logger.exception("generation with %s failed", self.model)
                raise GeneratorUnavailable(
                    f"the model failed to generate ({type(error).__name__})"
                ) from error
        return output

    def _generation(
        self, text: str, inputs: Any, new_tokens: torch.Tensor, options: GenerationOptions
    ) -> Generation:
        count = len(new_tokens)
        ended = count > 0 and int(new_tokens[-1]) in self._eos_ids
        finish = "length" if count >= options.max_new_tokens and not ended else "stop"
        usage = Usage(prompt_tokens=int(inputs["input_ids"].shape[1]), completion_tokens=count)
        return Generation(text=text, usage=usage, finish_reason=finish)

    def _control_tokens(self) -> re.Pattern[str]:
        tokens = set(self._tokenizer.all_special_tokens)
        for attribute in ("image_token", "video_token"):
            if isinstance(token := getattr(self._processor, attribute, None), str):
                tokens.add(token)
        return re.compile("|".join(re.escape(t) for t in sorted(tokens, key=len, reverse=True)))


class _Cancelled(StoppingCriteria):
    """Stops generation once ``event`` is set."""

    def __init__(self, event: threading.Event) -> None:
        self._event = event

    def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
        return torch.full((input_ids.shape[0],), self._event.is_set(), device=input_ids.device)


def _dtype(name: str, device: torch.device) -> torch.dtype:
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if name not in DTYPES:
        raise ModelLoadError(f"unknown dtype {name!r}; known: auto, {', '.join(DTYPES)}")
    return DTYPES[name]


def _strip(conversation: list[dict], tokens: re.Pattern[str]) -> list[dict]:
    return [
        {
            **message,
            "content": [
                {**part, "text": tokens.sub("", part["text"])} if part["type"] == "text" else part
                for part in message["content"]
            ],
        }
        for message in conversation
    ]
