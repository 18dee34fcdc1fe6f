"""Model files from the Hugging Face hub: the local cache first, one quick look at the hub.

huggingface_hub retries a hub it cannot reach for about a minute, warning at every try.
A machine without network (many GPU hosts) should hear at once, in one line, that the
weights are not in its cache; ``HF_HUB_OFFLINE=1`` says so without asking the hub at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import httpx
from huggingface_hub import constants, try_to_load_from_cache

from retrieval.errors import ModelLoadError

HUB_TIMEOUT_S = 3.0


def cached_file(repo_id: str, filenames: Sequence[str]) -> str | None:
    """The local path of the first of ``filenames`` of ``repo_id`` in the hub cache, if any."""
    for filename in filenames:
        path = try_to_load_from_cache(repo_id, filename)
        if isinstance(path, str):
            return path
    return None


def require_hub(what: str) -> None:
    """Return when the hub can be asked for ``what``, which is not cached; otherwise raise
    ModelLoadError at once (HF_HUB_OFFLINE set) or within HUB_TIMEOUT_S (no answer)."""
    cache = constants.HF_HUB_CACHE
    if constants.HF_HUB_OFFLINE:
        raise ModelLoadError(
            f"{what}: not in the Hugging Face cache {cache}, and HF_HUB_OFFLINE is set"
        )
    endpoint = constants.ENDPOINT
    try:
        # Any answer will do: only a hub that does not answer at all is refused here.
        httpx.head(endpoint, timeout=HUB_TIMEOUT_S)
    except httpx.HTTPError as error:
        host = urlsplit(endpoint).netloc or endpoint
        reason = " ".join(str(error).split()) or type(error).__name__
        raise ModelLoadError(
            f"{what}: not in the Hugging Face cache {cache}, and the hub {host} cannot be "
            f"reached ({reason})"
        ) from None


# open_clip's names for a hub repo's weights, safetensors first, as it looks for them.
_OPEN_CLIP_WEIGHTS = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
_PREPROCESSING = {
    "mean": "image_mean",
    "std": "image_std",
    "interpolation": "image_interpolation",
    "resize_mode": "image_resize_mode",
}


def open_clip_weights(open_clip: Any, model: str, tag: str) -> tuple[str, dict[str, Any]]:
    """What to give open_clip for pretrained ``tag`` of ``model``: the cached weights file
    with the tag's preprocessing as keywords (no network at all), or else the tag itself
    once the hub is known to answer (ModelLoadError at once otherwise)."""
    pretrained = open_clip.get_pretrained_cfg(model, tag)
    hub = pretrained.get("hf_hub", "")
    if not hub:  # weights from a plain URL: open_clip's own download and cache
        return tag, {}
    repo_id, filename = hub.rstrip("/"), ""
    if not hub.endswith("/"):
        repo_id, filename = hub.rsplit("/", 1)
    names = (_safetensors(filename), filename) if filename else _OPEN_CLIP_WEIGHTS
    path = cached_file(repo_id, [name for name in names if name])
    if path is None:
        require_hub(f"weights {tag!r} for {model} (hub repo {repo_id})")
        return tag, {}
    keywords: dict[str, Any] = {
        keyword: pretrained[key] for key, keyword in _PREPROCESSING.items() if key in pretrained
    }
    if pretrained.get("quick_gelu"):
        keywords["force_quick_gelu"] = True
    return path, keywords


def _safetensors(filename: str) -> str:
    stem, _, suffix = filename.rpartition(".")
    return f"{stem}.safetensors" if suffix in ("bin", "pth") else ""
