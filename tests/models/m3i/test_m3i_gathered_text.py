"""M3I's paired-text term on mixed images gathers its negatives across processes: on a 2-process gloo group the mean
of the ranks' losses (and the DDP-averaged gradients) equal the single-process value on the full batch, where each
rank's mixing partners are indices of its own half."""

from __future__ import annotations

import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from hf_unified_pretrain.models.m3i import M3IConfig, M3IForPreTraining, mixed_image_text_loss
from hf_unified_pretrain.objectives import image_text_contrastive_loss

WORLD, LOCAL = 2, 3
TEXT_ONLY = {"intra_view_loss_weight": 0.0, "inter_view_loss_weight": 0.0, "classification_loss_weight": 0.0}
CHECKED = ("logit_scale", "image_projection.weight", "text_projection.weight")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _case():
    """Full-batch inputs; rank r holds rows r*LOCAL .. (r+1)*LOCAL, its partners are local indices."""
    generator = torch.Generator().manual_seed(3)
    config = M3IConfig.from_preset("tiny", **TEXT_ONLY)
    cells = config.grid_size[0] * config.grid_size[1]
    batch = WORLD * LOCAL
    # uneven, per-row different areas (cells = 4 at 64 px / stride 32): 3/4, 1/2, 0 and 1/4 from the partner
    source_index = torch.tensor([[0, 0, 0, 1], [0, 1, 0, 1], [0, 0, 0, 0], [1, 1, 0, 1], [0, 0, 1, 0], [0, 1, 1, 0]])
    assert source_index.shape == (batch, cells)
    local_partner = torch.tensor([[1, 2, 0], [2, 0, 0]])  # rank 1 mixes image 2 into two images, 1 into none
    return {
        "config": config,
        "pixel_values": torch.randn(batch, 3, config.image_size, config.image_size, generator=generator),
        "text_features": torch.randn(batch, config.text_hidden_size, generator=generator),
        "image_embeds": torch.randn(batch, 8, generator=generator),
        "text_embeds": torch.randn(batch, 8, generator=generator),
        "source_index": source_index,
        "local_partner": local_partner,
        "full_partner": torch.cat([local_partner[rank] + rank * LOCAL for rank in range(WORLD)]),
    }


def _worker(rank, port, case, state_dict, results) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        local = slice(rank * LOCAL, (rank + 1) * LOCAL)
        partner = case["local_partner"][rank]
        images = case["image_embeds"][local].clone().requires_grad_(True)
        texts = case["text_embeds"][local].clone().requires_grad_(True)
        loss = mixed_image_text_loss(images, texts, 4.0, case["source_index"][local], partner, gather_distributed=True)
        loss.backward()

        model = M3IForPreTraining(case["config"]).eval()
        model.load_state_dict(state_dict)
        out = model(
            pixel_values=case["pixel_values"][local],
            text_features=case["text_features"][local],
            source_index=case["source_index"][local],
            mix_partner=partner,
        )
        out.loss.backward()
        grads = {name: param.grad for name, param in model.named_parameters() if name in CHECKED}
        results[rank] = (loss.detach(), images.grad, texts.grad, out.losses["image_text"].detach(), grads)
    finally:
        dist.destroy_process_group()


def test_mixed_image_text_negatives_are_gathered_across_two_processes():
    case = _case()
    torch.manual_seed(0)
    model = M3IForPreTraining(case["config"]).eval()
    results = mp.Manager().dict()
    mp.start_processes(
        _worker, args=(_free_port(), case, model.state_dict(), results), nprocs=WORLD, start_method="spawn"
    )
    ranks = [results[rank] for rank in range(WORLD)]

    # the objective: mean of the rank losses = full batch with partners shifted into each rank's half
    images = case["image_embeds"].clone().requires_grad_(True)
    texts = case["text_embeds"].clone().requires_grad_(True)
    full = mixed_image_text_loss(images, texts, 4.0, case["source_index"], case["full_partner"])
    full.backward()
    torch.testing.assert_close(sum(r[0] for r in ranks) / WORLD, full.detach())
    # each rank's backward yields d(sum of rank losses)/d(own rows) = WORLD * d(full mean)/d(own rows)
    torch.testing.assert_close(torch.cat([r[1] for r in ranks]) / WORLD, images.grad)
    torch.testing.assert_close(torch.cat([r[2] for r in ranks]) / WORLD, texts.grad)
    # gathering changes the value: without the other rank's negatives the loss is lower
    alone = mixed_image_text_loss(
        case["image_embeds"][:LOCAL],
        case["text_embeds"][:LOCAL],
        4.0,
        case["source_index"][:LOCAL],
        case["local_partner"][0],
    )
    assert not torch.allclose(alone, ranks[0][0])

    # the model's mixed path: same identity, and DDP's averaged parameter gradients equal the full-batch ones
    out = model(
        pixel_values=case["pixel_values"],
        text_features=case["text_features"],
        source_index=case["source_index"],
        mix_partner=case["full_partner"],
    )
    out.loss.backward()
    torch.testing.assert_close(sum(r[3] for r in ranks) / WORLD, out.losses["image_text"].detach())
    for name, param in model.named_parameters():
        if name in CHECKED:
            torch.testing.assert_close(sum(r[4][name] for r in ranks) / WORLD, param.grad, msg=name)


def test_match_matrix_generalises_the_clip_loss():
    generator = torch.Generator().manual_seed(1)
    images, texts = torch.randn(4, 6, generator=generator), torch.randn(4, 6, generator=generator)
    identity = image_text_contrastive_loss(images, texts, 3.0, match=torch.eye(4))
    torch.testing.assert_close(identity, image_text_contrastive_loss(images, texts, 3.0))
    # a permutation matrix: image i shows caption perm[i]; equals CLIP on the reordered captions
    perm = torch.tensor([2, 0, 3, 1])
    permuted = image_text_contrastive_loss(images, texts, 3.0, match=torch.eye(4)[perm])
    torch.testing.assert_close(permuted, image_text_contrastive_loss(images, texts[perm], 3.0))
