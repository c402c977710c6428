"""afnetm-timm: AFNet-M (Adaptive Fusion Network with Masks, 2D+3D facial expression recognition) for timm.

Importing this package registers ``afnet_m`` and its variants with timm::

    import timm, afnetm_timm
    model = timm.create_model("afnet_m", num_classes=6)
    logits = model(afnetm_timm.pack(texture, depth, mask))
"""
from .layers import AdaptiveFusion, MaskAttention, SumFusion
from .models import AFNetM, BackboneWeightsError
from .packing import (
    EXPRESSION_CODES,
    EXPRESSION_NAMES,
    PACKED_CHANNELS,
    PACKED_MEAN,
    PACKED_STD,
    PackedInput,
    pack,
    unpack,
)
from .params import count_parameters, parameter_table

__version__ = "0.1.0"

__all__ = [
    "AFNetM",
    "AdaptiveFusion",
    "BackboneWeightsError",
    "EXPRESSION_CODES",
    "EXPRESSION_NAMES",
    "MaskAttention",
    "PACKED_CHANNELS",
    "PACKED_MEAN",
    "PACKED_STD",
    "PackedInput",
    "SumFusion",
    "count_parameters",
    "pack",
    "parameter_table",
    "unpack",
]
