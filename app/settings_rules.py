"""Rules on settings that a type alone cannot state, and the shared key secret's file.

``app/settings.py`` declares the variables; its validators call these, so a bad value
(or a pair that only breaks together) stops the start with a line naming the variable.
"""

from __future__ import annotations

import os
import re
import secrets
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from app.settings import Settings

MIN_SECRET_CHARS = 32
S3_URL = re.compile(
    r"^s3://(?P<bucket>[a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(?P<prefix>/[A-Za-z0-9._/-]*)?$"
)


def check_blob_store(value: str | None) -> str | None:
    """``RAPPORT_BLOB_STORE``: unset (the local folder) or an s3:// URL."""
    if value is not None and not S3_URL.match(value):
        raise ValueError(
            "RAPPORT_BLOB_STORE must be s3://bucket or s3://bucket/prefix (a bucket name of "
            "3-63 lower-case letters, digits, dots and hyphens), or unset for the local folder"
        )
    return value


def s3_bucket_and_prefix(url: str) -> tuple[str, str]:
    """The bucket of an s3:// URL and its key prefix ("" or ending in "/")."""
    match = S3_URL.match(url)
    if match is None:
        raise ValueError(f"not an s3:// URL: {url!r}")
    prefix = (match.group("prefix") or "").strip("/")
    return match.group("bucket"), f"{prefix}/" if prefix else ""


def check_secret(name: str, secret: str) -> None:
    """An admin key or key secret: printable, no padding, at least 32 characters.

    An empty variable (``RAPPORT_ADMIN_KEY=`` in a compose file whose source is unset)
    must not open the admin API to "Authorization: Bearer " with no key.
    """
    if secret != secret.strip() or not secret.isprintable():
        raise ValueError(f"{name} has spaces or control characters around or in it")
    if len(secret) < MIN_SECRET_CHARS:
        raise ValueError(
            f"{name} is {'empty' if not secret else 'too short'}: use at least "
            f"{MIN_SECRET_CHARS} random characters (e.g. `openssl rand -hex 32`), "
            "or leave it unset"
        )


def check_together(s: Settings) -> None:
    """Values that are each fine but together would break every request."""
    if (s.s3_access_key_id is None) != (s.s3_secret_access_key is None):
        raise ValueError(
            "set both RAPPORT_S3_ACCESS_KEY_ID and RAPPORT_S3_SECRET_ACCESS_KEY, or neither"
        )
    if s.default_max_new_tokens > s.max_new_tokens_limit:
        raise ValueError(
            f"RAPPORT_DEFAULT_MAX_NEW_TOKENS ({s.default_max_new_tokens}) is above "
            f"RAPPORT_MAX_NEW_TOKENS_LIMIT ({s.max_new_tokens_limit})"
        )
    if s.encode_queue_size is not None and s.encode_queue_size < s.largest_request_regions():
        raise ValueError(
            f"RAPPORT_ENCODE_QUEUE_SIZE ({s.encode_queue_size}) is below the regions of "
            f"one request: RAPPORT_MAX_IMAGES_PER_REQUEST ({s.max_images_per_request}) "
            f"photos x {s.region_config().most_per_photo()} regions each "
            f"(RAPPORT_REGIONS={s.regions}), so such a request could never be encoded; "
            "raise it, or leave it unset to size it from these"
        )
    if s.encode_queue_per_app is not None and s.encode_queue_per_app < s.largest_request_regions():
        raise ValueError(
            f"RAPPORT_ENCODE_QUEUE_PER_APP ({s.encode_queue_per_app}) is below the regions of "
            f"one request ({s.largest_request_regions()}): such a request could never be "
            "encoded; raise it, or leave it unset"
        )
    if s.decode_pixels_in_flight < s.max_image_pixels:
        raise ValueError(
            f"RAPPORT_DECODE_PIXELS_IN_FLIGHT ({s.decode_pixels_in_flight}) is below "
            f"RAPPORT_MAX_IMAGE_PIXELS ({s.max_image_pixels}): such a photo could never decode"
        )
    if s.max_request_pixels < s.max_image_pixels:
        raise ValueError(
            f"RAPPORT_MAX_REQUEST_PIXELS ({s.max_request_pixels}) is below "
            f"RAPPORT_MAX_IMAGE_PIXELS ({s.max_image_pixels})"
        )
    if s.max_request_text_chars < s.max_message_chars:
        raise ValueError(
            f"RAPPORT_MAX_REQUEST_TEXT_CHARS ({s.max_request_text_chars}) is below "
            f"RAPPORT_MAX_MESSAGE_CHARS ({s.max_message_chars})"
        )
    if any(scale < 1 for scale in s.region_grid_scales):
        raise ValueError("RAPPORT_REGION_GRID_SCALES must be whole numbers of at least 1")
    if s.generator == "openai" and not (s.generator_base_url and s.generator_model):
        raise ValueError(
            "RAPPORT_GENERATOR=openai needs RAPPORT_GENERATOR_BASE_URL and RAPPORT_GENERATOR_MODEL"
        )
    if s.generator == "transformers" and not s.generator_model:
        raise ValueError("RAPPORT_GENERATOR=transformers needs RAPPORT_GENERATOR_MODEL")


def shared_secret(data_dir: Path) -> bytes:
    """A random secret created once in ``data_dir`` and read back by every later start.

    Written aside, then linked into place: concurrent first starts agree on one secret
    and nobody reads a half-written file.
    """
    path = data_dir / "secret.key"
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        fd, draft = tempfile.mkstemp(dir=data_dir, prefix=".secret-")
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(32))
        try:
            os.link(draft, path)
        except FileExistsError:
            pass
        finally:
            os.unlink(draft)
    return path.read_text().strip().encode()
