import os
from pathlib import Path

import pytest
import torch

import ember


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", help="also run the long real-data training tests")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _seed():
    ember.set_random_seed(0)


@pytest.fixture
def ember_data() -> Path:
    """The real datasets folder ($EMBER_DATA); tests that need it skip without it."""
    value = os.environ.get("EMBER_DATA")
    if not value or not Path(value).is_dir():
        pytest.skip("needs the real datasets: set EMBER_DATA (CI uses ../shared/data)")
    return Path(value)


def assert_close(actual, expected, atol=1e-5, rtol=1e-5):
    torch.testing.assert_close(torch.as_tensor(actual), torch.as_tensor(expected), atol=atol, rtol=rtol)
