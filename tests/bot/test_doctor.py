"""The doctor's checks that need no Discord: configuration, the API's models, and permission arithmetic."""

from __future__ import annotations

import io
import os
import select
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import discord

from bot import doctor
from bot.config import Settings
from bot.doctor import Report, base_permissions, channel_permissions, check_api
from bot.store import SqliteStore
from tests.fakes.openai_server import ApiErrorReply, FakeOpenAI

PROJECT_ROOT = Path(__file__).parents[2]
GUILD, BOT, ROLE, OTHER_ROLE = 100, 200, 300, 301


async def api_report(
    fake_openai: FakeOpenAI, *, chosen: dict[int, dict[str, str]] | None = None, **env: str
) -> tuple[int, str]:
    """Run the API checks (with `chosen`: guild id → models admins chose); the problems and the printed text."""
    settings = Settings.from_env(
        {"DISCORD_TOKEN": "t", "OPENAI_API_KEY": "sk-test-key", "OPENAI_BASE_URL": fake_openai.base_url, **env}
    )
    out = io.StringIO()
    report = Report(out)
    store = await SqliteStore.open(":memory:")
    for guild_id, models in (chosen or {}).items():
        await store.update_guild_settings(guild_id, {"models": models})
    async with aiohttp.ClientSession() as session:
        await check_api(settings, store, session, report)
    await store.close()
    return report.problems, out.getvalue()


async def test_a_healthy_api_has_every_configured_model(fake_openai: FakeOpenAI) -> None:
    problems, text = await api_report(fake_openai)
    assert problems == 0, text
    for line in ("CHAT_MODEL gpt-5-mini is offered", "IMAGE_MODEL gpt-image-2", "TRANSCRIBE_MODEL gpt-transcribe"):
        assert line in text
    assert "MODERATION_MODEL" not in text  # moderation is off: its model does not matter


async def test_a_model_the_api_lacks_is_named_with_the_fix(fake_openai: FakeOpenAI) -> None:
    problems, text = await api_report(fake_openai, CHAT_MODEL="gpt-5-mimi")
    assert problems == 1
    assert "✗ CHAT_MODEL gpt-5-mimi is not offered by the API." in text
    assert "Fix: set CHAT_MODEL to a model it offers, such as gpt-5-mini" in text


async def test_the_moderation_model_is_checked_when_moderation_is_on(fake_openai: FakeOpenAI) -> None:
    fake_openai.models.remove("omni-moderation-latest")
    problems, text = await api_report(fake_openai, MODERATE_ANSWERS="true")
    assert problems == 1
    assert "MODERATION_MODEL omni-moderation-latest is not offered" in text


async def test_models_admins_chose_are_checked_too(fake_openai: FakeOpenAI) -> None:
    problems, text = await api_report(fake_openai, chosen={GUILD: {"chat": "gpt-5", "images": "gpt-image-9"}})
    assert problems == 1
    assert "The images model gpt-image-9, chosen for a server or channel with /settings model, is not offered" in text
    assert "Fix: choose another with /settings model (such as gpt-image-2" in text


async def test_an_api_that_lists_no_models_is_a_note_not_a_problem(fake_openai: FakeOpenAI) -> None:
    fake_openai.models.clear()
    problems, text = await api_report(fake_openai)
    assert problems == 0
    assert "The API lists no models" in text


async def test_a_rejected_key_is_named_without_printing_it(fake_openai: FakeOpenAI) -> None:
    problems, text = await api_report(fake_openai, OPENAI_API_KEY="sk-wrong-key-123456")
    assert problems == 1
    assert "The API rejected OPENAI_API_KEY" in text
    assert "sk-wrong" not in text


async def test_an_api_without_a_model_list_says_to_check_the_base_url(fake_openai: FakeOpenAI) -> None:
    fake_openai.queue("/models", ApiErrorReply(404, "invalid_request_error", None, "Invalid URL (GET /models)"))
    problems, text = await api_report(fake_openai)
    assert problems == 1
    assert "check OPENAI_BASE_URL: it usually ends in /v1" in text


def test_bad_configuration_exits_2_naming_every_problem() -> None:
    out = io.StringIO()
    assert doctor.main({"ALLOW_DMS": "maybe"}, out) == doctor.EXIT_CONFIG
    text = out.getvalue()
    assert "DISCORD_TOKEN is required" in text
    assert "ALLOW_DMS must be true or false" in text


def role(role_id: int, permissions: discord.Permissions) -> dict[str, object]:
    return {"id": str(role_id), "permissions": str(permissions.value)}


def overwrite(
    target: int, kind: int, *, allow: discord.Permissions | None = None, deny: discord.Permissions | None = None
) -> dict[str, object]:
    return {
        "id": str(target),
        "type": kind,
        "allow": str((allow or discord.Permissions.none()).value),
        "deny": str((deny or discord.Permissions.none()).value),
    }


def test_server_permissions_join_everyone_and_the_members_roles() -> None:
    roles = [
        role(GUILD, discord.Permissions(view_channel=True)),
        role(ROLE, discord.Permissions(send_messages=True)),
        role(OTHER_ROLE, discord.Permissions(attach_files=True)),
    ]
    granted = base_permissions(GUILD, roles, {ROLE}, is_owner=False)
    assert granted.view_channel and granted.send_messages and not granted.attach_files
    assert base_permissions(GUILD, roles, set(), is_owner=True) == discord.Permissions.all()
    admin = [role(GUILD, discord.Permissions(administrator=True))]
    assert base_permissions(GUILD, admin, set(), is_owner=False).attach_files


def test_channel_overwrites_apply_everyone_then_roles_then_the_member() -> None:
    base = discord.Permissions(view_channel=True, send_messages=True, attach_files=True)
    overwrites = [
        overwrite(BOT, 1, deny=discord.Permissions(attach_files=True)),
        overwrite(GUILD, 0, deny=discord.Permissions(send_messages=True, view_channel=True)),
        overwrite(ROLE, 0, allow=discord.Permissions(view_channel=True)),
        overwrite(OTHER_ROLE, 0, allow=discord.Permissions(send_messages=True)),  # a role the bot lacks
    ]
    granted = channel_permissions(base, GUILD, {ROLE}, BOT, overwrites)
    assert granted.view_channel  # @everyone's deny, then the bot's role allows it again
    assert not granted.send_messages
    assert not granted.attach_files  # the member's own overwrite comes last
    admin = discord.Permissions(administrator=True)
    assert channel_permissions(admin, GUILD, set(), BOT, overwrites) == discord.Permissions.all()


def run_entry_point(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(PROJECT_ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "bot", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )


def test_python_m_bot_doctor_runs_the_doctor(tmp_path: Path) -> None:
    completed = run_entry_point("doctor", cwd=tmp_path)
    assert completed.returncode == doctor.EXIT_CONFIG
    assert "✗ DISCORD_TOKEN is required" in completed.stdout
    assert "Traceback" not in completed.stderr


def test_an_unknown_command_is_named_with_the_usage(tmp_path: Path) -> None:
    completed = run_entry_point("doctr", cwd=tmp_path)
    assert completed.returncode == 2
    assert "Usage: python -m bot [doctor]; 'doctr' is not a command." in completed.stderr


def test_the_doctor_says_what_it_waits_for_before_waiting(tmp_path: Path) -> None:
    # A server that accepts connections and never answers: the doctor waits its full 30 s on it.
    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = silent.getsockname()[1]
        env = {
            "PATH": "/usr/bin:/bin",
            "PYTHONPATH": str(PROJECT_ROOT),
            "DISCORD_TOKEN": "t",
            "OPENAI_API_KEY": "sk-test-key",
            "OPENAI_BASE_URL": f"http://127.0.0.1:{port}/v1",
        }
        process = subprocess.Popen(
            [sys.executable, "-m", "bot", "doctor"], cwd=tmp_path, env=env, stdout=subprocess.PIPE
        )
        try:
            shown = read_until(process, b"for its models", seconds=20)
        finally:
            process.kill()
            process.wait()
    assert f"  … Asking the API at 127.0.0.1:{port} for its models (up to 30 s)…".encode() in shown


def read_until(process: subprocess.Popen[bytes], wanted: bytes, *, seconds: float) -> bytes:
    """What the process printed until `wanted` appeared; fails if it did not within `seconds`."""
    assert process.stdout is not None
    deadline, shown = time.monotonic() + seconds, b""
    while wanted not in shown:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"not printed within {seconds:.0f} s (held in a buffer?): {shown.decode()!r}"
        if select.select([process.stdout], [], [], remaining)[0]:
            chunk = os.read(process.stdout.fileno(), 4096)
            assert chunk, f"the doctor ended without printing it: {shown.decode()!r}"
            shown += chunk
    return shown


async def test_the_models_members_may_pick_are_checked_too(fake_openai: FakeOpenAI) -> None:
    problems, text = await api_report(fake_openai, CHAT_MODELS="gpt-5,gpt-5-nano")
    assert problems == 1
    assert "✓ CHAT_MODELS gpt-5 is offered." in text
    assert "✗ CHAT_MODELS gpt-5-nano is not offered by the API." in text


async def test_a_password_in_the_base_url_is_never_printed(fake_openai: FakeOpenAI) -> None:
    with_password = fake_openai.base_url.replace("http://", "http://proxy-user:proxy-pass@")
    _, text = await api_report(fake_openai, OPENAI_BASE_URL=with_password, OPENAI_API_KEY="")
    assert f"API ({fake_openai.base_url})" in text
    assert "proxy-pass" not in text and "proxy-user" not in text
