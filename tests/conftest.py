import os

import pytest

from tests.support import running_broker


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "soak" in item.keywords and os.environ.get("SHOAL_SOAK") != "1":
            item.add_marker(pytest.mark.skip(reason="soak test: set SHOAL_SOAK=1"))
        if "bench" in item.keywords and os.environ.get("SHOAL_BENCH") != "1":
            item.add_marker(pytest.mark.skip(reason="benchmark: set SHOAL_BENCH=1"))


@pytest.fixture
def broker(tmp_path):
    """A fresh single-node broker process; stopped (SIGTERM, then SIGKILL) afterwards."""
    with running_broker(tmp_path / "node0") as process:
        yield process
