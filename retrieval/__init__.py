"""rapport's retrieval library: encoders, per-user indexes, search, prompts, generators.

It knows nothing of HTTP, SQL or settings: callers pass explicit config objects
(retrieval/config.py). ``__all__`` is the surface the service uses from here;
the rest it imports from the submodules. Names are imported on first use, so
that importing a light part (config, errors, image decoding) does not load torch.
"""

# ruff: noqa: F401  (the TYPE_CHECKING imports are the exports; __all__ is built at run time)
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "retrieval.batching": ("BatchingEncoder",),
    "retrieval.config": (
        "BatchingConfig",
        "EncoderConfig",
        "GeneratorConfig",
        "ImageLimits",
        "PromptConfig",
        "RegionConfig",
    ),
    "retrieval.encoder": ("Encoder",),
    "retrieval.encoders": ("open_encoder",),
    "retrieval.generators": ("Generation", "GenerationOptions", "Generator", "open_generator"),
    "retrieval.image_encoder": ("ImageEncoder",),
    "retrieval.images": ("DecodedImage", "decode_image"),
    "retrieval.index": ("UserIndex", "UserIndexCache"),
    "retrieval.names": ("name_key", "named_in"),
    "retrieval.prompt": (
        "ChatTurn",
        "Prompt",
        "PromptConcept",
        "build_prompt",
        "latest_query_turn",
        "to_openai_messages",
    ),
    "retrieval.regions": ("open_region_proposer",),
    "retrieval.search": ("SearchOptions", "search_photos"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_MODULE_OF)


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'retrieval' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


if TYPE_CHECKING:  # the same names, for type checkers (a test keeps both lists equal)
    from retrieval.batching import BatchingEncoder
    from retrieval.config import (
        BatchingConfig,
        EncoderConfig,
        GeneratorConfig,
        ImageLimits,
        PromptConfig,
        RegionConfig,
    )
    from retrieval.encoder import Encoder
    from retrieval.encoders import open_encoder
    from retrieval.generators import Generation, GenerationOptions, Generator, open_generator
    from retrieval.image_encoder import ImageEncoder
    from retrieval.images import DecodedImage, decode_image
    from retrieval.index import UserIndex, UserIndexCache
    from retrieval.names import name_key, named_in
    from retrieval.prompt import (
        ChatTurn,
        Prompt,
        PromptConcept,
        build_prompt,
        latest_query_turn,
        to_openai_messages,
    )
    from retrieval.regions import open_region_proposer
    from retrieval.search import SearchOptions, search_photos
