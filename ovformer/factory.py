"""Build an OVFormer from a preset name, a ModelConfig or an official YAML config."""
from __future__ import annotations

from pathlib import Path

from .config import ModelConfig, config_from_d2_yaml, get_preset
from .modeling import (EmbeddingAlignmentClassifier, ImageMaskedTransformerDecoder,
                       MSDeformAttnPixelDecoder, OVFormer, OVFormerImage,
                       VideoMaskedTransformerDecoder, build_backbone)


def resolve_config(spec: str | Path | ModelConfig) -> ModelConfig:
    """A ModelConfig as is; a ``.yaml`` path as an official detectron2 config; else a preset."""
    if isinstance(spec, ModelConfig):
        return spec
    if str(spec).endswith((".yaml", ".yml")):
        if not Path(spec).is_file():
            raise FileNotFoundError(f"config file not found: {spec}")
        return config_from_d2_yaml(spec)
    return get_preset(str(spec))


def create_model(spec: str | Path | ModelConfig = "r50-lvvis") -> OVFormer:
    """Build an OVFormer with random weights.

    ``meta_arch: video`` gives an :class:`OVFormer` (clips), ``meta_arch: image`` an
    :class:`OVFormerImage` (independent frames); both have the same state-dict layout.

    Example:
        >>> model = create_model("tiny")
        >>> out = model(frames, clip_embeds, text_embeds)   # see OVFormer.forward
    """
    cfg = resolve_config(spec)
    backbone = build_backbone(
        cfg.backbone, embed_dim=cfg.swin_embed_dim, depths=cfg.swin_depths,
        num_heads=cfg.swin_num_heads, window_size=cfg.swin_window_size,
        pretrain_img_size=cfg.swin_pretrain_img_size, drop_path_rate=cfg.swin_drop_path_rate)
    pixel_decoder = MSDeformAttnPixelDecoder(
        backbone.out_channels, backbone.out_strides, conv_dim=cfg.conv_dim, mask_dim=cfg.mask_dim,
        num_encoder_layers=cfg.enc_layers, encoder_ffn=cfg.enc_ffn, encoder_heads=cfg.enc_heads,
        encoder_points=cfg.enc_points, common_stride=cfg.common_stride)
    classifier = EmbeddingAlignmentClassifier(cfg.hidden_dim, cfg.clip_dim)
    image = cfg.meta_arch == "image"
    decoder_cls = ImageMaskedTransformerDecoder if image else VideoMaskedTransformerDecoder
    decoder = decoder_cls(
        classifier, hidden_dim=cfg.hidden_dim, num_queries=cfg.num_queries, nheads=cfg.nheads,
        dim_feedforward=cfg.dim_feedforward, dec_layers=cfg.dec_layers, mask_dim=cfg.mask_dim,
        pre_norm=cfg.pre_norm)
    model_cls = OVFormerImage if image else OVFormer
    model = model_cls(backbone, pixel_decoder, decoder, cfg.pixel_mean, cfg.pixel_std,
                      cfg.size_divisibility)
    model.config = cfg
    return model
