"""Training tests run single-threaded: tiny models are faster that way, and others share the CPU."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: faster, and the tests run beside others
    yield
    torch.set_num_threads(threads)
