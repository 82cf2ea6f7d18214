import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _few_threads():
    # Tiny models on many threads spend their time synchronising; one thread is faster here.
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
