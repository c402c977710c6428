"""AFNet-M model family, registered with timm on import."""
from .afnet_m import FUSION_MODES, MODALITIES, AFNetM, BackboneWeightsError

__all__ = ["AFNetM", "BackboneWeightsError", "FUSION_MODES", "MODALITIES"]
