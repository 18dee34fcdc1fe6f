"""rapport's retrieval library: encoders, per-user indexes, matching, prompts, generators.

It knows nothing of HTTP, SQL or settings: callers pass explicit config objects.
Names are imported on first use, so that importing a light part (errors, image
decoding) does not load torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "retrieval.encoder": ("TEST_MODEL", "Encoder"),
    "retrieval.config": ("EncoderConfig", "GeneratorConfig", "ImageLimits", "PromptConfig"),
    "retrieval.errors": ("GeneratorTimeout", "GeneratorUnavailable", "RapportError"),
    "retrieval.images": ("DecodedImage", "decode_image"),
    "retrieval.index": ("Hit", "UserIndex", "UserIndexCache"),
    "retrieval.matching": ("best_per_label", "search_concepts"),
    "retrieval.names": ("name_key", "named_in"),
    "retrieval.generators": (
        "Generation",
        "GenerationOptions",
        "Generator",
        "Usage",
        "open_generator",
    ),
    "retrieval.prompt": (
        "ChatTurn",
        "Prompt",
        "PromptConcept",
        "build_prompt",
        "latest_query_turn",
        "to_openai_messages",
        "to_transformers_conversation",
    ),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = [
    "TEST_MODEL",
    "ChatTurn",
    "DecodedImage",
    "Encoder",
    "EncoderConfig",
    "Generation",
    "GenerationOptions",
    "Generator",
    "GeneratorConfig",
    "GeneratorTimeout",
    "GeneratorUnavailable",
    "Hit",
    "ImageLimits",
    "Prompt",
    "PromptConcept",
    "PromptConfig",
    "RapportError",
    "Usage",
    "UserIndex",
    "UserIndexCache",
    "best_per_label",
    "build_prompt",
    "decode_image",
    "latest_query_turn",
    "name_key",
    "named_in",
    "open_generator",
    "search_concepts",
    "to_openai_messages",
    "to_transformers_conversation",
]


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'retrieval' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


if TYPE_CHECKING:
    from retrieval.config import EncoderConfig, GeneratorConfig, ImageLimits, PromptConfig
    from retrieval.encoder import TEST_MODEL, Encoder
    from retrieval.errors import GeneratorTimeout, GeneratorUnavailable, RapportError
    from retrieval.generators import (
        Generation,
        GenerationOptions,
        Generator,
        Usage,
        open_generator,
    )
    from retrieval.images import DecodedImage, decode_image
    from retrieval.index import Hit, UserIndex, UserIndexCache
    from retrieval.matching import best_per_label, search_concepts
    from retrieval.names import name_key, named_in
    from retrieval.prompt import (
        ChatTurn,
        Prompt,
        PromptConcept,
        build_prompt,
        latest_query_turn,
        to_openai_messages,
        to_transformers_conversation,
    )
