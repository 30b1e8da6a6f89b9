"""InternImage tests (as the iTPN ones) run torch single-threaded: the models are tiny, and on a machine whose 2 cores are shared by several
test runs, intra-op threads mostly wait for each other (measured: this folder's tester file went from ~250 s to ~75 s
wall time). The previous setting is restored after each module."""

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def _single_threaded_torch():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
