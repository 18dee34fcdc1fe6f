"""Photos as callers have them (a path, bytes, an open file, a PIL image, a URL), as bytes."""

from __future__ import annotations

import base64
import io
import mimetypes
import os
from pathlib import Path
from typing import IO, Any, Protocol, TypeAlias, cast


class SavableImage(Protocol):
    """What this client needs of a PIL image (PIL itself is never imported here)."""

    def save(self, fp: Any, format: str | None = None) -> None: ...


# A path (str or os.PathLike), bytes, a binary file object or a PIL image. Where a URL is
# accepted, a str starting with http://, https:// or data: is a URL, any other str a path.
PhotoInput: TypeAlias = str | os.PathLike[str] | bytes | IO[bytes] | SavableImage

_URL_PREFIXES = ("http://", "https://", "data:")


def is_url(photo: object) -> bool:
    return isinstance(photo, str) and photo.startswith(_URL_PREFIXES)


def _is_pil_image(photo: object) -> bool:
    # Checked by module, not by isinstance, so that PIL is never imported here.
    return type(photo).__module__.startswith("PIL.") and hasattr(photo, "save")


def read_photo(photo: PhotoInput, index: int = 0) -> tuple[str, bytes, str]:
    """(file name, bytes, content type) of a photo; the server reads the type from the
    bytes, the name and type sent are only hints."""
    if isinstance(photo, bytes | bytearray | memoryview):
        return f"photo{index}", bytes(photo), "application/octet-stream"
    if isinstance(photo, str | os.PathLike):
        if is_url(photo):
            raise ValueError("a URL is not a file: pass its bytes, or a path")
        path = Path(photo)
        kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        return path.name, path.read_bytes(), kind
    if _is_pil_image(photo):
        buffer = io.BytesIO()
        cast(SavableImage, photo).save(buffer, format="PNG")
        return f"photo{index}.png", buffer.getvalue(), "image/png"
    read = getattr(photo, "read", None)
    if callable(read):
        data = read()
        if not isinstance(data, bytes):
            raise TypeError("a file object must be opened in binary mode ('rb')")
        name = os.path.basename(str(getattr(photo, "name", "") or f"photo{index}"))
        return name, data, mimetypes.guess_type(name)[0] or "application/octet-stream"
    raise TypeError(f"not a photo: {type(photo).__name__} (a path, bytes, a file or PIL image)")


def photo_reference(photo: PhotoInput) -> str:
    """A photo as the chat and playground bodies take it: a URL as is, anything else as a
    base64 data URL."""
    if is_url(photo):
        return str(photo)
    _, data, kind = read_photo(photo)
    return f"data:{kind};base64,{base64.b64encode(data).decode()}"
