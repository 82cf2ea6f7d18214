import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _few_threads():
    # Tiny models on many threads spend their time synchronising; one thread is faster here.
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="session")
def local_hub_mirror(tmp_path_factory):
    """The stand-in Hub's mirror (tests/local_hub.py): built once per content hash under
    ~/.cache/kalavai-local-hub (KALAVAI_LOCAL_HUB_CACHE), or in this session's tmp folder when that
    cannot be written."""
    from local_hub import build_mirror

    try:
        return build_mirror()
    except OSError:
        return build_mirror(tmp_path_factory.mktemp("local-hub"))


@pytest.fixture(scope="session")
def local_hub(local_hub_mirror):
    """A stand-in Hugging Face Hub on 127.0.0.1 serving the mirror; `local_hub.env(hf_home)` is the
    environment for a subprocess that reaches it, `local_hub.requests` its request log."""
    from local_hub import serve

    with serve(local_hub_mirror) as hub:
        yield hub
