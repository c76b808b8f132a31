"""Run Terraform offline: find a binary, and render Shoal's node configs by applying the
provider-free modules shoal_node_config and shoal_node_addresses in a scratch directory.

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
NODE_ADDRESSES_MODULE = TERRAFORM_ROOT / "modules" / "shoal_node_addresses"
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


def apply_configuration(terraform: str, scratch: Path, modules: dict[str, tuple[Path, dict[str, Any]]],
                        outputs: dict[str, str]) -> dict[str, Any]:
    """Apply a root configuration made of provider-free module calls (name -> (module
    directory, input variables; a string input may be an expression like
    "${module.addresses.addresses}")) and return the values of `outputs` (name ->
    expression)."""
    scratch.mkdir(parents=True, exist_ok=True)
    configuration = {
        "module": {name: {"source": os.path.relpath(directory, scratch), **inputs}
                   for name, (directory, inputs) in modules.items()},
        "output": {name: {"value": expression} for name, expression in outputs.items()},
    }
    (scratch / "main.tf.json").write_text(json.dumps(configuration, indent=2))
    for arguments in (["init", "-backend=false"], ["apply", "-auto-approve"]):
        completed = run_terraform(terraform, arguments, scratch)
        if completed.returncode != 0:
            raise RuntimeError(f"terraform {arguments[0]} failed:\n{completed.stdout}\n{completed.stderr}")
    completed = run_terraform(terraform, ["output", "-json"], scratch)
    if completed.returncode != 0:
        raise RuntimeError(f"terraform output failed:\n{completed.stderr}")
    values = json.loads(completed.stdout)
    return {name: values[name]["value"] for name in outputs}


def render_node_configs(terraform: str, scratch: Path, nodes: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Apply shoal_node_config once per entry of `nodes` (its input variables) and return
    each call's outputs (shoal_yaml, cloud_init, install_script, systemd_unit, ...)."""
    modules = {f"node_{index}": (NODE_CONFIG_MODULE, inputs) for index, inputs in enumerate(nodes)}
    outputs = {f"node_{index}": f"${{module.node_{index}}}" for index in range(len(nodes))}
    values = apply_configuration(terraform, scratch, modules, outputs)
    return [values[f"node_{index}"] for index in range(len(nodes))]


def render_cluster(terraform: str, scratch: Path, node_count: int, subnet_cidr_blocks: list[str],
                   node_inputs: dict[str, Any], address_inputs: dict[str, Any] | None = None) -> dict[str, Any]:
    """What modules/shoal_cluster wires, without AWS: shoal_node_addresses picks each node's
    private IP from the subnets' CIDR blocks, and shoal_node_config renders every node from
    those addresses (node_id = index) plus `node_inputs`. Returns {"addresses": [...],
    "subnet_indexes": [...], "nodes": [outputs of each node's shoal_node_config]}."""
    modules: dict[str, tuple[Path, dict[str, Any]]] = {
        "addresses": (NODE_ADDRESSES_MODULE, {"node_count": node_count, "subnet_cidr_blocks": subnet_cidr_blocks,
                                              **(address_inputs or {})}),
    }
    for node_id in range(node_count):
        modules[f"node_{node_id}"] = (NODE_CONFIG_MODULE, {
            **node_inputs, "node_id": node_id, "node_addresses": "${module.addresses.addresses}"})
    outputs = {"addresses": "${module.addresses.addresses}", "subnet_indexes": "${module.addresses.subnet_indexes}",
               **{f"node_{node_id}": f"${{module.node_{node_id}}}" for node_id in range(node_count)}}
    values = apply_configuration(terraform, scratch, modules, outputs)
    return {"addresses": values["addresses"], "subnet_indexes": values["subnet_indexes"],
            "nodes": [values[f"node_{node_id}"] for node_id in range(node_count)]}


if __name__ == "__main__":
    print(f"terraform: {find_terraform()}\ncheckov: {find_checkov()}")
    sys.exit(0)
