"""The models the benchmark compares: AFNet-M variants and two ResNet18 baselines.

* ``resnet18``: one timm ResNet18 on a 3-channel image, the single-branch reference.
* ``dual_resnet18``: two timm ResNet18 trunks, one on the texture and one on the depth channels of
  the packed (B, 7, H, W) input, pooled features concatenated, one Linear head. It does the work of
  two ResNet18 forward passes and nothing else, so it is the cost floor of any dual-branch ResNet18
  model; AFNet-M's throughput relative to it measures what MA and AF add.
"""
from __future__ import annotations

from dataclasses import dataclass

import timm
import torch
from torch import nn

from ..packing import DEPTH_CHANNELS, PACKED_CHANNELS, TEXTURE_CHANNELS

#: The model AFNet-M's throughput is divided by.
BASELINE = "dual_resnet18"
#: The models that are not AFNet-M variants, in the order reports list them.
BASELINES: tuple[str, ...] = ("resnet18", "dual_resnet18")


class DualResNet18(nn.Module):
    """Two ResNet18 trunks (texture, depth) on a packed input, pooled features concatenated, one Linear.

    Shapes:
        x: (B, 7, H, W) packed input (texture RGB, depth x3, mask; the mask is ignored).
        returns: (B, num_classes).
    """

    def __init__(
        self,
        num_classes: int = 6,
        backbone: str = "resnet18",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.texture = timm.create_model(backbone, num_classes=0, **dd)
        self.depth = timm.create_model(backbone, num_classes=0, **dd)
        self.num_features = self.texture.num_features + self.depth.num_features
        self.num_classes = num_classes
        self.fc = nn.Linear(self.num_features, num_classes, **dd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = torch.cat([self.texture(x[:, TEXTURE_CHANNELS]), self.depth(x[:, DEPTH_CHANNELS])], dim=1)
        return self.fc(features)


@dataclass(frozen=True)
class BenchModel:
    """A model under benchmark: its name, whether it is a baseline, and the channels of its input."""

    name: str
    baseline: bool
    in_chans: int


def bench_model_info(name: str) -> BenchModel:
    """What the benchmark needs to know about ``name`` (a baseline or any registered timm model)."""
    if name == "resnet18":
        return BenchModel(name, True, 3)
    if name == BASELINE:
        return BenchModel(name, True, PACKED_CHANNELS)
    import afnetm_timm  # noqa: F401  (registers the AFNet-M variants)

    if not timm.is_model(name):
        raise ValueError(f"unknown model {name!r}: not a baseline {BASELINES} nor a timm model")
    return BenchModel(name, False, PACKED_CHANNELS if name.startswith("afnet_m") else 3)


def create_bench_model(
    name: str, num_classes: int = 6, device: torch.device | str | None = None
) -> nn.Module:
    """Build a benchmark model (random weights: speed does not depend on them)."""
    bench_model_info(name)  # validates the name
    if name == BASELINE:
        return DualResNet18(num_classes=num_classes, device=device)
    return timm.create_model(name, num_classes=num_classes, device=device)
