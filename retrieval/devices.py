"""Where models run: a configured device name to a torch device."""

from __future__ import annotations

import torch


def resolve_device(device: str) -> torch.device:
    """``"auto"``: CUDA when available, else the CPU; any other name as torch reads it."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)
