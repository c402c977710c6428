"""Adaptive fusion (AF), AFNet-M paper §2.3, eq. 2–3.

Per modality, a channel importance weight ``sigmoid(conv(avgpool(X)) + conv(maxpool(X)))`` with one
1×1 convolution shared by both pools; the fused map is the weighted sum of the two modalities.
Usable in any two-stream (e.g. RGB-D) network.
"""

import torch
import torch.nn.functional as F
from torch import nn

from ._checks import check_fusion_inputs


class AdaptiveFusion(nn.Module):
    """Fuse texture and depth feature maps with learned channel importance weights.

    ``t_iw = sigmoid(conv_t(avg(X_t)) + conv_t(max(X_t)))``, likewise ``d_iw`` with its own
    ``conv_d``; output ``M = t_iw ⊗ X_t + d_iw ⊗ X_d`` (eq. 2–3). Each conv is called twice per
    forward (once per pool), as written in eq. 2; a per-call parameter counter (torchsummary,
    the paper's Table 4) therefore counts it twice.

    Args:
        channels: C, channels of both inputs.
        init_std: standard deviation of the normal initialisation of the conv weights (§3.1);
            biases start at 0, so both weights start near 0.5.

    Shapes:
        x_texture, x_depth: (B, C, H, W), the same shape.
        returns: M, (B, C, H, W). ``forward_with_weights`` also returns t_iw and d_iw, (B, C, 1, 1).
    """

    def __init__(
        self,
        channels: int,
        init_std: float = 0.01,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if channels < 1:
            raise ValueError(f"AdaptiveFusion: channels must be positive, got {channels}")
        dd = {"device": device, "dtype": dtype}
        self.channels = channels
        self.texture_conv = nn.Conv2d(channels, channels, 1, **dd)
        self.depth_conv = nn.Conv2d(channels, channels, 1, **dd)
        self.init_std = init_std
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Normal-initialise the conv weights, zero biases."""
        for conv in (self.texture_conv, self.depth_conv):
            nn.init.normal_(conv.weight, std=self.init_std)
            nn.init.zeros_(conv.bias)

    def importance_weights(self, x_texture: torch.Tensor, x_depth: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """t_iw and d_iw (eq. 2), each (B, C, 1, 1) in (0, 1)."""
        check_fusion_inputs(x_texture, x_depth, self.channels)
        t_avg, t_max = F.adaptive_avg_pool2d(x_texture, 1), F.adaptive_max_pool2d(x_texture, 1)
        d_avg, d_max = F.adaptive_avg_pool2d(x_depth, 1), F.adaptive_max_pool2d(x_depth, 1)
        t_iw = torch.sigmoid(self.texture_conv(t_avg) + self.texture_conv(t_max))
        d_iw = torch.sigmoid(self.depth_conv(d_avg) + self.depth_conv(d_max))
        return t_iw, d_iw

    def forward_with_weights(
        self, x_texture: torch.Tensor, x_depth: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(M, t_iw, d_iw): the fused map and the importance weights, for inspection."""
        t_iw, d_iw = self.importance_weights(x_texture, x_depth)
        return torch.addcmul(t_iw * x_texture, d_iw, x_depth), t_iw, d_iw

    def forward(self, x_texture: torch.Tensor, x_depth: torch.Tensor) -> torch.Tensor:
        return self.forward_with_weights(x_texture, x_depth)[0]

    def extra_repr(self) -> str:
        return f"channels={self.channels}"


class SumFusion(nn.Module):
    """Plain element-wise sum of two feature maps: the paper's S4 baseline (fusion without weights).

    Shapes:
        x_texture, x_depth: (B, C, H, W). returns: (B, C, H, W).
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels

    def forward(self, x_texture: torch.Tensor, x_depth: torch.Tensor) -> torch.Tensor:
        check_fusion_inputs(x_texture, x_depth, self.channels)
        return x_texture + x_depth

    def extra_repr(self) -> str:
        return f"channels={self.channels}"
