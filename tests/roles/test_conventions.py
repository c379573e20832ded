"""The roles' naming and documentation convention (docs/conventions.md), checked.

Every test runs once per role under roles/, so a broken rule names the role:

    .venv/bin/pytest tests/roles -q
    .venv/bin/pytest tests/roles -q -k "[redis]"   # one role

Only files are read (PyYAML); no Ansible runs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
ROLES_DIR = REPO / "roles"
ROLES: list[str] = sorted(path.name for path in ROLES_DIR.iterdir() if (path / "tasks").is_dir())

# The sections of a role README, in this order, before any section of the
# role's own.
README_SECTIONS: list[str] = [
    "Requirements",
    "Role Variables",
    "Dependencies",
    "Example Playbook",
]

SET_FACT_MODULES = {"set_fact", "ansible.builtin.set_fact", "ansible.legacy.set_fact"}
# Tasks whose `vars:` are the parameters of another role, named by that role.
ROLE_CALL_MODULES = {
    "include_role",
    "import_role",
    "ansible.builtin.include_role",
    "ansible.builtin.import_role",
}
# Keys of set_fact that are options, not facts.
SET_FACT_OPTIONS = {"cacheable"}
# Keys under which a task holds other tasks.
NESTED_TASK_KEYS = ("block", "rescue", "always")


class _TaggedLoader(yaml.SafeLoader):
    """SafeLoader that reads Ansible's tags (!unsafe, !vault) as plain values."""


def _construct_tagged(loader: yaml.SafeLoader, _suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node)
    return loader.construct_mapping(node)  # type: ignore[arg-type]


_TaggedLoader.add_multi_constructor("!", _construct_tagged)


def load_yaml(path: Path) -> Any:
    with path.open(encoding="utf-8") as stream:
        return yaml.load(stream, Loader=_TaggedLoader)  # a SafeLoader subclass


def role_defaults(role: str) -> dict[str, Any]:
    path = ROLES_DIR / role / "defaults" / "main.yml"
    return (load_yaml(path) or {}) if path.is_file() else {}


def argument_specs_path(role: str) -> Path:
    return ROLES_DIR / role / "meta" / "argument_specs.yml"


def argument_specs(role: str) -> dict[str, dict[str, Any]]:
    """Entry point name -> its options (top level only)."""
    path = argument_specs_path(role)
    assert path.is_file(), f"{role}: meta/argument_specs.yml is missing"
    specs = (load_yaml(path) or {}).get("argument_specs") or {}
    return {name: (entry or {}).get("options") or {} for name, entry in specs.items()}


def task_files(role: str) -> list[Path]:
    """Every YAML file of the role's tasks/ and handlers/."""
    files: list[Path] = []
    for subdir in ("tasks", "handlers"):
        directory = ROLES_DIR / role / subdir
        if directory.is_dir():
            files += sorted(directory.rglob("*.yml")) + sorted(directory.rglob("*.yaml"))
    return files


def walk_tasks(tasks: Any) -> Iterator[dict[str, Any]]:
    """Every task of a task list, the tasks inside blocks included."""
    if not isinstance(tasks, list):
        return
    for task in tasks:
        if not isinstance(task, dict):
            continue
        yield task
        for key in NESTED_TASK_KEYS:
            yield from walk_tasks(task.get(key))


def registered_names(role: str) -> list[tuple[str, str]]:
    """(file relative to the role, name) of every `register:`."""
    found: list[tuple[str, str]] = []
    for path in task_files(role):
        for task in walk_tasks(load_yaml(path)):
            if isinstance(task.get("register"), str):
                found.append((str(path.relative_to(ROLES_DIR / role)), task["register"]))
    return found


def set_fact_names(role: str) -> list[tuple[str, str]]:
    """(file relative to the role, name) of every fact a set_fact task sets."""
    found: list[tuple[str, str]] = []
    for path in task_files(role):
        for task in walk_tasks(load_yaml(path)):
            for module in SET_FACT_MODULES & task.keys():
                args = task[module]
                if isinstance(args, dict):
                    found += [
                        (str(path.relative_to(ROLES_DIR / role)), name)
                        for name in args
                        if name not in SET_FACT_OPTIONS
                    ]
    return found


def task_local_names(role: str) -> list[tuple[str, str]]:
    """(file relative to the role, name) of every task-level `vars:` and
    `loop_var`, but for the `vars:` of a task calling another role."""
    found: list[tuple[str, str]] = []
    for path in task_files(role):
        relative = str(path.relative_to(ROLES_DIR / role))
        for task in walk_tasks(load_yaml(path)):
            if isinstance(task.get("vars"), dict) and not ROLE_CALL_MODULES & task.keys():
                found += [(relative, str(name)) for name in task["vars"]]
            loop_var = (task.get("loop_control") or {}).get("loop_var")
            if isinstance(loop_var, str):
                found.append((relative, loop_var))
    return found


def readme(role: str) -> str:
    path = ROLES_DIR / role / "README.md"
    assert path.is_file(), f"{role}: README.md is missing"
    return path.read_text(encoding="utf-8")


def readme_sections(text: str) -> list[str]:
    """The `## ` headings of a README, outside fenced code blocks."""
    sections: list[str] = []
    in_code = False
    for line in text.splitlines():
        if line.startswith("```"):
            in_code = not in_code
        elif not in_code and line.startswith("## "):
            sections.append(line[3:].strip())
    return sections


def yaml_anchors_and_aliases(path: Path) -> list[str]:
    """`&anchor` and `*alias` of a YAML file, each with its line."""
    found: list[str] = []
    with path.open(encoding="utf-8") as stream:
        for event in yaml.parse(stream, Loader=yaml.SafeLoader):
            line = event.start_mark.line + 1
            if isinstance(event, yaml.AliasEvent):
                found.append(f"line {line}: *{event.anchor}")
            elif getattr(event, "anchor", None):
                found.append(f"line {line}: &{event.anchor}")
    return found


@pytest.fixture(params=ROLES)
def role(request: pytest.FixtureRequest) -> str:
    return request.param


# --- defaults/main.yml and meta/argument_specs.yml ----------------------------


def test_every_default_is_in_the_argument_specs(role: str) -> None:
    """Each variable of defaults/main.yml is an option of some entry point."""
    options = argument_specs(role)
    documented = {name for entry in options.values() for name in entry}
    missing = sorted(set(role_defaults(role)) - documented)
    assert not missing, (
        f"{role}: defaults/main.yml variables missing from meta/argument_specs.yml: {missing}"
    )


def test_argument_spec_defaults_equal_defaults_main(role: str) -> None:
    """An option whose variable has a default carries `default:` with that value."""
    defaults = role_defaults(role)
    wrong: list[str] = []
    for entry_point, options in argument_specs(role).items():
        for name, option in options.items():
            if name not in defaults:
                continue
            if "default" not in (option or {}):
                wrong.append(
                    f"{entry_point}.{name}: no default: (defaults/main.yml: {defaults[name]!r})"
                )
            elif option["default"] != defaults[name]:
                wrong.append(
                    f"{entry_point}.{name}: default: {option['default']!r}, "
                    f"defaults/main.yml: {defaults[name]!r}"
                )
    assert not wrong, (
        f"{role}: argument_specs defaults differ from defaults/main.yml:\n" + "\n".join(wrong)
    )


def test_argument_spec_defaults_come_from_defaults_main(role: str) -> None:
    """A `default:` in the specs is only documentation: Ansible takes the value
    from defaults/main.yml, so a default that is not there would be a false one."""
    defaults = role_defaults(role)
    stray = sorted(
        f"{entry_point}.{name}"
        for entry_point, options in argument_specs(role).items()
        for name, option in options.items()
        if "default" in (option or {}) and name not in defaults
    )
    assert not stray, (
        f"{role}: options with a default: that defaults/main.yml does not set: {stray}"
    )


def test_argument_specs_have_no_yaml_anchors(role: str) -> None:
    """Each option is written out where it applies, not shared by &anchor/*alias."""
    found = yaml_anchors_and_aliases(argument_specs_path(role))
    assert not found, f"{role}: meta/argument_specs.yml uses YAML anchors/aliases: {found}"


def test_defaults_start_with_the_role_name(role: str) -> None:
    wrong = sorted(name for name in role_defaults(role) if not name.startswith(f"{role}_"))
    assert not wrong, f"{role}: defaults/main.yml variables not named {role}_*: {wrong}"


# --- internal variables -----------------------------------------------------------


def not_internal(role: str, names: Iterable[tuple[str, str]]) -> list[str]:
    """The (file, name) pairs whose name lacks the role's internal prefix."""
    return [f"{file}: {name}" for file, name in names if not name.startswith(f"__{role}_")]


def test_registered_results_are_internal(role: str) -> None:
    """A registered result is a module's answer, never an interface: __<role>_*."""
    wrong = not_internal(role, registered_names(role))
    assert not wrong, f"{role}: register: names not __{role}_*: {wrong}"


def test_set_facts_are_internal_or_documented_outputs(role: str) -> None:
    """set_fact names are __<role>_*; a fact handed to the caller after the role
    returns is an output, <role>_*, and the role's README names it."""
    text = readme(role)
    wrong: list[str] = []
    for file, name in set_fact_names(role):
        if name.startswith(f"__{role}_"):
            continue
        if not name.startswith(f"{role}_"):
            wrong.append(f"{file}: {name} (neither __{role}_* nor {role}_*)")
        elif name in role_defaults(role):
            wrong.append(f"{file}: {name} (overrides a default; an output needs its own name)")
        elif not re.search(rf"`{re.escape(name)}`", text):
            wrong.append(f"{file}: {name} (an output fact that README.md does not name)")
    assert not wrong, f"{role}: set_fact names against the convention:\n" + "\n".join(wrong)


def test_task_vars_and_loop_vars_are_internal(role: str) -> None:
    """A task's own `vars:` and `loop_var` live for one task: __<role>_*."""
    wrong = not_internal(role, task_local_names(role))
    assert not wrong, f"{role}: task vars/loop_var names not __{role}_*: {wrong}"


def test_vars_files_hold_internal_variables(role: str) -> None:
    """vars/*.yml (main.yml, <release>.yml) is not meant for users: __<role>_*."""
    vars_dir = ROLES_DIR / role / "vars"
    wrong: list[str] = []
    for path in sorted(vars_dir.glob("*.yml")) if vars_dir.is_dir() else []:
        wrong += [
            f"{path.name}: {name}"
            for name in load_yaml(path) or {}
            if not str(name).startswith(f"__{role}_")
        ]
    assert not wrong, f"{role}: vars/ variables not named __{role}_*: {wrong}"


# --- README.md -------------------------------------------------------------------


def test_readme_title(role: str) -> None:
    first_line = readme(role).splitlines()[0] if readme(role) else ""
    assert first_line == f"# Role `{role}`", (
        f"{role}: README.md starts with {first_line!r}, not '# Role `{role}`'"
    )


def test_readme_sections_in_order(role: str) -> None:
    """A short description, then Requirements, Role Variables, Dependencies,
    Example Playbook; the role's own sections (and Test) come after them."""
    sections = readme_sections(readme(role))
    assert sections[: len(README_SECTIONS)] == README_SECTIONS, (
        f"{role}: README.md sections are {sections}; the first must be {README_SECTIONS}"
    )
