"""Shared fixtures. Tests run on a 2-core CPU: keep models tiny and threads few."""
from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("OMP_NUM_THREADS", "2")


def pytest_configure(config):
    import torch

    config.addinivalue_line("markers",
                            "browser: drives JupyterLab or a report in headless Chromium (tests/test_browser.py)")

    torch.set_num_threads(2)


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module of tiny models: on a shared 2-core machine two threads of tiny convolutions
    mostly wait on each other. Use with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)
