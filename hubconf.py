"""torch.hub entrypoints for AFNet-M: ``torch.hub.load(repo_or_dir, "afnet_m", source=..., **kwargs)``.

Each entrypoint imports ``afnetm_timm`` (which registers the models with timm) and delegates to
``timm.create_model``; keyword arguments (``num_classes``, ``pretrained``, ``pretrained_backbone``,
``device``, ...) pass through.
"""
dependencies = ["torch", "timm", "huggingface_hub", "safetensors"]


def _create(name, **kwargs):
    import timm

    import afnetm_timm  # noqa: F401  (registers the AFNet-M models with timm)

    return timm.create_model(name, **kwargs)


def afnet_m(**kwargs):
    """AFNet-M (paper): dual ResNet18, mask attention after Layer1–2, adaptive fusion after Layer3–4.

    Input: a packed (B, 7, H, W) tensor, see ``afnetm_timm.pack``. Returns (B, num_classes) logits.
    """
    return _create("afnet_m", **kwargs)


def afnet_m_no_ma(**kwargs):
    """AFNet-M without mask attention (Tables 3–4, "Ours w/o MA")."""
    return _create("afnet_m_no_ma", **kwargs)


def afnet_m_no_af(**kwargs):
    """AFNet-M without adaptive fusion: MA, and Layer3–4 fused by a plain sum (Table 4, "Ours w/o AF")."""
    return _create("afnet_m_no_af", **kwargs)


def afnet_m_2d(**kwargs):
    """Texture only, with mask attention (Table 3)."""
    return _create("afnet_m_2d", **kwargs)


def afnet_m_2d_no_ma(**kwargs):
    """Texture only, without mask attention (Table 3)."""
    return _create("afnet_m_2d_no_ma", **kwargs)


def afnet_m_3d(**kwargs):
    """Depth only, with mask attention (Table 3)."""
    return _create("afnet_m_3d", **kwargs)


def afnet_m_3d_no_ma(**kwargs):
    """Depth only, without mask attention (Table 3)."""
    return _create("afnet_m_3d_no_ma", **kwargs)


def afnet_m_s1(**kwargs):
    """S1: data-level fusion, texture and depth stacked into one 6-channel ResNet18 (Table 2)."""
    return _create("afnet_m_s1", **kwargs)


def afnet_m_s2(**kwargs):
    """S2: decision-level fusion, one classifier per branch, logits averaged (Table 2)."""
    return _create("afnet_m_s2", **kwargs)


def afnet_m_s3(**kwargs):
    """S3 (FC): fusion at the fully-connected layer, pooled features concatenated (Table 2)."""
    return _create("afnet_m_s3", **kwargs)


def afnet_m_s4(**kwargs):
    """S4: conv-level fusion at Layer3–4 by a plain sum, no importance weights (Table 2)."""
    return _create("afnet_m_s4", **kwargs)


def afnet_m_resnet34(**kwargs):
    """AFNet-M on two ResNet34 branches (beyond the paper)."""
    return _create("afnet_m_resnet34", **kwargs)


def afnet_m_resnet50(**kwargs):
    """AFNet-M on two ResNet50 branches (beyond the paper)."""
    return _create("afnet_m_resnet50", **kwargs)
