"""docker-compose.yml cannot run here (no Docker engine); check what it names exists."""

from __future__ import annotations

from pathlib import Path

import yaml

from billing.cli import build_parser
from billing.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


def _subcommands() -> set[str]:
    parser = build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    return set(action.choices)  # type: ignore[arg-type]


def test_compose_services_and_commands_exist():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"redis", "api", "flows"} <= set(services)
    for name in ("api", "flows"):
        service = services[name]
        assert service["command"][0] == "billing"
        assert service["command"][1] in _subcommands()
        assert "healthcheck" in service
        assert service["depends_on"]["redis"]["condition"] == "service_healthy"
        check = service["healthcheck"]["test"]
        if check[1] == "billing":
            assert check[2] in _subcommands()
    assert (ROOT / services["api"]["build"] / "Dockerfile").exists()
    hooks = services["webhooks"]
    assert hooks["command"][:2] == ["billing", "webhooks"] and "webhooks" in _subcommands()
    for name in hooks["environment"]:
        assert name == "REDIS_URL" or name in {f"BILLING_{f.upper()}"
                                               for f in Settings.model_fields}, name


def test_the_image_copies_every_package():
    """The image once lacked `sdk/`, so every `billing` command failed on import."""
    import tomllib

    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "packages"]["find"]["include"]
    copied = {line.split()[1] for line in (ROOT / "Dockerfile").read_text().splitlines()
              if line.startswith("COPY ")}
    assert {p.rstrip("*") for p in packages} <= copied


def test_compose_environment_names_real_settings():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    env = compose["services"]["api"]["environment"]
    fields = {f"BILLING_{name.upper()}" for name in Settings.model_fields}
    for name in env:
        assert name == "REDIS_URL" or name in fields, name
