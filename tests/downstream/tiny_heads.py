"""Tiny keyword arguments for each head `build_head_model` supports (a few thousand parameters each), shared by the
head tests of every backbone."""

TINY_HEAD_KWARGS = {
    "upernet": dict(hidden_size=32, auxiliary_channels=16, num_labels=3),
    "mask2former": dict(
        feature_size=32,
        mask_feature_size=32,
        hidden_dim=32,
        encoder_layers=1,
        decoder_layers=2,
        num_queries=4,
        encoder_feedforward_dim=32,
        dim_feedforward=32,
        num_labels=3,
        num_attention_heads=2,
        train_num_points=64,
    ),
    "detr": dict(
        d_model=32,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        num_queries=4,
        num_labels=3,
    ),
    "deformable_detr": dict(
        d_model=32,
        encoder_layers=1,
        decoder_layers=2,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        num_queries=4,
        num_labels=3,
        encoder_n_points=2,
        decoder_n_points=2,
    ),
}
