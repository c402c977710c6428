"""Layers of AFNet-M, each usable alone in any RGB-D network."""
from .adaptive_fusion import AdaptiveFusion, SumFusion
from .mask_attention import MaskAttention, resize_mask

__all__ = ["AdaptiveFusion", "MaskAttention", "SumFusion", "resize_mask"]
