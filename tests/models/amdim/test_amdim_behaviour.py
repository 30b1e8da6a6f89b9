"""AMDIM behaviour: loss structure, gradients, the online heads' detachment, mixtures, injectable randomness, errors,
the backbone inside UperNet through `build_head_model`, and the classifier loading a pre-training checkpoint."""

from __future__ import annotations

import pytest
import torch
from huggingface_hub.errors import StrictDataclassClassValidationError

import hf_unified_pretrain  # noqa: F401
from hf_unified_pretrain.downstream import build_head_model
from hf_unified_pretrain.models.amdim import (
    AMDIMBackbone,
    AMDIMConfig,
    AMDIMForImageClassification,
    AMDIMForPreTraining,
    AMDIMModel,
    amdim_classifier_loss,
)
from hf_unified_pretrain.models.amdim.modeling_amdim import AMDIMConv2d
from hf_unified_pretrain.objectives import local_global_nce_scores


def tiny_config(**overrides) -> AMDIMConfig:
    values = dict(image_size=32, ndf=4, n_rkhs=16, n_depth=2, num_labels=3, classifier_hidden_size=8)
    return AMDIMConfig(**{**values, **overrides})


def views(batch=4, size=32, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, size, size, generator=generator), torch.randn(
        batch, 3, size, size, generator=generator
    )


def locations(batch=4):
    return torch.stack([torch.arange(batch) * 3 % 25, torch.arange(batch) * 7 % 25], dim=1)


def test_loss_is_the_sum_of_named_parts_and_weights_apply():
    x1, x2 = views()
    labels = torch.tensor([0, 1, 2, 0])
    model = AMDIMForPreTraining(tiny_config()).train()
    torch.manual_seed(0)
    out = model(x1, x2, labels=labels, source_locations=locations())
    assert set(out.losses) == {"g2l_1t5", "g2l_1t7", "g2l_5t5", "lgt_reg", "cls_mlp", "cls_linear"}
    torch.testing.assert_close(out.loss, sum(out.losses.values()))
    weighted = AMDIMForPreTraining(tiny_config(loss_weights={"lgt_reg": 0.0, "g2l_5t5": 2.0}))
    weighted.load_state_dict(model.state_dict())
    torch.manual_seed(0)
    out_w = weighted.train()(x1, x2, labels=labels, source_locations=locations())
    expected = sum(v for k, v in out_w.losses.items() if k not in ("lgt_reg", "g2l_5t5")) + 2 * out_w.losses["g2l_5t5"]
    torch.testing.assert_close(out_w.loss, expected)
    assert out.metrics["accuracy_mlp"].shape == () and 0 <= float(out.metrics["accuracy_linear"]) <= 1
    assert out.logits_mlp.shape == (4, 2, 3)


def test_terms_follow_the_original_pairing_of_views():
    x1, x2 = views()
    model = AMDIMForPreTraining(tiny_config(use_online_classifiers=False)).train()
    out = model(x1, x2, source_locations=locations())
    (r1_a, r5_a, r7_a), (r1_b, r5_b, r7_b) = out.features_1, out.features_2
    g_a, g_b = r1_a.flatten(1), r1_b.flatten(1)

    def nce(src, trg):
        log_probs, square = local_global_nce_scores(src, trg, tclip=20.0)
        return -log_probs.mean(), square

    l15 = [nce(g_a, r5_b), nce(g_b, r5_a)]
    l17 = [nce(g_a, r7_b), nce(g_b, r7_a)]
    rows = torch.arange(4)
    src_a = r5_a.flatten(2)[rows, :, locations()[:, 0]]
    src_b = r5_b.flatten(2)[rows, :, locations()[:, 1]]
    l55 = [nce(src_a, r5_b), nce(src_b, r5_a)]
    torch.testing.assert_close(out.losses["g2l_1t5"], (l15[0][0] + l15[1][0]) / 2)
    torch.testing.assert_close(out.losses["g2l_1t7"], (l17[0][0] + l17[1][0]) / 2)
    torch.testing.assert_close(out.losses["g2l_5t5"], (l55[0][0] + l55[1][0]) / 2)
    squares = sum(term[1] for term in l15 + l17 + l55)
    torch.testing.assert_close(out.losses["lgt_reg"], 0.05 * squares / 2)


def test_gradients_reach_every_parameter_and_classifier_losses_stay_out_of_the_encoder():
    x1, x2 = views()
    labels = torch.tensor([0, 1, 2, 1])
    model = AMDIMForPreTraining(tiny_config()).train()
    model(x1, x2, labels=labels, source_locations=locations()).loss.backward()
    assert [name for name, p in model.named_parameters() if p.grad is None] == []
    # At init the residual branches' last convs are zero (fix-up), so only their first convs get no gradient yet;
    # after one step every parameter does.
    zero_at_init = [name for name, p in model.named_parameters() if not p.grad.abs().sum() > 0]
    assert zero_at_init and all(name.endswith("conv1.weight") for name in zero_at_init)
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    model.zero_grad()
    model(x1, x2, labels=labels, source_locations=locations()).loss.backward()
    assert [name for name, p in model.named_parameters() if not p.grad.abs().sum() > 0] == []
    model.zero_grad()
    out = model(x1, x2, labels=labels, source_locations=locations())
    (out.losses["cls_mlp"] + out.losses["cls_linear"]).backward()
    encoder_grads = [p.grad for name, p in model.named_parameters() if name.startswith("amdim.")]
    assert all(g is None or not g.abs().sum() > 0 for g in encoder_grads)
    assert model.mlp_classifier.fc.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("use_bn", [False, True])
def test_both_views_in_one_pass_equal_two_separate_encoder_calls_with_per_view_batch_norms(use_bn):
    """The pre-training model stacks both views into one batch; every training-mode batch norm (trunk, embedding
    heads, final map) must still see each view alone, as the original's two encoder calls, and update its running
    statistics twice in the same order. Both the features and every gradient must match."""
    x1, x2 = views()
    x2 = x2 * 3 + 1  # views with different statistics, so pooled batch statistics would differ visibly
    model = AMDIMForPreTraining(tiny_config(use_bn=use_bn, use_online_classifiers=False)).train()
    with torch.no_grad():  # non-zero fix-up convs and running statistics, so nothing compares zeros
        for name, param in model.named_parameters():
            if name.endswith("conv2.weight"):
                param.normal_(0, 0.1)
    separate = AMDIMModel(model.config).train()
    separate.load_state_dict(model.amdim.state_dict())
    out = model(x1, x2, source_locations=locations())
    per_view = [separate(x) for x in (x1, x2)]
    for ours, theirs in zip((out.features_1, out.features_2), per_view):
        expected = (theirs.last_hidden_state, theirs.local_features_5, theirs.local_features_7)
        for feature, reference in zip(ours, expected):
            torch.testing.assert_close(feature, reference, atol=1e-5, rtol=1e-4)
    num_norms = 0
    for (name, buffer), reference in zip(model.amdim.named_buffers(), separate.buffers()):
        torch.testing.assert_close(buffer, reference, msg=name)
        num_norms += name.endswith("num_batches_tracked") and int(buffer) == 2
    assert num_norms == sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.amdim.modules()) > 0
    # Same gradients as the loss computed from the separate encodings.
    weights = [torch.randn_like(t) for t in (*out.features_1, *out.features_2)]
    sum((w * t).sum() for w, t in zip(weights, (*out.features_1, *out.features_2))).backward()
    separate_features = [t for o in per_view for t in (o.last_hidden_state, o.local_features_5, o.local_features_7)]
    sum((w * t).sum() for w, t in zip(weights, separate_features)).backward()
    # Absolute tolerance relative to the largest gradient: the biases before the output batch norms have a true
    # gradient of zero, so theirs is rounding noise of sums of large terms.
    scale = max(float(p.grad.abs().max()) for p in separate.parameters())
    for (name, ours), theirs in zip(model.amdim.named_parameters(), separate.parameters()):
        torch.testing.assert_close(ours.grad, theirs.grad, atol=1e-6 * scale, rtol=1e-4, msg=name)


@pytest.mark.parametrize(
    ("kernel", "stride", "size", "bias", "uses_gemm"),
    [
        (3, 1, 3, False, True),
        (3, 1, 5, True, True),
        (2, 2, 8, False, True),
        (3, 2, 9, True, True),
        (3, 1, 10, False, False),
    ],
)
def test_small_map_convolution_as_unfolded_product_equals_conv2d_with_gradients(kernel, stride, size, bias, uses_gemm):
    """The unfolded-product path (small output maps, non-square channels, stride, bias) and the fallback both match
    `F.conv2d` in value and in the gradients of input, weight and bias."""
    torch.manual_seed(0)
    conv = AMDIMConv2d(6, 5, kernel, stride, 0, bias=bias)
    conv.max_gemm_locations = 16
    pixels = torch.randn(3, 6, size, size + 1, requires_grad=True)
    out_h, out_w = (size - kernel) // stride + 1, (size + 1 - kernel) // stride + 1
    assert (out_h * out_w <= 16) == uses_gemm
    output = conv(pixels)
    expected_pixels = pixels.detach().clone().requires_grad_()
    weight = conv.weight.detach().clone().requires_grad_()
    bias_ref = conv.bias.detach().clone().requires_grad_() if bias else None
    expected = torch.nn.functional.conv2d(expected_pixels, weight, bias_ref, stride)
    torch.testing.assert_close(output, expected, atol=1e-5, rtol=1e-4)
    upstream = torch.randn_like(expected)
    output.backward(upstream)
    expected.backward(upstream)
    torch.testing.assert_close(pixels.grad, expected_pixels.grad, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(conv.weight.grad, weight.grad, atol=1e-5, rtol=1e-4)
    if bias:
        torch.testing.assert_close(conv.bias.grad, bias_ref.grad, atol=1e-5, rtol=1e-4)


def test_source_locations_default_to_torch_randint_per_view_in_the_original_order():
    x1, x2 = views()
    model = AMDIMForPreTraining(tiny_config(use_online_classifiers=False)).train()
    torch.manual_seed(123)
    sampled = model(x1, x2).source_locations
    torch.manual_seed(123)
    first, second = torch.randint(0, 25, (4,)), torch.randint(0, 25, (4,))
    torch.testing.assert_close(sampled, torch.stack([first, second], dim=1))


def test_mixture_of_one_component_is_the_plain_objective_and_k_components_follow_the_formula():
    x1, x2 = views()
    plain = AMDIMForPreTraining(tiny_config(use_online_classifiers=False)).train()
    out_plain = plain(x1, x2, source_locations=locations())
    mixed = AMDIMForPreTraining(
        tiny_config(
            use_online_classifiers=False,
            num_mixture_components=3,
            mixture_entropy_weight=0.3,
            mixture_temperature=2.0,
        )
    ).train()
    mixed.amdim.load_state_dict(plain.amdim.state_dict())
    out = mixed(x1, x2, source_locations=locations())
    assert "mixture_entropy" in out.losses and "mixture_entropy" not in out_plain.losses
    torch.testing.assert_close(out.losses["g2l_5t5"], out_plain.losses["g2l_5t5"])
    g_a, r5_b = out.features_1[0].flatten(1), out.features_2[1]
    log_probs, _ = local_global_nce_scores(mixed.mixture_head(g_a), r5_b, tclip=20.0)
    q = torch.softmax(2.0 * log_probs, dim=1)
    term = -(q * log_probs).sum(1).mean()
    entropy = -(q * q.log()).sum(1).mean()
    g_b, r5_a = out.features_2[0].flatten(1), out.features_1[1]
    log_probs_b, _ = local_global_nce_scores(mixed.mixture_head(g_b), r5_a, tclip=20.0)
    q_b = torch.softmax(2.0 * log_probs_b, dim=1)
    term_b = -(q_b * log_probs_b).sum(1).mean()
    torch.testing.assert_close(out.losses["g2l_1t5"], (term + term_b) / 2)
    assert float(entropy.detach()) > 0


def test_bad_inputs_are_clear_errors():
    x1, x2 = views()
    model = AMDIMForPreTraining(tiny_config(use_online_classifiers=False))
    with pytest.raises(ValueError, match="pixel_values_2"):
        model(x1)
    with pytest.raises(ValueError, match="source_locations"):
        model(x1, x2, source_locations=torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="25 locations"):
        model(x1, x2, source_locations=torch.full((4, 2), 25))
    with pytest.raises(TypeError, match="source_location"):
        model(x1, x2, source_location=locations())
    with pytest.raises(ValueError, match="24x24, smaller than 32x32: AMDIM .*config.image_size.*resize or pad"):
        AMDIMModel(tiny_config())(torch.randn(2, 3, 24, 24))
    with pytest.raises(ValueError, match="`pixel_values_2` has 1 channels but the model expects 3"):
        model(x1, x2[:, :1])
    with pytest.raises(
        ValueError, match=r"`pixel_values` must have shape \(batch_size, num_channels, height, width\)"
    ):
        model(x1[0], x2)
    with pytest.raises(ValueError, match="empty batch"):
        AMDIMModel(tiny_config())(x1[:0])
    with pytest.raises(ValueError, match="image_size must be one of"):
        AMDIMConfig(image_size=48)
    with pytest.raises(StrictDataclassClassValidationError, match="n_rkhs"):
        AMDIMConfig(image_size=128, ndf=8, n_rkhs=32)
    # The shared pixel checks: raw intensities, integer and float64 pixels, NaN, each in either view.
    with pytest.raises(ValueError, match="0..255"):
        model(x1 * 0 + 200.0, x2)
    with pytest.raises(TypeError, match="integer"):
        AMDIMModel(tiny_config())((x1 * 50).to(torch.uint8))
    with pytest.raises(TypeError, match="float64"):
        model(x1, x2.double())
    with pytest.raises(ValueError, match="NaN"):
        model(
            x1,
            x2.masked_fill(
                torch.zeros_like(x2, dtype=torch.bool).index_fill_(0, torch.tensor([1]), True), float("nan")
            ),
        )


def test_classifier_loads_the_online_head_of_a_pretraining_checkpoint_and_can_freeze_the_encoder(tmp_path):
    pretraining = AMDIMForPreTraining(tiny_config())
    pretraining.save_pretrained(tmp_path)
    classifier = AMDIMForImageClassification.from_pretrained(tmp_path)
    torch.testing.assert_close(classifier.mlp_classifier.fc1.weight, pretraining.mlp_classifier.fc1.weight)
    torch.testing.assert_close(
        classifier.amdim.encoder.layers[2].units[0].conv1.weight,
        pretraining.amdim.encoder.layers[2].units[0].conv1.weight,
    )
    linear = AMDIMForImageClassification.from_pretrained(tmp_path, classifier_type="linear")
    torch.testing.assert_close(linear.linear_classifier.fc.weight, pretraining.linear_classifier.fc.weight)
    frozen = AMDIMForImageClassification(tiny_config(classifier_detach_features=True)).train()
    x1, _ = views()
    out = frozen(x1, labels=torch.tensor([0, 1, 2, 0]))
    out.loss.backward()
    assert all(p.grad is None for name, p in frozen.named_parameters() if name.startswith("amdim."))
    logits = out.logits.detach()
    expected = torch.nn.functional.cross_entropy(10 * torch.tanh(logits / 10), torch.tensor([0, 1, 2, 0]))
    torch.testing.assert_close(out.loss.detach(), expected + 1e-3 * logits.square().mean())
    torch.testing.assert_close(amdim_classifier_loss(logits, torch.tensor([0, 1, 2, 0])), out.loss.detach())


def test_backbone_in_upernet_through_build_head_model(tmp_path):
    pretraining = AMDIMForPreTraining(tiny_config(image_size=64, ndf=4, n_rkhs=32))
    pretraining.save_pretrained(tmp_path / "pretrained")
    stages = ["stage1", "stage2", "stage3", "stage4"]
    model = build_head_model(
        "upernet", tmp_path / "pretrained", out_features=stages, hidden_size=16, auxiliary_channels=8, num_labels=3
    )
    backbone = model.backbone
    assert isinstance(backbone, AMDIMBackbone) and backbone.out_features == stages
    torch.testing.assert_close(
        backbone.amdim.encoder.layers[1].units[0].conv1.weight,
        pretraining.amdim.encoder.layers[1].units[0].conv1.weight,
    )
    pixels = torch.randn(2, 3, 64, 64)
    labels = torch.randint(0, 3, (2, 64, 64))
    out = model(pixel_values=pixels, labels=labels)
    assert out.logits.shape == (2, 3, 64, 64)
    out.loss.backward()
    assert backbone.amdim.encoder.layers[0].conv.weight.grad.abs().sum() > 0
    model.eval().save_pretrained(tmp_path / "upernet")
    reloaded = type(model).from_pretrained(tmp_path / "upernet").eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(pixel_values=pixels).logits, model(pixel_values=pixels).logits)
