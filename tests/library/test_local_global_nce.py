"""Local–global NCE and the symmetric two-view InfoNCE: hand-computed values, mixtures of sources, errors, and the
2-process gloo gather against the single-process value on the full batch."""

from __future__ import annotations

import math
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from hf_unified_pretrain.objectives import (
    info_nce_loss,
    local_global_nce_loss,
    local_global_nce_scores,
    symmetric_info_nce_loss,
    tanh_clip,
)


def _loop_reference(sources, targets, tclip, scale):
    """Scalar loops: each positive location against itself and every location of every other image."""
    batch, dim, height, width = targets.shape
    locations = [(i, j) for i in range(height) for j in range(width)]

    def score(b, c, loc):
        raw = sum(float(sources[b, d]) * float(targets[c, d, loc[0], loc[1]]) for d in range(dim)) * scale
        return raw, tclip * math.tanh(raw / tclip)

    total, squares, count = 0.0, 0.0, 0
    for b in range(batch):
        for c in range(batch):
            for loc in locations:
                squares += score(b, c, loc)[0] ** 2
                count += 1
    for b in range(batch):
        negatives = [score(b, c, loc)[1] for c in range(batch) if c != b for loc in locations]
        for loc in locations:
            positive = score(b, b, loc)[1]
            denominator = math.exp(positive) + sum(math.exp(n) for n in negatives)
            total += positive - math.log(denominator)
    return -total / (batch * len(locations)), squares / count


def _inputs(batch=3, dim=4, height=2, width=3, seed=0, spread=3.0):
    generator = torch.Generator().manual_seed(seed)
    sources = torch.randn(batch, dim, generator=generator, dtype=torch.float64) * spread
    targets = torch.randn(batch, dim, height, width, generator=generator, dtype=torch.float64) * spread
    return sources, targets


def test_matches_hand_computed_loops_with_clipping_and_non_square_maps():
    sources, targets = _inputs()
    loss, mean_square = local_global_nce_loss(sources, targets, tclip=2.5)
    expected_loss, expected_square = _loop_reference(sources, targets, tclip=2.5, scale=4**-0.5)
    assert abs(float(loss) - expected_loss) < 1e-5
    assert abs(float(mean_square) - expected_square) < 1e-5
    # the clip matters at this scale (otherwise the test would not check it)
    unclipped, _ = local_global_nce_loss(sources, targets, tclip=None)
    assert abs(float(unclipped) - float(loss)) > 1e-2


def test_score_scale_and_tanh_clip():
    sources, targets = _inputs(seed=1)
    loss, square = local_global_nce_loss(sources, targets, tclip=3.0, score_scale=0.7)
    expected_loss, expected_square = _loop_reference(sources, targets, tclip=3.0, scale=0.7)
    assert abs(float(loss) - expected_loss) < 1e-5 and abs(float(square) - expected_square) < 1e-5
    values = torch.tensor([-100.0, -1.0, 0.0, 2.0, 100.0])
    torch.testing.assert_close(tanh_clip(values, 10.0), 10.0 * torch.tanh(values / 10.0))
    assert tanh_clip(values, None) is values


def test_mixture_sources_equal_separate_single_sources():
    _, targets = _inputs(batch=4, dim=5, height=3, width=2, seed=2)
    generator = torch.Generator().manual_seed(3)
    components = torch.randn(4, 3, 5, generator=generator, dtype=torch.float64)
    log_probs, _ = local_global_nce_scores(components, targets, tclip=4.0)
    assert log_probs.shape == (4, 3, 6)
    for k in range(3):
        single, _ = local_global_nce_scores(components[:, k], targets, tclip=4.0)
        torch.testing.assert_close(log_probs[:, k], single)
    assert bool((log_probs <= 0).all())


def test_gradients_reach_sources_and_targets():
    sources, targets = _inputs()
    sources.requires_grad_(True)
    targets.requires_grad_(True)
    loss, square = local_global_nce_loss(sources, targets, tclip=5.0)
    (loss + 0.05 * square).backward()
    assert sources.grad.abs().sum() > 0 and targets.grad.abs().sum() > 0


def test_bad_shapes_are_clear_errors():
    sources, targets = _inputs()
    with pytest.raises(ValueError, match="feature dimension"):
        local_global_nce_loss(sources[:, :3], targets)
    with pytest.raises(ValueError, match=r"\(B, D, H, W\)"):
        local_global_nce_loss(sources, targets.flatten(2))


def test_symmetric_info_nce_is_the_mean_of_both_directions():
    generator = torch.Generator().manual_seed(4)
    view_1, view_2 = torch.randn(5, 8, generator=generator), torch.randn(5, 8, generator=generator)
    value = symmetric_info_nce_loss(view_1, view_2, temperature=0.3)
    one = info_nce_loss(view_1, view_2, temperature=0.3)
    other = info_nce_loss(view_2, view_1, temperature=0.3)
    torch.testing.assert_close(value, (one + other) / 2)
    # hand-computed first direction
    a, b = torch.nn.functional.normalize(view_1, dim=-1), torch.nn.functional.normalize(view_2, dim=-1)
    logits = a @ b.T / 0.3
    manual = -(logits.diag() - logits.logsumexp(dim=1)).mean()
    torch.testing.assert_close(one, manual)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _worker(rank, world_size, port, sources, targets, view_1, view_2, results):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        local = slice(rank * 3, (rank + 1) * 3)
        src = sources[local].clone().requires_grad_(True)
        trg = targets[local].clone().requires_grad_(True)
        loss, square = local_global_nce_loss(src, trg, tclip=2.0, gather_distributed=True)
        (loss + 0.05 * square).backward()
        two_view = symmetric_info_nce_loss(view_1[local], view_2[local], temperature=0.2, gather_distributed=True)
        results[rank] = (loss.detach(), square.detach(), src.grad, trg.grad, two_view.detach())
    finally:
        dist.destroy_process_group()


def test_gathered_negatives_on_two_processes_equal_the_full_batch():
    generator = torch.Generator().manual_seed(5)
    sources = torch.randn(6, 4, generator=generator) * 3
    targets = torch.randn(6, 4, 2, 3, generator=generator) * 3
    view_1, view_2 = torch.randn(6, 8, generator=generator), torch.randn(6, 8, generator=generator)
    results = mp.Manager().dict()
    mp.start_processes(
        _worker, args=(2, _free_port(), sources, targets, view_1, view_2, results), nprocs=2, start_method="spawn"
    )
    src, trg = sources.clone().requires_grad_(True), targets.clone().requires_grad_(True)
    full, full_square = local_global_nce_loss(src, trg, tclip=2.0)
    (full + 0.05 * full_square).backward()
    torch.testing.assert_close((results[0][0] + results[1][0]) / 2, full.detach())
    torch.testing.assert_close((results[0][1] + results[1][1]) / 2, full_square.detach())
    # each process's backward gives d(sum of the process losses)/d(own inputs) = 2 * d(full loss)/d(own inputs)
    torch.testing.assert_close(torch.cat([results[0][2], results[1][2]]) / 2, src.grad)
    torch.testing.assert_close(torch.cat([results[0][3], results[1][3]]) / 2, trg.grad)
    full_two_view = symmetric_info_nce_loss(view_1, view_2, temperature=0.2)
    torch.testing.assert_close((results[0][4] + results[1][4]) / 2, full_two_view)
