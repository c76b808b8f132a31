"""Terraform under deploy/terraform: formatted, wired, and security-checked.

`terraform validate` needs the AWS provider, which CI cannot download (no HashiCorp
registry), so validation runs only where `terraform init` can fetch it; everywhere the
offline wiring check (deploy/terraform/check_wiring.py, python-hcl2) runs instead.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.deploy_support import REPO, TERRAFORM_ROOT, load_deploy_module, terraform, terraform_runner  # noqa: F401 (terraform: a fixture)
CHECKOV_SECONDS_MAX = 180
MODULE_TERRAFORM_VERSION_MIN = (1, 3, 0)  # modules/shoal_cluster/versions.tf required_version


check_wiring = load_deploy_module("check_wiring")


def terraform_version(terraform: str, scratch: Path) -> tuple[int, ...]:
    completed = terraform_runner.run_terraform(terraform, ["version", "-json"], scratch)
    return tuple(int(part) for part in json.loads(completed.stdout)["terraform_version"].split(".")[:3])


def all_module_directories() -> list[Path]:
    return check_wiring.module_directories(TERRAFORM_ROOT)


def test_terraform_files_are_formatted(terraform: str, tmp_path: Path) -> None:
    completed = terraform_runner.run_terraform(terraform, ["fmt", "-check", "-recursive", "-diff", str(TERRAFORM_ROOT)], tmp_path)
    assert completed.returncode == 0, f"terraform fmt would change:\n{completed.stdout}{completed.stderr}"


def test_terraform_validate_where_the_aws_provider_can_be_installed(terraform: str, tmp_path: Path) -> None:
    version = terraform_version(terraform, tmp_path)
    if version < MODULE_TERRAFORM_VERSION_MIN:
        pytest.skip(f"terraform validate skipped: terraform {'.'.join(map(str, version))} is older than the "
                    f"{'.'.join(map(str, MODULE_TERRAFORM_VERSION_MIN))} the AWS module requires "
                    "(fmt and the offline wiring check still ran)")
    copy = tmp_path / "terraform"
    shutil.copytree(TERRAFORM_ROOT, copy, ignore=shutil.ignore_patterns(".terraform", "*.tfstate*"))
    example = copy / "examples" / "minimal"
    init = terraform_runner.run_terraform(terraform, ["init", "-backend=false"], example)
    if init.returncode != 0:
        output = [line.strip("│ ").strip() for line in (init.stderr + init.stdout).splitlines()]
        reason = next((line for line in output if line.startswith("Error:")), "terraform init failed")
        detail = next((line for line in output if "registry.terraform.io" in line), "")
        reason = f"{reason} {detail}".strip()
        pytest.skip(f"terraform validate skipped: the AWS provider cannot be installed here ({reason}); "
                    "test_wiring_check_finds_no_problem covers the wiring offline")
    for directory in (copy / "examples" / "minimal", copy / "examples" / "two_tiers"):
        if directory != example:
            assert terraform_runner.run_terraform(terraform, ["init", "-backend=false"], directory).returncode == 0
        validate = terraform_runner.run_terraform(terraform, ["validate"], directory)
        assert validate.returncode == 0, validate.stdout + validate.stderr


def test_wiring_check_finds_no_problem() -> None:
    directories = all_module_directories()
    names = {f"{path.parent.name}/{path.name}" for path in directories}
    assert {"modules/shoal_cluster", "modules/shoal_node_config", "examples/minimal", "examples/two_tiers"} <= names
    assert check_wiring.check_tree(TERRAFORM_ROOT) == []


BROKEN_COPIES = {
    "undeclared variable": ("modules/shoal_cluster/main.tf", "var.data_dir", "var.data_directory",
                            "var.data_directory is used but not declared"),
    "unknown module argument": ("examples/minimal/main.tf", "subnet_ids          = var.subnet_ids",
                                "subnet_ids          = var.subnet_ids\n  subnets = var.subnet_ids",
                                "passes subnets, which modules/shoal_cluster does not declare"),
    "missing module output": ("examples/minimal/outputs.tf", "module.shoal.bucket_name", "module.shoal.bucket",
                              "modules/shoal_cluster has no output bucket"),
    "undeclared resource": ("modules/shoal_cluster/iam.tf", "Resource  = aws_s3_bucket.cold_tier.arn", "Resource  = aws_s3_bucket.hot_tier.arn",
                            "aws_s3_bucket.hot_tier is referenced but not declared"),
    "template variable not passed": ("modules/shoal_node_config/templates/shoal.service.tftpl", "${node_id}",
                                     "${node_number}", "uses node_number, which templatefile() does not pass"),
    "required variable not passed": ("examples/two_tiers/main.tf", "subnet_ids          = var.subnet_ids\n", "",
                                     "does not pass required variable subnet_ids"),
}


@pytest.mark.parametrize("case", sorted(BROKEN_COPIES))
def test_wiring_check_catches_a_broken_copy(case: str, tmp_path: Path) -> None:
    relative, old, new, expected = BROKEN_COPIES[case]
    copy = tmp_path / "terraform"
    shutil.copytree(TERRAFORM_ROOT, copy, ignore=shutil.ignore_patterns(".terraform", "__pycache__"))
    path = copy / relative
    text = path.read_text()
    assert old in text, f"{relative} no longer contains {old!r}: update this test"
    path.write_text(text.replace(old, new, 1))
    problems = check_wiring.check_tree(copy)
    assert any(expected in problem for problem in problems), problems


@pytest.fixture(scope="module")
def checkov_report() -> dict:
    checkov = terraform_runner.find_checkov()
    if checkov is None:
        pytest.skip("checkov is not installed: deploy/install-test-tools installs it into "
                    "deploy/.tools/checkov-venv; it could not run here (offline?)")
    completed = subprocess.run(
        [checkov, "--directory", str(TERRAFORM_ROOT), "--framework", "terraform", "--output", "json",
         "--skip-download", "--download-external-modules", "false"],
        capture_output=True, text=True, timeout=CHECKOV_SECONDS_MAX, cwd=TERRAFORM_ROOT)
    assert completed.stdout.strip(), f"checkov printed no report:\n{completed.stderr[-2000:]}"
    report = json.loads(completed.stdout)
    return report[0] if isinstance(report, list) else report


def test_checkov_finds_no_failed_check(checkov_report: dict) -> None:
    results = checkov_report["results"]
    failed = [f"{check['check_id']} {check['resource']} ({check['file_path']}): {check['check_name']}"
              for check in results.get("failed_checks", [])]
    assert failed == []
    assert results.get("parsing_errors", []) == []
    assert checkov_report["summary"]["resource_count"] >= 20, "checkov did not scan the module's resources"
    assert len(results["passed_checks"]) >= 50


def test_checkov_skips_only_with_a_written_reason(checkov_report: dict) -> None:
    for check in checkov_report["results"].get("skipped_checks", []):
        reason = check["check_result"].get("suppress_comment") or ""
        assert len(reason) >= 20, f"{check['check_id']} on {check['resource']} is skipped without a reason"
    skips_in_source = [match for path in TERRAFORM_ROOT.rglob("*.tf")
                       for match in re.findall(r"#checkov:skip=([A-Z0-9_]+)(:?.*)", path.read_text())]
    for check_id, reason in skips_in_source:
        assert len(reason.lstrip(":").strip()) >= 20, f"#checkov:skip={check_id} needs a written reason"
