"""The package and its locks: pyproject.toml holds the ranges, requirements*.txt the exact versions tested.

The locks are written by `python scripts/lock.py`; these tests catch a lock that is stale (a range
changed, a dependency added) or edited by hand, and tool versions that drifted apart.
"""

from __future__ import annotations

import fnmatch
import importlib.util
import re
import tomllib
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

import bot
from bot.__main__ import main

ROOT = Path(__file__).parents[1]
PYPROJECT: dict[str, Any] = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
PIN = re.compile(r"(?P<name>[A-Za-z0-9._-]+)==(?P<version>[A-Za-z0-9.+!-]+)")


def load_lock_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("lock", ROOT / "scripts" / "lock.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def pins(lock: str) -> dict[str, str]:
    """Canonical name → version of every pin in a lock file; anything else there must be a comment or -r."""
    pinned = {}
    for line in (ROOT / lock).read_text(encoding="utf-8").splitlines():
        if not line or line.startswith("#") or line == "-r requirements.txt":
            continue
        match = PIN.fullmatch(line)
        assert match, f"{lock}: {line!r} is not an exact pin"
        pinned[canonicalize_name(match["name"])] = match["version"]
    return pinned


def declared(group: str) -> list[Requirement]:
    project = PYPROJECT["project"]
    lines = project["dependencies"] if group == "runtime" else project["optional-dependencies"][group]
    return [Requirement(line) for line in lines]


def test_every_declared_dependency_is_pinned_within_its_range() -> None:
    for lock, requirements in (("requirements.txt", declared("runtime")), ("requirements-dev.txt", declared("test"))):
        pinned = pins(lock)
        for requirement in requirements:
            version = pinned.get(canonicalize_name(requirement.name))
            assert version is not None, f"{requirement.name} is not pinned in {lock}"
            assert requirement.specifier.contains(version), f"{lock} pins {requirement.name}=={version}: {requirement}"


def test_the_dev_lock_adds_to_the_runtime_lock_without_repeating_it() -> None:
    dev_lines = (ROOT / "requirements-dev.txt").read_text(encoding="utf-8").splitlines()
    assert next(line for line in dev_lines if not line.startswith("#")) == "-r requirements.txt"
    assert set(pins("requirements.txt")).isdisjoint(pins("requirements-dev.txt"))


def test_the_locks_are_the_versions_this_environment_runs() -> None:
    # The test command installs requirements-dev.txt first, so what runs here is what the locks say,
    # every dependency of a dependency included. A lock edited by hand, or not regenerated after a
    # change in pyproject.toml, differs.
    lock = load_lock_script()
    runtime, test = lock.declared()
    runtime_closure = {canonicalize_name(name): version for name, version in lock.installed_closure(runtime).items()}
    dev_closure = {canonicalize_name(name): version for name, version in lock.installed_closure(runtime + test).items()}
    fix = "run `python scripts/lock.py` (see CONTRIBUTING.md)"
    assert pins("requirements.txt") == runtime_closure, fix
    assert pins("requirements-dev.txt") == {k: v for k, v in dev_closure.items() if k not in runtime_closure}, fix


def test_lint_and_type_checkers_are_pinned_and_pre_commit_runs_the_same_ones() -> None:
    test_extra = {canonicalize_name(r.name): r for r in declared("test")}
    for tool in ("ruff", "mypy"):
        assert str(test_extra[tool].specifier).startswith("=="), f"{tool} must be pinned exactly"
    config = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text(encoding="utf-8"))
    hooks = {hook["id"]: (repo, hook) for repo in config["repos"] for hook in repo["hooks"]}
    ruff_repo, _ = hooks["ruff-check"]
    assert ruff_repo["repo"] == "https://github.com/astral-sh/ruff-pre-commit"
    assert ruff_repo["rev"] == f"v{str(test_extra['ruff'].specifier).removeprefix('==')}"
    assert "ruff-format" in hooks
    # mypy runs from the environment requirements-dev.txt installed, with pyproject.toml's settings.
    mypy_repo, mypy_hook = hooks["mypy"]
    assert mypy_repo["repo"] == "local" and mypy_hook["entry"] == "mypy" and mypy_hook["pass_filenames"] is False


def test_the_package_holds_the_core_and_the_cogs_and_its_command_is_the_entry_point() -> None:
    # setuptools' find takes the folders with an __init__.py whose dotted names match `include`.
    include = PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]
    with_code = {
        ".".join(path.parent.relative_to(ROOT).parts)
        for top in ("bot", "cogs")
        for path in (ROOT / top).rglob("*.py")
        if "__pycache__" not in path.parts
    }
    assert {"bot", "bot.store", "cogs"} <= with_code
    for package in with_code:
        assert (ROOT / package.replace(".", "/") / "__init__.py").exists(), f"{package} has no __init__.py"
        assert any(fnmatch.fnmatchcase(package, pattern) for pattern in include), f"{package} is not packaged"
    assert PYPROJECT["project"]["scripts"] == {"discord-openai-bot": "bot.__main__:main"}
    assert callable(main)


def test_the_changelog_has_this_version_and_an_unreleased_section() -> None:
    headings = re.findall(r"^## (.+)$", (ROOT / "CHANGELOG.md").read_text(encoding="utf-8"), flags=re.MULTILINE)
    assert headings[0] == "Unreleased"
    assert any(heading.startswith(f"{bot.__version__} - ") for heading in headings)


def test_the_license_is_mit_as_the_package_says() -> None:
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert text.startswith("MIT License\n\nCopyright (c) 2026 The discord-openai-bot authors\n")
    assert PYPROJECT["project"]["license"] == "MIT"
    assert PYPROJECT["project"]["license-files"] == ["LICENSE"]
