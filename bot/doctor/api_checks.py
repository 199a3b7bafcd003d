"""The doctor's checks of the API: reachable, the key taken, the configured models offered."""

from __future__ import annotations

import difflib
import time

import aiohttp

from bot.api import OpenAIClient
from bot.config import Settings
from bot.doctor.report import Report
from bot.errors import ApiError, ApiErrorKind
from bot.render import count
from bot.store import Store
from bot.urls import public_url, url_host

# Doctor waits less than the bot would: a check that hangs is a finding in itself.
API_TIMEOUT_SECONDS = 30.0


async def check_api(settings: Settings, store: Store, session: aiohttp.ClientSession, report: Report) -> None:
    """Reach the API, list its models, and check every model the bot is configured to use, here or by admins."""
    report.section(f"API ({public_url(settings.openai_base_url)})")
    known = await _list_models(settings.openai_base_url, settings.openai_api_key, settings, session, report, "OPENAI")
    if known is None:
        return
    configured = [
        ("CHAT_MODEL", settings.chat_model),
        *(("CHAT_MODELS", model) for model in settings.chat_models if model != settings.chat_model),
        ("IMAGE_MODEL", settings.image_model),
        ("TRANSCRIBE_MODEL", settings.transcribe_model),
    ]
    if not speech_server_apart(settings):
        configured.append(("TTS_MODEL", settings.tts_model))
    if settings.moderate_prompts or settings.moderate_answers:
        configured.append(("MODERATION_MODEL", settings.moderation_model))
    chosen = list(await store.chosen_models())
    if speech_server_apart(settings):
        chosen = [(feature, model) for feature, model in chosen if feature != "speech"]
    _check_models(configured, chosen, known, report)


def speech_server_apart(settings: Settings) -> bool:
    """Whether speech comes from a server of its own (TTS_BASE_URL), whose models are listed there."""
    return settings.speech_base_url != settings.openai_base_url


async def check_speech_api(settings: Settings, store: Store, session: aiohttp.ClientSession, report: Report) -> None:
    """Reach the speech server (TTS_BASE_URL) and check the speech models the bot uses there."""
    report.section(f"Speech API ({public_url(settings.speech_base_url)})")
    known = await _list_models(settings.speech_base_url, settings.speech_api_key, settings, session, report, "TTS")
    if known is None:
        return
    chosen = [(feature, model) for feature, model in await store.chosen_models() if feature == "speech"]
    _check_models([("TTS_MODEL", settings.tts_model)], chosen, known, report)


async def _list_models(
    base_url: str, api_key: str, settings: Settings, session: aiohttp.ClientSession, report: Report, prefix: str
) -> set[str] | None:
    """The models an API lists, or None when it cannot be asked or lists none (which is said); `prefix` names its
    settings (OPENAI_BASE_URL and OPENAI_API_KEY, or TTS_…) in the fixes."""
    timeout = min(settings.api_timeout_seconds, API_TIMEOUT_SECONDS)
    client = OpenAIClient(session, base_url=base_url, api_key=api_key, timeout_seconds=timeout, max_retries=0)
    report.waiting(f"Asking the API at {url_host(base_url)} for its models (up to {timeout:.0f} s)…")
    started = time.perf_counter()
    try:
        listed = await client.get_json("/models")
    except ApiError as error:
        text, fix = _api_failure(error, prefix)
        report.problem(text, fix)
        return None
    known = {str(entry.get("id")) for entry in listed.get("data") or [] if isinstance(entry, dict)}
    elapsed_ms = (time.perf_counter() - started) * 1000
    report.ok(f"GET /models answered in {elapsed_ms:.0f} ms, listing {count(len(known), 'model')}.")
    if not known:
        report.note("The API lists no models, so the configured ones cannot be checked; some servers list none.")
        return None
    return known


def _check_models(
    configured: list[tuple[str, str]], chosen: list[tuple[str, str]], known: set[str], report: Report
) -> None:
    """Each configured model (setting, name) and each chosen with /settings model (feature, name) must be known."""
    for name, model in configured:
        if model in known:
            report.ok(f"{name} {model} is offered.")
        else:
            report.problem(
                f"{name} {model} is not offered by the API.",
                f"set {name} to a model it offers, such as {_offered_like(model, known)}.",
            )
    for feature, model in chosen:
        if model not in known:
            report.problem(
                f"The {feature} model {model}, chosen for a server or channel with /settings model, is not offered.",
                f"choose another with /settings model (such as {_offered_like(model, known)}), or leave model "
                "out there to go back to the default.",
            )


def _offered_like(model: str, known: set[str]) -> str:
    """Offered models with names close to `model`, else the first few offered."""
    return ", ".join(difflib.get_close_matches(model, sorted(known), n=3, cutoff=0.5) or sorted(known)[:5])


def _api_failure(error: ApiError, prefix: str = "OPENAI") -> tuple[str, str]:
    """What a failed GET /models means, and how to fix it (`prefix`: whose settings, OPENAI or TTS)."""
    key, url = f"{prefix}_API_KEY", f"{prefix}_BASE_URL"
    if error.kind is ApiErrorKind.BAD_KEY:
        return (
            f"The API rejected {key}.",
            f"create a key (for OpenAI: https://platform.openai.com/api-keys) and put it in {key}.",
        )
    if error.kind in (ApiErrorKind.UNREACHABLE, ApiErrorKind.TIMEOUT):
        return f"The API did not answer ({error.detail}).", f"check {url} and this machine's network."
    if error.status == 404:
        return (
            f"The API has no GET /models at {url}.",
            f"check {url}: it usually ends in /v1 (such as https://api.openai.com/v1).",
        )
    return f"GET /models failed: {error.detail}", error.user_message()
