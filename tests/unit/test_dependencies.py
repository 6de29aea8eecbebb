"""Dependency bounds (issue 8): no aiohttp with published request-smuggling advisories,
an upper bound on everything, and a constraints file that pins what CI installs."""
import os
import tomllib

from packaging.requirements import Requirement
from packaging.version import Version

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _requirements() -> list[Requirement]:
    with open(os.path.join(REPO, "pyproject.toml"), "rb") as f:
        project = tomllib.load(f)["project"]
    return [Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["test"]]


def _pins() -> dict[str, Version]:
    pins = {}
    with open(os.path.join(REPO, "constraints.txt")) as f:
        for line in f:
            if line.strip() and not line.startswith("#"):
                name, _, version = line.strip().partition("==")
                pins[name.lower().replace("_", "-")] = Version(version)
    return pins


def test_every_dependency_has_both_bounds():
    for req in _requirements():
        operators = {spec.operator for spec in req.specifier}
        assert ">=" in operators and "<" in operators, f"{req} needs a lower and an upper bound"


def test_aiohttp_is_past_the_smuggling_advisories():
    aiohttp = next(r for r in _requirements() if r.name == "aiohttp")
    assert not aiohttp.specifier.contains("3.12.13") and aiohttp.specifier.contains("3.12.14")


def test_constraints_pin_every_dependency_inside_its_range():
    pins = _pins()
    for req in _requirements():
        name = req.name.lower().replace("_", "-")
        assert name in pins, f"{name} is not pinned in constraints.txt: run make lock"
        assert req.specifier.contains(pins[name]), f"constraints.txt pins {name}=={pins[name]}, outside {req}"
