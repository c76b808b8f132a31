#!/usr/bin/env python3
"""Offline wiring check for Shoal's Terraform: what `terraform validate` would catch
without provider schemas, and some it would not.

`terraform validate` needs the AWS provider's schema, which cannot be downloaded where
the HashiCorp registry is out of reach (CI here). This parses every .tf file with
python-hcl2 and checks, for each module and example directory:

- every `var.X` used is declared, and every declared variable is used;
- every `local.X` used is defined;
- every resource and data source referenced is declared in the same module;
- every `module.M.O` names a declared module call and an output that module has;
- every module call passes only variables the child declares, and all of its required
  ones (no default);
- every `templatefile()` / `file()` path exists, every variable a template uses is
  passed to it, and every variable passed is used;
- every variable and output has a description;
- every resource type's provider is in required_providers.

Usage: python deploy/terraform/check_wiring.py [TERRAFORM_ROOT]  (exit 1 on problems)
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import hcl2

MODULE_META_ARGUMENTS = {"source", "version", "count", "for_each", "providers", "depends_on"}
TEMPLATE_KEYWORDS = {"for", "in", "if", "else", "endif", "endfor", "true", "false", "null"}
HCL2_BOOKKEEPING_KEYS = {"__is_block__", "__comments__", "__start_line__", "__end_line__"}

IDENTIFIER = r"[A-Za-z_][A-Za-z0-9_-]*"
VARIABLE_REFERENCE = re.compile(rf"(?<![\w.])var\.({IDENTIFIER})")
LOCAL_REFERENCE = re.compile(rf"(?<![\w.])local\.({IDENTIFIER})")
MODULE_REFERENCE = re.compile(rf"(?<![\w.])module\.({IDENTIFIER})(?:\[[^\]]*\])?(?:\.({IDENTIFIER}))?")
DATA_REFERENCE = re.compile(rf"(?<![\w.])data\.({IDENTIFIER})\.({IDENTIFIER})")
FILE_FUNCTION = re.compile(r"(?<![\w.])(templatefile|file)\(\s*\"\$\{path\.module\}/([^\"]+)\"")


@dataclass
class TerraformModule:
    directory: Path
    variables: dict[str, dict[str, Any]] = field(default_factory=dict)
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    locals: set[str] = field(default_factory=set)
    resources: set[str] = field(default_factory=set)
    data_sources: set[str] = field(default_factory=set)
    module_calls: dict[str, dict[str, Any]] = field(default_factory=dict)
    required_providers: set[str] = field(default_factory=set)
    expressions: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.directory.parent.name}/{self.directory.name}"


def unquote(label: str) -> str:
    return label[1:-1] if len(label) >= 2 and label[0] == label[-1] == '"' else label


def block_entries(blocks: list[dict[str, Any]]) -> Iterator[tuple[str, Any]]:
    for block in blocks:
        for label, body in block.items():
            if label not in HCL2_BOOKKEEPING_KEYS:
                yield unquote(label), body


def walk_strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            if key not in HCL2_BOOKKEEPING_KEYS:
                yield from walk_strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from walk_strings(item)


def interpolations(text: str) -> Iterator[str]:
    """The expression text inside each top-level ${...} of an hcl2 string value."""
    index = 0
    while (start := text.find("${", index)) != -1:
        if start > 0 and text[start - 1] == "$":  # $${ is a literal
            index = start + 2
            continue
        depth, position = 0, start + 1
        while position < len(text):
            if text[position] == "{":
                depth += 1
            elif text[position] == "}":
                depth -= 1
                if depth == 0:
                    break
            position += 1
        yield text[start + 2:position]
        index = position + 1


def load_module(directory: Path) -> TerraformModule:
    module = TerraformModule(directory)
    for path in sorted(directory.glob("*.tf")):
        with path.open() as handle:
            parsed = hcl2.load(handle)
        add_parsed_file(module, parsed)
    return module


def add_parsed_file(module: TerraformModule, parsed: dict[str, Any]) -> None:
    for name, body in block_entries(parsed.get("variable", [])):
        module.variables[name] = body
    for name, body in block_entries(parsed.get("output", [])):
        module.outputs[name] = body
    for block in parsed.get("locals", []):
        module.locals.update(key for key in block if key not in HCL2_BOOKKEEPING_KEYS)
    for resource_type, named in block_entries(parsed.get("resource", [])):
        module.resources.update(f"{resource_type}.{name}" for name, _ in block_entries([named]))
    for data_type, named in block_entries(parsed.get("data", [])):
        module.data_sources.update(f"{data_type}.{name}" for name, _ in block_entries([named]))
    for name, body in block_entries(parsed.get("module", [])):
        module.module_calls[name] = body
    for terraform_block in parsed.get("terraform", []):
        for providers in terraform_block.get("required_providers", []):
            module.required_providers.update(key for key in providers if key not in HCL2_BOOKKEEPING_KEYS)
    for string in walk_strings(parsed):
        module.expressions.extend(interpolations(string))


def resource_reference_pattern(module: TerraformModule) -> re.Pattern[str] | None:
    if not module.required_providers:
        return None
    prefixes = "|".join(re.escape(provider) for provider in sorted(module.required_providers))
    return re.compile(rf"(?<![\w.])((?:{prefixes})_[a-z0-9_]+)\.({IDENTIFIER})")


def check_module(module: TerraformModule, modules_by_directory: dict[Path, TerraformModule]) -> list[str]:
    problems: list[str] = []
    problems += check_variables(module)
    problems += check_locals(module)
    problems += check_resources(module)
    problems += check_module_calls(module, modules_by_directory)
    problems += check_files_and_templates(module)
    problems += check_descriptions(module)
    return [f"{module.name}: {problem}" for problem in problems]


def check_variables(module: TerraformModule) -> list[str]:
    used = {name for expression in module.expressions for name in VARIABLE_REFERENCE.findall(expression)}
    problems = [f"var.{name} is used but not declared" for name in sorted(used - set(module.variables))]
    problems += [f"variable {name} is declared but never used" for name in sorted(set(module.variables) - used)]
    return problems


def check_locals(module: TerraformModule) -> list[str]:
    used = {name for expression in module.expressions for name in LOCAL_REFERENCE.findall(expression)}
    return [f"local.{name} is used but not defined" for name in sorted(used - module.locals)]


def check_resources(module: TerraformModule) -> list[str]:
    problems = []
    for expression in module.expressions:
        for data_type, name in DATA_REFERENCE.findall(expression):
            if f"{data_type}.{name}" not in module.data_sources:
                problems.append(f"data.{data_type}.{name} is referenced but not declared")
    pattern = resource_reference_pattern(module)
    for expression in module.expressions if pattern else []:
        for resource_type, name in pattern.findall(DATA_REFERENCE.sub("", expression)):
            if f"{resource_type}.{name}" not in module.resources:
                problems.append(f"{resource_type}.{name} is referenced but not declared")
    declared_types = {address.split(".")[0] for address in module.resources | module.data_sources}
    for resource_type in sorted(declared_types):
        if resource_type.split("_")[0] not in module.required_providers:
            problems.append(f"{resource_type}: provider {resource_type.split('_')[0]} is not in required_providers")
    return sorted(set(problems))


def check_module_calls(module: TerraformModule, modules_by_directory: dict[Path, TerraformModule]) -> list[str]:
    problems = []
    for name, call in module.module_calls.items():
        source = unquote(str(call.get("source", "")))
        child = modules_by_directory.get((module.directory / source).resolve())
        if child is None:
            problems.append(f"module {name}: source {source} is not a module directory here")
            continue
        arguments = {key for key in call if key not in MODULE_META_ARGUMENTS | HCL2_BOOKKEEPING_KEYS}
        problems += [f"module {name} passes {argument}, which {child.name} does not declare"
                     for argument in sorted(arguments - set(child.variables))]
        required = {variable for variable, body in child.variables.items() if "default" not in body}
        problems += [f"module {name} does not pass required variable {variable} of {child.name}"
                     for variable in sorted(required - arguments)]
    for expression in module.expressions:
        for called, output in MODULE_REFERENCE.findall(expression):
            if called not in module.module_calls:
                problems.append(f"module.{called} is referenced but not called")
                continue
            source = unquote(str(module.module_calls[called].get("source", "")))
            child = modules_by_directory.get((module.directory / source).resolve())
            if child is not None and output and output not in child.outputs:
                problems.append(f"module.{called}.{output}: {child.name} has no output {output}")
    return sorted(set(problems))


def check_files_and_templates(module: TerraformModule) -> list[str]:
    problems = []
    for expression in module.expressions:
        for function, relative in FILE_FUNCTION.findall(expression):
            path = module.directory / relative
            if not path.is_file():
                problems.append(f"{function}() reads {relative}, which does not exist")
            elif function == "templatefile":
                passed = templatefile_argument_names(expression, relative)
                problems += check_template(relative, path.read_text(), passed)
    return sorted(set(problems))


def templatefile_argument_names(expression: str, relative: str) -> set[str]:
    """Top-level keys of the object literal passed to templatefile(... relative ..., {...})."""
    call_start = expression.find(relative)
    brace = expression.find("{", expression.find(",", call_start))
    names, depth, position, in_string = set(), 0, brace, False
    while position < len(expression):
        character = expression[position]
        if character == '"' and expression[position - 1] != "\\":
            in_string = not in_string
        elif not in_string and character in "{[(":
            depth += 1
        elif not in_string and character in "}])":
            depth -= 1
            if depth == 0:
                break
        elif not in_string and depth == 1 and (match := re.match(rf"({IDENTIFIER})\s*=(?!=)", expression[position:])):
            if not re.match(r"[\w.]", expression[position - 1]):
                names.add(match.group(1))
        position += 1
    return names


def check_template(relative: str, template: str, passed: set[str]) -> list[str]:
    used, loop_names = set(), set()
    for expression in template_expressions(template):
        without_strings = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expression)
        if loop := re.match(rf"\s*for\s+({IDENTIFIER})(?:\s*,\s*({IDENTIFIER}))?\s+in\s", without_strings):
            loop_names.update(name for name in loop.groups() if name)
        for name in re.findall(rf"(?<![\w.-])({IDENTIFIER})(?![\w-])(?!\s*\()", without_strings):
            used.add(name)
    used -= TEMPLATE_KEYWORDS | loop_names
    problems = [f"{relative} uses {name}, which templatefile() does not pass" for name in sorted(used - passed)]
    problems += [f"templatefile() passes {name}, which {relative} never uses" for name in sorted(passed - used)]
    return problems


def template_expressions(template: str) -> Iterator[str]:
    for match in re.finditer(r"(?<![$%])([$%])\{~?(.*?)~?\}", template, flags=re.DOTALL):
        yield match.group(2)


def check_descriptions(module: TerraformModule) -> list[str]:
    problems = [f"variable {name} has no description" for name, body in module.variables.items() if "description" not in body]
    problems += [f"output {name} has no description" for name, body in module.outputs.items() if "description" not in body]
    return problems


def module_directories(root: Path) -> list[Path]:
    return sorted({path.parent.resolve() for path in root.rglob("*.tf") if ".terraform" not in path.parts})


def check_tree(root: Path) -> list[str]:
    """All problems found under root (a directory holding modules/ and examples/)."""
    modules = {}
    problems = []
    for directory in module_directories(root):
        try:
            modules[directory] = load_module(directory)
        except Exception as error:  # any parse failure is a finding, with its message
            problems.append(f"{directory}: does not parse: {error}")
    for module in modules.values():
        problems += check_module(module, modules)
    return problems


def main() -> int:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent)
    problems = check_tree(root)
    for problem in problems:
        print(problem)
    print(f"check_wiring: {len(module_directories(root))} module directories, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
