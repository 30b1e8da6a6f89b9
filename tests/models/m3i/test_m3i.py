"""M3I: configuration, each term against its single-paradigm loss computed directly, mixing bookkeeping, teachers,
gradients, and the backbone export, on both backbones (InternImage tiny, MVP's ViT tiny)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from transformers import BertConfig, BertModel

import hf_unified_pretrain  # noqa: F401  (registers the Auto classes)
from hf_unified_pretrain.masking import source_fractions
from hf_unified_pretrain.models.internimage import InternImageBackbone
from hf_unified_pretrain.models.m3i import M3IConfig, M3IForPreTraining, mixed_image_text_loss, modeling_m3i
from hf_unified_pretrain.models.m3i.modeling_m3i import identity_geometry, relative_position_embedding
from hf_unified_pretrain.models.mvp import MVPBackbone
from hf_unified_pretrain.objectives import image_text_contrastive_loss, unigrad_dense_loss
from hf_unified_pretrain.teachers import FrozenTextTeacher
from tests.library.test_dense_loss import _SiameseIMReference

PRESETS = ["tiny", "tiny-vit"]
OFF = {f"{part}_loss_weight": 0.0 for part in ("intra_view", "inter_view", "classification", "image_text")}
GEOMETRY = torch.tensor(
    [[0.1, -0.2, 0.8, 1.1, 0.0, 0.0], [0.05, 0.3, 1.2, 0.9, 1.0, 1.1], [0.2, 0.1, 0.9, 0.9, 1.0, 0.8]]
)


def _model(preset: str, **overrides) -> M3IForPreTraining:
    model = M3IForPreTraining(M3IConfig.from_preset(preset, **overrides))
    model.build_ema_teacher()
    return model


def _inputs(config: M3IConfig, batch: int = 3) -> dict[str, torch.Tensor]:
    size = config.image_size
    return {
        "pixel_values": torch.randn(batch, 3, size, size),
        "pixel_values_2": torch.randn(batch, 3, size, size),
        "relative_geometry": GEOMETRY[:batch],
        "labels": torch.tensor([0, 3, 1, 4][:batch]),
        "text_features": torch.randn(batch, config.text_hidden_size),
    }


def _mask(config: M3IConfig, batch: int = 3) -> torch.Tensor:
    cells = config.grid_size[0] * config.grid_size[1]
    mask = torch.zeros(batch, cells, dtype=torch.bool)
    for row in range(batch):  # asymmetric: a different cell per row, the preset's exact count
        mask[row, (torch.arange(config.num_masking_patches) * 3 + row) % cells] = True
    return mask


# -- configuration ------------------------------------------------------------------------------------------------


def test_config_nests_either_backbone_and_round_trips(tmp_path):
    for preset, backbone_type, stride in (("tiny", "internimage", 32), ("tiny-vit", "mvp_vision", 8)):
        config = M3IConfig.from_preset(preset)
        assert config.backbone_config.model_type == backbone_type and config.feature_stride == stride
        config.save_pretrained(tmp_path / preset)
        loaded = M3IConfig.from_pretrained(tmp_path / preset)
        assert loaded.backbone_config.to_dict() == config.backbone_config.to_dict()
        assert loaded.feature_stage == config.feature_stage == config.backbone_config.stage_names[-1]


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="every loss weight is 0"):
        M3IConfig.from_preset("tiny", **OFF)
    with pytest.raises(ValueError, match="feature_stage"):
        M3IConfig.from_preset("tiny", feature_stage="stage9")
    with pytest.raises(ValueError, match="num_masking_patches"):
        M3IConfig.from_preset("tiny", num_masking_patches=4)
    with pytest.raises(ValueError, match=">= 0"):
        M3IConfig.from_preset("tiny", classification_loss_weight=-1.0)


# -- relative geometry ---------------------------------------------------------------------------------------------


def test_relative_embedding_matches_siameseim_and_identity_is_the_grid():
    dim, grid = 16, 4
    geometry = GEOMETRY[:2]
    ours = relative_position_embedding(geometry, (grid, grid), dim)
    reference = _SiameseIMReference.relative_embedding(*geometry.unbind(-1), dim, grid)
    torch.testing.assert_close(ours, reference)
    # identity geometry on a non-square grid: rows/cols are the cell indices, scales log(1) = 0
    embedding = relative_position_embedding(identity_geometry(1), (2, 3), 8)
    omega = torch.tensor([1.0, 0.01])
    rows = torch.tensor([0.0, 0, 0, 1, 1, 1])
    cols = torch.tensor([0.0, 1, 2, 0, 1, 2])
    torch.testing.assert_close(embedding[0, :, 0:2], torch.sin(rows[:, None] * omega))
    torch.testing.assert_close(embedding[0, :, 6:8], torch.cos(cols[:, None] * omega))
    torch.testing.assert_close(embedding[0, :, 8:10], torch.zeros(6, 2))


# -- single terms reduce to the single-paradigm losses ------------------------------------------------------------


@pytest.mark.parametrize("preset", PRESETS)
def test_classification_alone_is_supervised_cross_entropy(preset):
    model = _model(preset, **{**OFF, "classification_loss_weight": 0.7})
    inputs = _inputs(model.config)
    out = model(pixel_values=inputs["pixel_values"], labels=inputs["labels"])
    tokens = model.m3i(inputs["pixel_values"]).last_hidden_state  # no masking when no dense term is on
    expected = F.cross_entropy(model.classifier(tokens), inputs["labels"])
    torch.testing.assert_close(out.losses["classification"], expected)
    torch.testing.assert_close(out.loss, 0.7 * expected)
    assert model.predictor is None and model.image_projection is None


def test_category_head_is_internimage_style_on_tokens():
    # per token: linear expansion (no bias) + BatchNorm (batch statistics in training) + GELU; mean; linear.
    model = _model("tiny", **{**OFF, "classification_loss_weight": 1.0}).train()
    head = model.classifier
    channels = model.m3i.backbone.channels[0]
    assert head.expand.weight.shape == (round(1.5 * channels), channels) and head.expand.bias is None
    with torch.no_grad():
        head.norm.weight.uniform_(0.5, 1.5)
        head.norm.bias.uniform_(-0.2, 0.2)
    tokens = torch.randn(3, 4, channels) * 2 + 1
    hidden = tokens.reshape(12, channels) @ head.expand.weight.T
    mean, var = hidden.mean(0), hidden.var(0, unbiased=False)
    normed = (hidden - mean) / torch.sqrt(var + head.norm.eps) * head.norm.weight + head.norm.bias
    pooled = F.gelu(normed).view(3, 4, -1).mean(1)
    torch.testing.assert_close(head(tokens), pooled @ head.dense.weight.T + head.dense.bias, atol=1e-5, rtol=1e-4)
    linear = _model("tiny", **{**OFF, "classification_loss_weight": 1.0, "classifier_hidden_ratio": 0}).classifier
    assert linear.expand is None
    torch.testing.assert_close(linear(tokens), F.linear(tokens.mean(1), linear.dense.weight, linear.dense.bias))
    with pytest.raises(ValueError, match="classifier_hidden_ratio must be >= 0"):
        M3IConfig.from_preset("tiny", classifier_hidden_ratio=-1)


@pytest.mark.parametrize("preset", PRESETS)
def test_image_text_alone_is_clip_contrastive(preset):
    model = _model(preset, **{**OFF, "image_text_loss_weight": 1.0})
    inputs = _inputs(model.config)
    out = model(pixel_values=inputs["pixel_values"], text_features=inputs["text_features"])
    image = F.normalize(model.image_projection(model.m3i(inputs["pixel_values"]).pooler_output), dim=-1)
    text = F.normalize(model.text_projection(inputs["text_features"]), dim=-1)
    scores = math.exp(model.config.logit_scale_init_value) * image @ text.T
    labels = torch.arange(3)
    expected = (F.cross_entropy(scores, labels) + F.cross_entropy(scores.T, labels)) / 2
    torch.testing.assert_close(out.losses["image_text"], expected)
    torch.testing.assert_close(out.loss, expected)


def _dense_predictions(model, pixel_values, mask, query_geometry=None):
    """The predictor run by hand: visible cells as context, queries at the masked cells or at view-2 cells."""
    tokens = model.m3i(
        pixel_values * _pixel_keep(mask, model.config.feature_stride, pixel_values.shape)
    ).projected_features
    grid, dim = model.config.grid_size, model.config.decoder_hidden_size
    positions = relative_position_embedding(identity_geometry(mask.shape[0]), grid, dim)
    keep = [(~row).nonzero().flatten() for row in mask]
    context = torch.stack([tokens[b, k] for b, k in enumerate(keep)])
    context_position = torch.stack([positions[b, k] for b, k in enumerate(keep)])
    zeros = torch.zeros(context.shape[:2], dtype=torch.long)
    if query_geometry is None:
        masked = [row.nonzero().flatten() for row in mask]
        query_position = torch.stack([positions[b, m] for b, m in enumerate(masked)])
    else:
        query_position = relative_position_embedding(query_geometry, grid, dim)
    query_source = torch.zeros(query_position.shape[:2], dtype=torch.long)
    return model.predictor(context, context_position, zeros, query_position, query_source)


def _pixel_keep(mask, stride, shape):
    cells = mask.view(shape[0], 1, shape[2] // stride, shape[3] // stride)
    return (~cells.repeat_interleave(stride, 2).repeat_interleave(stride, 3)).float()


@pytest.mark.parametrize("preset", PRESETS)
def test_inter_view_alone_is_siameseim_dense_loss(preset):
    model = _model(preset, **{**OFF, "inter_view_loss_weight": 1.0})
    inputs, mask = _inputs(model.config), _mask(model.config)
    out = model(
        pixel_values=inputs["pixel_values"],
        bool_masked_pos=mask,
        pixel_values_2=inputs["pixel_values_2"],
        relative_geometry=inputs["relative_geometry"],
    )
    predictions = _dense_predictions(model, inputs["pixel_values"], mask, inputs["relative_geometry"])
    # the EMA copy equals the student at the start: SiameseIM's momentum target on the full view 2
    targets = model.m3i(inputs["pixel_values_2"]).projected_features.detach()
    expected = unigrad_dense_loss(predictions, targets, neg_weight=0.02)
    torch.testing.assert_close(out.losses["inter_view"], expected)
    torch.testing.assert_close(out.loss, expected)


@pytest.mark.parametrize("preset", PRESETS)
def test_intra_view_alone_predicts_the_masked_cells(preset):
    model = _model(preset, **{**OFF, "intra_view_loss_weight": 1.0}, neg_weight=0.5)
    inputs, mask = _inputs(model.config), _mask(model.config)
    out = model(pixel_values=inputs["pixel_values"], bool_masked_pos=mask)
    predictions = _dense_predictions(model, inputs["pixel_values"], mask)
    targets = model.m3i(inputs["pixel_values"]).projected_features.detach()
    masked_targets = torch.stack([targets[b, row.nonzero().flatten()] for b, row in enumerate(mask)])
    torch.testing.assert_close(
        out.losses["intra_view"], unigrad_dense_loss(predictions, masked_targets, neg_weight=0.5)
    )


def test_normalize_predictions_layer_norms_the_predicted_tokens_of_both_dense_terms():
    model = _model("tiny", neg_weight=0.3, normalize_predictions=True)
    inputs, mask = _inputs(model.config), _mask(model.config)
    out = model(
        pixel_values=inputs["pixel_values"],
        bool_masked_pos=mask,
        pixel_values_2=inputs["pixel_values_2"],
        relative_geometry=inputs["relative_geometry"],
        labels=inputs["labels"],
        text_features=inputs["text_features"],
    )
    inter = _dense_predictions(model, inputs["pixel_values"], mask, inputs["relative_geometry"])
    intra = _dense_predictions(model, inputs["pixel_values"], mask)
    targets_2 = model.m3i(inputs["pixel_values_2"]).projected_features.detach()
    targets_1 = model.m3i(inputs["pixel_values"]).projected_features.detach()
    masked_targets = torch.stack([targets_1[b, row.nonzero().flatten()] for b, row in enumerate(mask)])
    for name, predictions, targets in (("inter_view", inter, targets_2), ("intra_view", intra, masked_targets)):
        expected = unigrad_dense_loss(predictions, targets, neg_weight=0.3, normalize_predictions=True)
        torch.testing.assert_close(out.losses[name], expected)
        # the flag matters: the raw predictions give another value
        assert not torch.allclose(expected, unigrad_dense_loss(predictions, targets, neg_weight=0.3))


@pytest.mark.parametrize("preset", PRESETS)
def test_predictor_attention_eager_equals_sdpa_and_goes_through_the_interface(preset, monkeypatch):
    model = _model(preset, classification_loss_weight=0.0, image_text_loss_weight=0.0).eval()
    assert model.config._attn_implementation == "sdpa"
    inputs, mask = _inputs(model.config), _mask(model.config)
    dense = {key: inputs[key] for key in ("pixel_values", "pixel_values_2", "relative_geometry")}
    with torch.no_grad():
        sdpa = model(**dense, bool_masked_pos=mask)
    calls, eager_attention = [], modeling_m3i.eager_attention_forward

    def spy(module, query, *args, **kwargs):
        calls.append((type(module).__name__, tuple(query.shape)))
        return eager_attention(module, query, *args, **kwargs)

    monkeypatch.setattr(modeling_m3i, "eager_attention_forward", spy)
    model.set_attn_implementation("eager")
    assert model.config._attn_implementation == "eager"
    with torch.no_grad():
        eager = model(**dense, bool_masked_pos=mask)
    assert set(eager.losses) == {"intra_view", "inter_view"}
    for name in eager.losses:
        torch.testing.assert_close(eager.losses[name], sdpa.losses[name], atol=1e-5, rtol=1e-4)
    # the predictor's attention ran eagerly: intra-view once, inter-view once (one source), 4 heads of width 8
    predictor_calls = [shape for owner, shape in calls if owner == "M3IPredictorLayer"]
    assert len(predictor_calls) == 2 and all(shape[1:2] == (4,) and shape[3] == 8 for shape in predictor_calls)


def test_predictor_layer_is_hand_written_attention():
    config = M3IConfig.from_preset("tiny", decoder_num_attention_heads=2)
    layer = M3IForPreTraining(config).predictor.layers[0].eval()
    hidden = torch.randn(2, 5, config.decoder_hidden_size, generator=torch.Generator().manual_seed(4))
    normed = layer.norm1(hidden)
    query, key, value = layer.qkv(normed).view(2, 5, 3, 2, 16).permute(2, 0, 3, 1, 4)
    weights = torch.softmax(query @ key.transpose(-1, -2) / 4.0, dim=-1)  # head width 16
    attended = hidden + layer.proj((weights @ value).transpose(1, 2).reshape(2, 5, 32))
    expected = attended + layer.mlp(layer.norm2(attended))
    for implementation in ("eager", "sdpa"):
        config._attn_implementation = implementation
        with torch.no_grad():
            torch.testing.assert_close(layer(hidden), expected, atol=1e-5, rtol=1e-4)


# -- mixed input ---------------------------------------------------------------------------------------------------


def test_mixed_labels_are_area_weighted_and_targets_follow_the_source():
    model = _model("tiny-vit", **{**OFF, "classification_loss_weight": 1.0})
    inputs = _inputs(model.config)
    partner = torch.tensor([1, 2, 0])
    source_index = torch.zeros(3, 16, dtype=torch.long)
    source_index[0, :4] = 1  # 1/4 of image 0's input from image 1
    source_index[2, :12] = 1  # 3/4 of image 2's input from image 0
    out = model(
        pixel_values=inputs["pixel_values"], labels=inputs["labels"], source_index=source_index, mix_partner=partner
    )
    soft = torch.zeros(3, 5)
    soft[0, 0], soft[0, 3] = 0.75, 0.25  # labels 0 (self) and 3 (partner 1)
    soft[1, 3] = 1.0
    soft[2, 1], soft[2, 0] = 0.25, 0.75
    logits = model.classifier(model.m3i(inputs["pixel_values"]).last_hidden_state)
    expected = -(soft * F.log_softmax(logits, -1)).sum(-1).mean()
    torch.testing.assert_close(out.losses["classification"], expected)


def test_mixed_intra_view_targets_come_from_the_partner_clean_view():
    model = _model("tiny-vit", **{**OFF, "intra_view_loss_weight": 1.0})
    config = model.config
    inputs, mask = _inputs(config), _mask(config)
    partner = torch.tensor([2, 0, 1])
    source_index = (torch.arange(16) % 2).expand(3, -1).clone()  # odd cells from the partner
    clean = inputs["pixel_values_2"]
    out = model(
        pixel_values=inputs["pixel_values"],
        bool_masked_pos=mask,
        target_pixel_values=clean,
        source_index=source_index,
        mix_partner=partner,
    )
    targets = model.m3i(clean).projected_features.detach()
    masked = [row.nonzero().flatten() for row in mask]
    expected_targets = torch.stack(
        [torch.stack([targets[partner[b] if n % 2 else b, n] for n in m.tolist()]) for b, m in enumerate(masked)]
    )
    # recompute predictions with the source embeddings the model adds
    grid, dim = config.grid_size, config.decoder_hidden_size
    tokens = model.m3i(
        inputs["pixel_values"] * _pixel_keep(mask, config.feature_stride, clean.shape)
    ).projected_features
    positions = relative_position_embedding(identity_geometry(3), grid, dim)
    keep = [(~row).nonzero().flatten() for row in mask]
    predictions = model.predictor(
        torch.stack([tokens[b, k] for b, k in enumerate(keep)]),
        torch.stack([positions[b, k] for b, k in enumerate(keep)]),
        torch.stack([source_index[b, k] for b, k in enumerate(keep)]),
        torch.stack([positions[b, m] for b, m in enumerate(masked)]),
        torch.stack([source_index[b, m] for b, m in enumerate(masked)]),
    )
    torch.testing.assert_close(out.losses["intra_view"], unigrad_dense_loss(predictions, expected_targets))


def test_mixed_image_text_loss_hand_checked():
    image = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    text = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    unmixed = mixed_image_text_loss(image, text, 2.0, torch.zeros(2, 4, dtype=torch.long), torch.tensor([1, 0]))
    torch.testing.assert_close(unmixed, image_text_contrastive_loss(image, text, 2.0))
    source_index = torch.tensor([[0, 0, 0, 1], [0, 0, 0, 0]])  # image 0: 3/4 own caption, 1/4 caption 1
    scores = 2.0 * image @ text.T
    i2t = (
        -(
            0.75 * F.log_softmax(scores[0], 0)[0]
            + 0.25 * F.log_softmax(scores[0], 0)[1]
            + F.log_softmax(scores[1], 0)[1]
        )
        / 2
    )
    # text 1 appears in image 0 (1/4) and image 1 (1): normalised column (0.2, 0.8)
    t2i = (
        -(
            F.log_softmax(scores[:, 0], 0)[0]
            + 0.2 * F.log_softmax(scores[:, 1], 0)[0]
            + 0.8 * F.log_softmax(scores[:, 1], 0)[1]
        )
        / 2
    )
    mixed = mixed_image_text_loss(image, text, 2.0, source_index, torch.tensor([1, 0]))
    torch.testing.assert_close(mixed, (i2t + t2i) / 2)
    assert torch.equal(source_fractions(source_index, 2)[0], torch.tensor([0.75, 0.25]))


# -- all terms: gradients, teachers, saving --------------------------------------------------------------------------


@pytest.mark.parametrize("preset", PRESETS)
def test_all_terms_gradients_reach_every_trainable_parameter(preset):
    model = _model(preset)
    # InternImage's DCNv3 offset/mask heads start at zero (a fixed 3x3 average), which cuts the gradient of the
    # depth-wise branch that feeds them: give them values so every parameter is on a gradient path.
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if ".dcn.offset." in name or ".dcn.mask." in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3)
    config = model.config
    inputs = _inputs(config)
    cells = config.grid_size[0] * config.grid_size[1]
    source_index = (torch.arange(cells) % 2).expand(3, -1).clone()
    out = model(
        **inputs,
        bool_masked_pos=_mask(config),
        target_pixel_values=torch.randn_like(inputs["pixel_values"]),
        source_index=source_index,
        mix_partner=torch.tensor([1, 2, 0]),
    )
    assert set(out.losses) == {"intra_view", "inter_view", "classification", "image_text"}
    torch.testing.assert_close(out.loss, sum(out.losses.values()))
    out.loss.backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.any())]
    assert missing == []
    ema = model.get_teacher("ema")
    assert all(p.grad is None for p in ema.parameters())


def test_teachers_are_never_saved_or_optimised(tmp_path):
    model = _model("tiny-vit")
    bert = BertModel(
        BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37)
    )
    model.set_teacher(FrozenTextTeacher(bert), name="text")
    keys = set(model.state_dict())
    assert not any(key.startswith(("ema", "text.", "_teacher")) or "module." in key for key in keys)
    assert {id(p) for p in model.parameters()}.isdisjoint(
        {id(p) for t in model.teachers.values() for p in t.parameters()}
    )
    ids = torch.randint(0, 50, (3, 7))
    inputs = _inputs(model.config)
    inputs.pop("text_features")
    with_teacher = model(**inputs, bool_masked_pos=_mask(model.config), input_ids=ids)
    features = bert(input_ids=ids).pooler_output
    direct = model(**inputs, bool_masked_pos=_mask(model.config), text_features=features)
    torch.testing.assert_close(with_teacher.losses["image_text"], direct.losses["image_text"])
    model.save_pretrained(tmp_path)
    reloaded = M3IForPreTraining.from_pretrained(tmp_path)
    assert reloaded.teachers == {}
    assert set(reloaded.state_dict()) == keys


def test_ema_update_moves_only_the_teacher():
    model = _model("tiny-vit")
    ema = model.get_teacher("ema")
    with torch.no_grad():
        for p in model.m3i.parameters():
            p.add_(1.0)
    before = [p.clone() for p in ema.parameters()]
    ema.update(model.m3i, momentum=0.9)
    for old, new, student in zip(before, ema.parameters(), model.m3i.parameters()):
        torch.testing.assert_close(new, 0.9 * old + 0.1 * student)
    assert ema.momentum_at(0, 10) == pytest.approx(0.995) and ema.momentum_at(10, 10) == pytest.approx(1.0)


@pytest.mark.parametrize(("preset", "backbone_class"), [("tiny", InternImageBackbone), ("tiny-vit", MVPBackbone)])
def test_save_backbone_loads_into_the_backbone_classes(tmp_path, preset, backbone_class):
    model = _model(preset).eval()
    model.save_backbone(tmp_path)
    pixels = torch.randn(2, 3, model.config.image_size, model.config.image_size)
    expected = model.m3i.backbone(pixels).feature_maps[-1]
    loaded = backbone_class.from_pretrained(tmp_path).eval()
    torch.testing.assert_close(loaded(pixels).feature_maps[-1], expected)
    # (AutoBackbone.from_pretrained of this transformers version asks the Hub whether the path is a repository, so
    # local folders go through the backbone's own class.)


def test_saved_backbone_also_loads_into_the_bare_internimage_model(tmp_path):
    from hf_unified_pretrain.models.internimage import InternImageModel

    model = _model("tiny").eval()
    model.save_backbone(tmp_path)
    pixels = torch.randn(2, 3, 64, 64)
    bare = InternImageModel.from_pretrained(tmp_path).eval()
    torch.testing.assert_close(bare(pixels).last_hidden_state, model.m3i.backbone(pixels).feature_maps[-1])


def test_clear_errors():
    model = M3IForPreTraining(M3IConfig.from_preset("tiny-vit"))
    inputs = _inputs(model.config)
    with pytest.raises(ValueError, match="build_ema_teacher"):
        model(**inputs)
    model.build_ema_teacher()
    with pytest.raises(TypeError, match="bool_mask_pos"):
        model(**inputs, bool_mask_pos=_mask(model.config))
    with pytest.raises(ValueError, match="both source_index"):
        model(**inputs, source_index=torch.zeros(3, 16, dtype=torch.long))
    inputs.pop("text_features")
    with pytest.raises(ValueError, match="input_ids"):
        model(**inputs)


def test_another_input_size_needs_interpolate_pos_encoding_on_a_vit_only():
    vit = _model("tiny-vit")  # 32 px, patch 8: 4x4 cells; 48 px gives 6x6
    inputs = {
        **_inputs(vit.config),
        "pixel_values": torch.randn(3, 3, 48, 48),
        "pixel_values_2": torch.randn(3, 3, 48, 48),
    }
    mask = torch.zeros(3, 36, dtype=torch.bool)
    mask[0, [1, 7, 20]] = True
    mask[1, [2, 13, 35]] = True
    mask[2, [0, 21, 30]] = True
    with pytest.raises(ValueError, match="interpolate_pos_encoding"):
        vit(**inputs, bool_masked_pos=mask)
    outputs = vit(**inputs, bool_masked_pos=mask, interpolate_pos_encoding=True)
    assert set(outputs.losses) == {"intra_view", "inter_view", "classification", "image_text"}
    assert all(torch.isfinite(loss) for loss in outputs.losses.values())
    assert vit.m3i(inputs["pixel_values"], interpolate_pos_encoding=True).last_hidden_state.shape == (3, 36, 32)
    # a ConvNet backbone has no position tables: any multiple of the stride passes, with or without the flag
    convnet = _model("tiny")
    pixels = torch.randn(2, 3, 96, 96)
    plain = convnet.m3i(pixels).last_hidden_state
    torch.testing.assert_close(convnet.m3i(pixels, interpolate_pos_encoding=True).last_hidden_state, plain)
    assert plain.shape[1] == 9
