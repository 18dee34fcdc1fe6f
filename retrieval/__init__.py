"""rapport's retrieval library: encoders, per-user indexes, matching.

It knows nothing of HTTP, SQL or settings: callers pass explicit config objects.
"""

from retrieval.encoder import TEST_MODEL, Encoder, EncoderConfig
from retrieval.errors import RapportError
from retrieval.images import DecodedImage, ImageLimits, decode_image
from retrieval.index import Hit, UserIndex, UserIndexCache
from retrieval.matching import best_per_label, name_key, named_in

__all__ = [
    "TEST_MODEL",
    "DecodedImage",
    "Encoder",
    "EncoderConfig",
    "Hit",
    "ImageLimits",
    "RapportError",
    "UserIndex",
    "UserIndexCache",
    "best_per_label",
    "decode_image",
    "name_key",
    "named_in",
]
