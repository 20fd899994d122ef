"""docker-compose.yml and the Dockerfile cannot run here (no Docker engine): check what
they name exists, and that their settings are the ones `Settings` defines.

tests/live/test_package.py installs the wheel the image installs and runs the commands
compose names; this file checks the files themselves.
"""

from __future__ import annotations

import argparse
import fnmatch
import re
import tomllib
from dataclasses import fields
from pathlib import Path
from typing import Any

import yaml

from billing.settings import Settings
from programs.cli import build_parser
from programs.cli_engine import RULE_FLAGS
from state.config import RuleSettings

ROOT = Path(__file__).resolve().parents[2]


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in build_parser()._actions if a.dest == "command")
    return action.choices  # type: ignore[return-value]


def _subcommands() -> set[str]:
    return set(_subparsers())


def _compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


def test_compose_services_and_commands_exist():
    services = _compose()["services"]
    assert {"redis", "api", "flows", "webhooks"} <= set(services)
    for name in ("api", "flows", "webhooks"):
        service = services[name]
        assert service["command"][0] == "billing"
        assert service["command"][1] in _subcommands()
        assert service["depends_on"]["redis"]["condition"] == "service_healthy"
    for name in ("api", "flows"):
        check = services[name]["healthcheck"]["test"]
        if check[1] == "billing":
            assert check[2] in _subcommands()
    assert (ROOT / services["api"]["build"] / "Dockerfile").exists()


def _env_names() -> set[str]:
    return {f"BILLING_{name.upper()}" for name in Settings.model_fields} | {"REDIS_URL"}


# Defaults compose chooses on purpose: its API is published on the host's port 8000.
COMPOSE_OWN_DEFAULTS = {"BILLING_PUBLIC_BASE_URL"}


def test_compose_environment_names_real_settings_with_their_defaults():
    """Each `${NAME:-default}` in compose is a setting, and its default is Settings' own."""
    services = _compose()["services"]
    for service in services.values():
        for name, value in (service.get("environment") or {}).items():
            assert name in _env_names(), name
            default = re.fullmatch(r"\$\{(\w+):-(.*)\}", str(value))
            if default and name.startswith("BILLING_"):
                assert default.group(1) == name
                field = Settings.model_fields[name.removeprefix("BILLING_").lower()]
                if name not in COMPOSE_OWN_DEFAULTS:
                    assert default.group(2) == str(field.default).lower(), name


def test_rule_settings_have_one_definition():
    """RuleSettings is where the rule settings and their defaults are defined: the service
    settings, the CLI flags and the env names all come from it."""
    rules = RuleSettings()
    for f in fields(RuleSettings):
        assert Settings.model_fields[f.name].default == getattr(rules, f.name), f.name
        assert f.name in RULE_FLAGS
    assert Settings(_env_file=None).rules() == rules
    for command in ("replay", "flows"):
        flags = {opt for a in _subparsers()[command]._actions for opt in a.option_strings}
        assert {"--" + name.replace("_", "-") for name in RULE_FLAGS} <= flags


def _stages(dockerfile: str) -> list[list[str]]:
    stages: list[list[str]] = []
    for line in dockerfile.replace("\\\n", " ").splitlines():
        if line.startswith("FROM "):
            stages.append([])
        if line.strip() and not line.startswith("#"):
            stages[-1].append(line)
    return stages


def test_the_image_installs_the_built_wheel():
    """The image once lacked `sdk/`, so every `billing` command failed on import: it now
    installs the wheel built from the whole context, so nothing can be left out."""
    build, final = _stages((ROOT / "Dockerfile").read_text())
    assert "COPY . ." in build and any("python -m build" in line for line in build)
    assert any(line.startswith("COPY --from=build /dist/*.whl") for line in final)
    assert any("pip install" in line and ".whl" in line for line in final)
    copied = [line.split()[1] for line in final if line.startswith("COPY ")]
    assert all(src.startswith("--from=") or src == "constraints.txt" for src in copied), copied


def test_the_build_context_keeps_every_package():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = [
        p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    ]
    ignored = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    needed = [*packages, "pyproject.toml", "constraints.txt", "ingest_api/static/dashboard.html"]
    for path in needed:
        for pattern in ignored:
            assert not fnmatch.fnmatch(path, pattern.lstrip("*/")), (path, pattern)
