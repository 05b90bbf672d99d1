"""Worker tests run torch on one thread.

The engine tests use 32x32 tensors, where a second intra-op thread buys nothing; on a shared CPU
(several test processes at once) OpenMP threads spinning at barriers made a 4-step training 10x slower
in CPU time (measured: 0.24 s on 1 thread vs 2.95 s on 2 with the machine loaded).
"""

import pytest


@pytest.fixture(autouse=True, scope="session")
def _torch_single_thread():
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(autouse=True)
def _private_full_cache(tmp_path, monkeypatch):
    """Simulations cache their `full` runs; each test gets its own cache, never the user's."""
    monkeypatch.setenv("S4AL_CACHE_DIR", str(tmp_path / "s4al-cache"))
