"""Mask attention (MA), AFNet-M paper §2.2, eq. 1.

A salient-region mask (eyebrows, eyes, nose, mouth) modulates a feature map: two independent
groups of 1×1 convolutions turn the mask into a scale γ and a shift β shaped like the features,
and the output is ``γ ⊗ X + β``. Usable in any network that has a feature map and a mask.
"""

import torch
import torch.nn.functional as F
from timm.layers import LayerType, get_act_layer
from torch import nn

from ._checks import check_mask_attention_inputs


def resize_mask(mask: torch.Tensor, size: list[int]) -> torch.Tensor:
    """Area-resize a mask to a feature map's spatial size.

    Shapes:
        mask: (B, 1, h, w), soft or binary, any resolution.
        returns: (B, 1, H, W) where ``(H, W) == size``. Area interpolation is adaptive average
        pooling, so a 224×224 mask becomes the mean of each 4×4 block at 56×56.
    """
    return F.adaptive_avg_pool2d(mask, size)


class MaskAttention(nn.Module):
    """Scale and shift a feature map with γ and β learned from a single-channel mask (eq. 1).

    The mask is area-resized to the feature map, broadcast to ``channels`` channels and passed
    through two independent convolution groups ``conv1×1 → act → conv1×1`` (four convolutions
    in all, all 1×1, as in Fig. 2): one gives γ, the other β, both shaped like ``x``.

    Because the broadcast mask has ``channels`` identical channels, the first convolution of a
    group equals a 1→C convolution whose weight is the C→C weight summed over its input
    channels. The forward pass computes it that way (same result up to float rounding, about
    ``channels`` times fewer multiply-adds); the parameters remain the paper's C→C convolutions.

    Args:
        channels: C, the channels of the feature map to modulate.
        hidden_channels: width between the two convolutions of a group (paper: silent; default C).
        act_layer: activation between the two convolutions (paper: silent; default ReLU).
        init_std: standard deviation of the normal initialisation of every conv weight (§3.1).
        identity_init: start γ at 1 and β at 0 (bias of γ's last conv = 1, other biases 0), so an
            ImageNet-initialised trunk is left intact at the start of training. With False,
            every bias is 0 and γ starts near 0.

    Shapes:
        x: (B, C, H, W) features.
        mask: (B, 1, h, w) mask of any resolution, values in [0, 1], soft or binary.
        returns: (B, C, H, W).
    """

    def __init__(
        self,
        channels: int,
        hidden_channels: int | None = None,
        act_layer: LayerType = "relu",
        init_std: float = 0.01,
        identity_init: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if channels < 1:
            raise ValueError(f"MaskAttention: channels must be positive, got {channels}")
        hidden_channels = hidden_channels or channels
        dd = {"device": device, "dtype": dtype}
        act = get_act_layer(act_layer)
        self.channels = channels
        self.hidden_channels = hidden_channels
        self.gamma_in = nn.Conv2d(channels, hidden_channels, 1, **dd)
        self.gamma_act = act()
        self.gamma_out = nn.Conv2d(hidden_channels, channels, 1, **dd)
        self.beta_in = nn.Conv2d(channels, hidden_channels, 1, **dd)
        self.beta_act = act()
        self.beta_out = nn.Conv2d(hidden_channels, channels, 1, **dd)
        self.init_std = init_std
        self.identity_init = identity_init
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Normal-initialise the conv weights; biases as described by ``identity_init``."""
        for conv in (self.gamma_in, self.gamma_out, self.beta_in, self.beta_out):
            nn.init.normal_(conv.weight, std=self.init_std)
            nn.init.zeros_(conv.bias)
        if self.identity_init:
            nn.init.ones_(self.gamma_out.bias)

    def modulation(self, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """γ and β for a mask already resized to the feature map, each (B, C, H, W)."""
        # conv(mask broadcast to C channels) == 1→C conv with the weight summed over input channels
        gamma_hidden = F.conv2d(mask, self.gamma_in.weight.sum(dim=1, keepdim=True), self.gamma_in.bias)
        beta_hidden = F.conv2d(mask, self.beta_in.weight.sum(dim=1, keepdim=True), self.beta_in.bias)
        gamma = self.gamma_out(self.gamma_act(gamma_hidden))
        beta = self.beta_out(self.beta_act(beta_hidden))
        return gamma, beta

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        check_mask_attention_inputs(x, mask, self.channels)
        mask = resize_mask(mask, x.shape[-2:]).to(x.dtype)
        gamma, beta = self.modulation(mask)
        # x first, so the output keeps x's memory format (channels_last stays channels_last)
        return (x * gamma).add_(beta)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, hidden_channels={self.hidden_channels}"
