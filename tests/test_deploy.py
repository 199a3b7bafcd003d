"""The ways to run the bot agree with each other and with the README: Docker, Compose, Procfile, systemd.

Docker cannot run here, so these read the files as Docker and Compose would and check the conventions
people rely on: the image runs `python -m bot` as a non-root user with the database on a volume, and
Compose gives the bot its .env and a PostgreSQL service to talk to.
"""

from __future__ import annotations

import configparser
import json
import re
import shlex
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from bot.__main__ import EXIT_CONFIG, EXIT_DISCORD_REFUSED
from bot.config import Settings

ROOT = Path(__file__).parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
APP_DIR = "/app"  # the image's WORKDIR


def readme_code_blocks(language: str) -> list[str]:
    """The README's fenced code blocks in `language`."""
    return re.findall(rf"^```{language}\n(.*?)^```$", README, flags=re.MULTILINE | re.DOTALL)


def readme_run_command() -> str:
    """What the quick start runs: the command after the install in its first shell block."""
    first = readme_code_blocks("sh")[0].strip()
    return first.split("&&")[-1].strip()


def dockerfile() -> list[tuple[str, str]]:
    """The Dockerfile's instructions as (INSTRUCTION, arguments), continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", (ROOT / "Dockerfile").read_text(encoding="utf-8"))
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(maxsplit=1)[0].upper(), line.split(maxsplit=1)[1]) for line in lines]


def instructions(name: str) -> list[str]:
    return [arguments for instruction, arguments in dockerfile() if instruction == name]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def test_the_readme_runs_python_m_bot() -> None:
    assert readme_run_command() == "python -m bot"


def test_the_image_runs_the_readmes_command_as_a_user_without_root() -> None:
    [cmd] = instructions("CMD")
    assert shlex.join(json.loads(cmd)) == readme_run_command()
    users = instructions("USER")
    assert users and users[-1] not in ("root", "0")
    order = [instruction for instruction, _ in dockerfile()]
    assert order.index("USER") < order.index("CMD")


def test_the_image_is_a_slim_python_with_the_pinned_runtime() -> None:
    [base] = instructions("FROM")
    assert re.fullmatch(r"python:3\.11-slim(-\w+)?", base)
    copied = [arguments.split() for arguments in instructions("COPY")]
    assert ["requirements.txt", "."] in copied
    assert "pip install -r requirements.txt" in instructions("RUN")
    assert {"./bot", "./cogs"} <= {target for _, target in copied}


def test_the_default_database_lives_on_the_images_volume() -> None:
    assert instructions("WORKDIR") == [APP_DIR]
    default_folder = (
        f"{APP_DIR}/{Settings.from_env({'DISCORD_TOKEN': 't', 'OPENAI_API_KEY': 'k'}).database_path.parent}"
    )
    assert json.loads(instructions("VOLUME")[0]) == [default_folder]


def test_secrets_and_local_state_stay_out_of_the_image() -> None:
    ignored = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    assert {".env", ".git", "data", "*.db"} <= set(ignored)


def test_compose_gives_the_bot_its_env_file_and_a_data_volume(compose: dict[str, Any]) -> None:
    bot = compose["services"]["bot"]
    assert bot["build"] == "."
    assert bot["env_file"] == ".env"
    assert f"bot-data:{json.loads(instructions('VOLUME')[0])[0]}" in bot["volumes"]
    assert bot["depends_on"]["db"]["condition"] == "service_healthy"


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's `${NAME}` and `${NAME:?message}` (required) substitution; a missing required NAME fails."""

    def substitute(match: re.Match[str]) -> str:
        name, required = match.group(1), match.group(2)
        if required is not None and not env.get(name):
            raise LookupError(f"{name}: {required}")
        return env.get(name, "")

    return re.sub(r"\$\{(\w+)(?::\?([^}]*))?\}", substitute, value)


def test_compose_points_the_bot_at_its_postgresql_service(compose: dict[str, Any]) -> None:
    bot, db = compose["services"]["bot"], compose["services"]["db"]
    assert db["image"].startswith("postgres:")
    assert "db-data:/var/lib/postgresql/data" in db["volumes"]
    env = {"POSTGRES_PASSWORD": "0123abcd"}  # as the owner's .env would set it
    url = urlsplit(interpolate(bot["environment"]["DATABASE_URL"], env))
    assert (url.scheme, url.hostname, url.port, url.path) == (
        "postgresql",
        "db",
        5432,
        f"/{db['environment']['POSTGRES_DB']}",
    )
    assert url.username == db["environment"]["POSTGRES_USER"]
    assert url.password == interpolate(db["environment"]["POSTGRES_PASSWORD"], env) == "0123abcd"
    # Without a password in .env, Compose refuses to start and says what to set.
    with pytest.raises(LookupError, match=re.escape("set POSTGRES_PASSWORD in .env")):
        interpolate(db["environment"]["POSTGRES_PASSWORD"], {})


def test_every_named_volume_is_declared(compose: dict[str, Any]) -> None:
    used = {mount.split(":")[0] for service in compose["services"].values() for mount in service.get("volumes", [])}
    assert used == set(compose["volumes"]) == {"bot-data", "db-data"}


def test_the_procfile_runs_the_readmes_command() -> None:
    assert (ROOT / "Procfile").read_text(encoding="utf-8").strip() == f"worker: {readme_run_command()}"


def test_the_readmes_systemd_unit_runs_the_bot_from_its_folder_and_stops_restarting_on_a_wrong_setting() -> None:
    [unit_text] = readme_code_blocks("ini")
    unit = configparser.ConfigParser(interpolation=None)
    unit.read_string(unit_text)
    service = unit["Service"]
    folder = service["WorkingDirectory"]
    assert service["ExecStart"] == f"{folder}/.venv/bin/{readme_run_command()}"
    assert {int(code) for code in service["RestartPreventExitStatus"].split()} == {EXIT_CONFIG, EXIT_DISCORD_REFUSED}
    assert service["Restart"] == "on-failure"
    assert int(service["TimeoutStopSec"]) > 10  # the bot's own shutdown takes up to 10 s
    assert unit["Install"]["WantedBy"] == "multi-user.target"
