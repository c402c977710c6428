"""Input checks shared by the layers and the model.

They raise a clear ``ValueError`` instead of a shape error from deep inside a convolution. They are
registered as torch.fx leaf functions (timm's notrace registry) so symbolic tracing records a call
instead of evaluating shapes, and they are TorchScript-compatible.
"""
import torch
from timm.layers import register_notrace_function


@register_notrace_function
def check_mask_attention_inputs(x: torch.Tensor, mask: torch.Tensor, channels: int) -> None:
    """Check ``x`` is (B, channels, H, W) and ``mask`` is (B, 1, h, w)."""
    if x.dim() != 4:
        raise ValueError("MaskAttention: x must be a (B, C, H, W) feature map, got " + str(x.dim()) + " dimensions")
    if x.shape[1] != channels:
        raise ValueError(
            "MaskAttention: x has " + str(x.shape[1]) + " channels, the layer was built for " + str(channels)
        )
    if mask.dim() != 4 or mask.shape[1] != 1:
        raise ValueError("MaskAttention: mask must be (B, 1, h, w), got shape " + str(list(mask.shape)))
    if mask.shape[0] != x.shape[0]:
        raise ValueError(
            "MaskAttention: mask batch size " + str(mask.shape[0]) + " does not match feature batch size "
            + str(x.shape[0])
        )


@register_notrace_function
def check_fusion_inputs(x_texture: torch.Tensor, x_depth: torch.Tensor, channels: int) -> None:
    """Check both maps are (B, channels, H, W) with the same shape."""
    if x_texture.dim() != 4 or x_depth.dim() != 4:
        raise ValueError(
            "AdaptiveFusion: inputs must be (B, C, H, W) feature maps, got "
            + str(x_texture.dim()) + " and " + str(x_depth.dim()) + " dimensions"
        )
    if x_texture.shape[1] != channels or x_depth.shape[1] != channels:
        raise ValueError(
            "AdaptiveFusion: inputs have " + str(x_texture.shape[1]) + " and " + str(x_depth.shape[1])
            + " channels, the layer was built for " + str(channels)
        )
    if x_texture.shape != x_depth.shape:
        raise ValueError(
            "AdaptiveFusion: texture and depth maps differ in shape: " + str(list(x_texture.shape))
            + " vs " + str(list(x_depth.shape))
        )


@register_notrace_function
def check_packed_input(x: torch.Tensor, in_chans: int, multiple: int) -> None:
    """Check a packed AFNet-M input is (B, in_chans, H, W) with H and W multiples of ``multiple``."""
    if x.dim() != 4:
        raise ValueError(
            "AFNetM: expected a packed (B, " + str(in_chans) + ", H, W) tensor (texture RGB, depth x3, mask), got "
            + str(x.dim()) + " dimensions with shape " + str(list(x.shape))
        )
    if x.shape[1] != in_chans:
        raise ValueError(
            "AFNetM: expected " + str(in_chans) + " input channels (texture RGB 3 + depth 3 + mask 1; see "
            "afnetm_timm.pack), got " + str(x.shape[1])
        )
    if x.shape[2] % multiple != 0 or x.shape[3] % multiple != 0:
        raise ValueError(
            "AFNetM: input height and width must be multiples of " + str(multiple) + ", got "
            + str(x.shape[2]) + "x" + str(x.shape[3])
        )
