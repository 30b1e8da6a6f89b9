"""InfoNCE with negatives gathered across a 2-process gloo group equals the single-process value (and gradients)."""

import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from hf_unified_pretrain.objectives import image_text_contrastive_loss, info_nce_loss


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _worker(rank: int, world_size: int, port: int, queries, keys, results) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        local = slice(rank * 4, (rank + 1) * 4)
        q = queries[local].clone().requires_grad_(True)
        k = keys[local].clone().requires_grad_(True)
        loss = info_nce_loss(q, k, temperature=0.2, gather_distributed=True)
        loss.backward()
        text_loss = image_text_contrastive_loss(queries[local], keys[local], 5.0, gather_distributed=True)
        results[rank] = (loss.detach(), q.grad, k.grad, text_loss.detach())
    finally:
        dist.destroy_process_group()


def test_gathered_info_nce_equals_single_process():
    generator = torch.Generator().manual_seed(0)
    queries, keys = torch.randn(8, 16, generator=generator), torch.randn(8, 16, generator=generator)
    manager = mp.Manager()
    results = manager.dict()
    mp.start_processes(_worker, args=(2, _free_port(), queries, keys, results), nprocs=2, start_method="spawn")

    q, k = queries.clone().requires_grad_(True), keys.clone().requires_grad_(True)
    full = info_nce_loss(q, k, temperature=0.2)
    full.backward()
    mean_of_ranks = (results[0][0] + results[1][0]) / 2
    torch.testing.assert_close(mean_of_ranks, full.detach())
    # Each rank's backward yields d(sum of rank losses)/d(own inputs) = 2 * d(full mean loss)/d(own inputs).
    torch.testing.assert_close(torch.cat([results[0][1], results[1][1]]) / 2, q.grad)
    torch.testing.assert_close(torch.cat([results[0][2], results[1][2]]) / 2, k.grad)
    full_text = image_text_contrastive_loss(queries, keys, 5.0)
    torch.testing.assert_close((results[0][3] + results[1][3]) / 2, full_text)
