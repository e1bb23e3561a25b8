"""Every test starts with empty in-memory state, config and logs."""

import pytest

import weir.testing


@pytest.fixture(autouse=True)
def _fresh_weir_backend():
    weir.testing.reset()
