# ----------------------------------------------------------------------------- data fixtures (tests/test_data.py)
import importlib.util
import os
from pathlib import Path

import pytest

SHARED_DATA = Path(os.environ.get("TRIAGE_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared real-data folder (MANIFEST.md, verify.py); tests that need it skip without it."""
    if not (SHARED_DATA / "verify.py").is_file():
        pytest.skip(f"shared data not found at {SHARED_DATA} (set TRIAGE_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def verify(shared_data):
    """shared/data/verify.py imported as a module (reference decoders and expected hashes)."""
    spec = importlib.util.spec_from_file_location("shared_data_verify", shared_data / "verify.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="session")
def triage_cache(tmp_path_factory):
    """Point $TRIAGE_CACHE at a fresh folder for the session, so tests never touch the user's cache."""
    path = tmp_path_factory.mktemp("triage_cache")
    old = os.environ.get("TRIAGE_CACHE")
    os.environ["TRIAGE_CACHE"] = str(path)
    yield path
    if old is None:
        os.environ.pop("TRIAGE_CACHE", None)
    else:
        os.environ["TRIAGE_CACHE"] = old
# ----------------------------------------------------------------------------- end of data fixtures


# ----------------------------------------------------------------------------- shared fixtures
@pytest.fixture(scope="module")
def one_thread():
    """The models of a test module are tiny: one intra-op thread avoids oversubscribing a shared CPU."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def cifar_base():
    """The smoke-profile CIFAR-10 base (trained in seconds, then reused from the run store), with 50
    training and 50 test images per class in batches of 250, unflipped (tests/test_critical.py,
    tests/test_studies.py)."""
    import triage
    try:
        cfg = triage.make_config("cifar10", profile="smoke")
        run_dir = triage.run(cfg, progress=False, log=lambda *a: None)
        train, test, sp = triage.get_loaders("cifar10", train_per_class=50, test_per_class=50, batch_size=250,
                                             flip=False, seed=cfg.seed)
    except triage.DataError as e:
        pytest.skip(f"CIFAR-10 not available: {e}")
    return triage.load_model(run_dir), train, test, sp
