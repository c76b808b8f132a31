"""Run Terraform offline: find a binary, and render Shoal's node configs by applying the
provider-free module shoal_node_config in a scratch directory.

Used by the test suite (tests/test_deploy_*.py) and handy by hand:
    python deploy/terraform/terraform_runner.py   # prints the binary it would use
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

TERRAFORM_ROOT = Path(__file__).resolve().parent
NODE_CONFIG_MODULE = TERRAFORM_ROOT / "modules" / "shoal_node_config"
INSTALLED_TOOLS = TERRAFORM_ROOT.parent / ".tools"
TERRAFORM_COMMAND_SECONDS_MAX = 120  # init/apply of a provider-free module takes ~1 s


def find_terraform() -> str | None:
    """$SHOAL_TERRAFORM, then `terraform` on PATH, then deploy/install-test-tools' copy."""
    candidates = [os.environ.get("SHOAL_TERRAFORM"), shutil.which("terraform"),
                  str(INSTALLED_TOOLS / "bin" / "terraform")]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return os.path.abspath(candidate)
    return None


def find_checkov() -> str | None:
    """$SHOAL_CHECKOV, then deploy/install-test-tools' virtualenv, then PATH."""
    candidates = [os.environ.get("SHOAL_CHECKOV"), str(INSTALLED_TOOLS / "checkov-venv" / "bin" / "checkov"),
                  shutil.which("checkov")]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return os.path.abspath(candidate)
    return None


def terraform_environment(scratch: Path) -> dict[str, str]:
    """No CLI config, no update check, no shared plugin cache: nothing reaches out."""
    environment = {key: value for key, value in os.environ.items() if not key.startswith("TF_")}
    environment.update({
        "TF_CLI_CONFIG_FILE": os.devnull,
        "TF_IN_AUTOMATION": "1",
        "TF_INPUT": "0",
        "CHECKPOINT_DISABLE": "1",
        "TF_DATA_DIR": str(scratch / ".terraform"),
    })
    return environment


def run_terraform(terraform: str, arguments: list[str], directory: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([terraform, *arguments, "-no-color"], cwd=directory,
                          env=terraform_environment(directory), capture_output=True, text=True,
                          timeout=TERRAFORM_COMMAND_SECONDS_MAX)


def render_node_configs(terraform: str, scratch: Path, nodes: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Apply shoal_node_config once per entry of `nodes` (its input variables) and return
    each call's outputs (shoal_yaml, cloud_init, install_script, systemd_unit, ...)."""
    scratch.mkdir(parents=True, exist_ok=True)
    source = os.path.relpath(NODE_CONFIG_MODULE, scratch)
    configuration = {
        "module": {f"node_{index}": {"source": source, **inputs} for index, inputs in enumerate(nodes)},
        "output": {f"node_{index}": {"value": f"${{module.node_{index}}}"} for index in range(len(nodes))},
    }
    (scratch / "main.tf.json").write_text(json.dumps(configuration, indent=2))
    for arguments in (["init", "-backend=false"], ["apply", "-auto-approve"]):
        completed = run_terraform(terraform, arguments, scratch)
        if completed.returncode != 0:
            raise RuntimeError(f"terraform {arguments[0]} failed:\n{completed.stdout}\n{completed.stderr}")
    completed = run_terraform(terraform, ["output", "-json"], scratch)
    if completed.returncode != 0:
        raise RuntimeError(f"terraform output failed:\n{completed.stderr}")
    outputs = json.loads(completed.stdout)
    return [outputs[f"node_{index}"]["value"] for index in range(len(nodes))]


if __name__ == "__main__":
    print(f"terraform: {find_terraform()}\ncheckov: {find_checkov()}")
    sys.exit(0)
