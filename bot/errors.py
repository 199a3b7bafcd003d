"""The errors the bot raises on purpose, and the words people see for them."""

from __future__ import annotations

import enum
import math

GENERIC_FAILURE = "😵 Something went wrong on my side. It has been logged; please try again."


class ConfigError(Exception):
    """The configuration is missing or invalid; carries every problem found, each with its fix."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))

    def report(self) -> str:
        """The message printed before the process exits."""
        lines = ["The bot cannot start; fix these settings (in the environment or .env):"]
        lines += [f"  - {problem}" for problem in self.problems]
        return "\n".join(lines)


class StartupError(Exception):
    """The bot cannot start for a reason the owner can fix; the message says what and how."""


class UserError(Exception):
    """Something the user asked for cannot be done; the message is shown to them as it is."""


class LimitReached(UserError):
    """A per-minute limit or a daily budget refused the request: `reason` says which ("rate:user",
    "budget:guild", …), `retry_after` in how many seconds it frees up."""

    def __init__(self, message: str, reason: str, retry_after: float) -> None:
        super().__init__(message)
        self.reason = reason
        self.retry_after = retry_after


class ApiErrorKind(enum.Enum):
    """What went wrong with a call to the OpenAI-compatible API, classified by status and error code."""

    RATE_LIMITED = "rate_limited"
    QUOTA_EXHAUSTED = "quota_exhausted"
    CONTEXT_TOO_LONG = "context_too_long"
    SAFETY_REFUSAL = "safety_refusal"
    BAD_KEY = "bad_key"
    FORBIDDEN = "forbidden"
    ORGANIZATION_NOT_VERIFIED = "organization_not_verified"
    MODEL_NOT_FOUND = "model_not_found"
    BAD_REQUEST = "bad_request"
    SERVER_ERROR = "server_error"
    TIMEOUT = "timeout"
    UNREACHABLE = "unreachable"
    STREAM_BROKEN = "stream_broken"


class ApiError(Exception):
    """A call to the OpenAI-compatible API failed; `kind` decides what the user is told.

    The message never holds the API key: the client redacts it before raising.
    """

    def __init__(
        self,
        kind: ApiErrorKind,
        detail: str,
        *,
        status: int | None = None,
        code: str | None = None,
        retry_after: float | None = None,
        model: str | None = None,
        param: str | None = None,
    ) -> None:
        self.kind = kind
        self.param = param  # the request field the error is about, when the API names one
        self.detail = detail
        self.status = status
        self.code = code
        self.retry_after = retry_after
        self.model = model
        super().__init__(f"{kind.value} (status={status}, code={code}): {detail}")

    def user_message(self) -> str:
        """Short words for a Discord member that say what happened and what to do next."""
        match self.kind:
            case ApiErrorKind.RATE_LIMITED:
                wait = f" in about {math.ceil(self.retry_after)} s" if self.retry_after else " in a minute"
                return f"⏳ The AI service is busy right now (rate limit reached). Please try again{wait}."
            case ApiErrorKind.QUOTA_EXHAUSTED:
                return (
                    "💳 The bot's API credit is used up, so it cannot answer for now. "
                    "A server admin needs to add credit or raise the limit on the API account."
                )
            case ApiErrorKind.CONTEXT_TOO_LONG:
                return "📏 This conversation is too long for the model. Use `/reset` to start afresh."
            case ApiErrorKind.SAFETY_REFUSAL:
                return "🚫 The provider's safety system refused this request. Try rephrasing it."
            case ApiErrorKind.BAD_KEY:
                return "🔑 The bot's API key was rejected. A server admin needs to check OPENAI_API_KEY."
            case ApiErrorKind.ORGANIZATION_NOT_VERIFIED:
                return (
                    "🔒 The API account must be verified to use this model. The bot's owner can verify the "
                    "organization in the provider's settings (for OpenAI: Settings → Organization → General), "
                    "or configure another model."
                )
            case ApiErrorKind.FORBIDDEN:
                return (
                    "🔒 The API account may not use this feature or model. A server admin needs to check the account."
                )
            case ApiErrorKind.MODEL_NOT_FOUND:
                name = f" `{self.model}`" if self.model else ""
                return f"❓ The model{name} does not exist on the configured API. Pick another model."
            case ApiErrorKind.BAD_REQUEST if self.param == "temperature":
                # A reasoning model REASONING_MODELS does not name: the bot sent the temperature it was asked for.
                name = f" `{self.model}`" if self.model else ""
                return (
                    f"🌡️ The model{name} takes no temperature. Ask again without one "
                    "(the bot's owner can add the model to REASONING_MODELS)."
                )
            case ApiErrorKind.BAD_REQUEST:
                return "⚠️ The AI service could not handle this request. Try rephrasing it or starting afresh."
            case ApiErrorKind.SERVER_ERROR | ApiErrorKind.UNREACHABLE:
                return "🛠️ The AI service is having trouble right now. Please try again in a few minutes."
            case ApiErrorKind.TIMEOUT:
                return "⌛ The AI service took too long to answer. Please try again."
            case ApiErrorKind.STREAM_BROKEN:
                return "✂️ The answer was interrupted by the AI service. Please ask again."


def describe_expected(error: BaseException) -> str | None:
    """The words a user sees for an error the bot raises on purpose, or None for anything else."""
    if isinstance(error, UserError):
        return str(error)
    if isinstance(error, ApiError):
        return error.user_message()
    return None
