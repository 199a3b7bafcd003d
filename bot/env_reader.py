"""Reading typed values from the environment, collecting every problem instead of stopping at the first."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TypeVar

from bot.api import MODEL_NAME
from bot.models import parse_patterns

T = TypeVar("T")


class EnvReader:
    """Reads typed values from a mapping such as os.environ; `problems` lists what was wrong, with its fix."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.problems: list[str] = []

    def problem(self, message: str) -> None:
        self.problems.append(message)

    def text(self, name: str, default: str) -> str:
        value = self.env.get(name, "").strip()
        return value or default

    def _parse(self, name: str, default: T, parse: Callable[[str], T], expected: str) -> T:
        raw = self.env.get(name, "").strip()
        if not raw:
            return default
        try:
            return parse(raw)
        except ValueError:
            self.problem(f"{name} must be {expected}, not {raw!r}.")
            return default

    def integer(self, name: str, default: int, *, minimum: int) -> int:
        value = self._parse(name, default, int, "a whole number")
        if value < minimum:
            self.problem(f"{name} must be at least {minimum}, not {value}.")
        return value

    def number(self, name: str, default: float, *, minimum: float) -> float:
        value = self._parse(name, default, float, "a number")
        if value < minimum:
            self.problem(f"{name} must be at least {minimum:g}, not {value:g}.")
        return value

    def optional_int(
        self, name: str, expected: str = "a Discord server id (a number; right-click the server → Copy ID)"
    ) -> int | None:
        return self._parse(name, None, int, expected)

    def ids(self, name: str, kind: str) -> frozenset[int]:
        """A comma-separated list of Discord ids; unset means an empty set."""
        raw = self.env.get(name, "").strip()
        parts = [part.strip() for part in raw.split(",") if part.strip()]
        bad = [part for part in parts if not part.isdigit()]
        if bad:
            self.problem(
                f"{name} must be a comma-separated list of {kind} ids (numbers; right-click the {kind} → Copy ID "
                f"with Developer Mode on); these are not: {', '.join(bad)}."
            )
            return frozenset()
        return frozenset(int(part) for part in parts)

    def model_names(self, name: str) -> tuple[str, ...]:
        """A comma-separated list of model names; unset means none."""
        names = tuple(dict.fromkeys(part.strip() for part in self.env.get(name, "").split(",") if part.strip()))
        bad = [model for model in names if not MODEL_NAME.match(model)]
        if bad:
            self.problem(f"{name} must be comma-separated model names such as gpt-5-mini,gpt-5; not {', '.join(bad)}.")
            return ()
        return names

    def patterns(self, name: str, default: tuple[str, ...]) -> tuple[str, ...]:
        """Comma-separated model name patterns (`*` matches any run of characters); unset means the default."""
        return parse_patterns(self.env.get(name, "")) or default

    def boolean(self, name: str, default: bool) -> bool:
        def parse(raw: str) -> bool:
            lowered = raw.lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)

        return self._parse(name, default, parse, "true or false")

    def choices(
        self, name: str, default: tuple[str, ...], is_valid: Callable[[str], bool], expected: str
    ) -> tuple[str, ...]:
        raw = self.env.get(name, "").strip()
        if not raw:
            return default
        values = tuple(part.strip() for part in raw.split(",") if part.strip())
        bad = [value for value in values if not is_valid(value)]
        if bad or not values:
            self.problem(f"{name} must be a comma-separated list of {expected}; these are not: {', '.join(bad)}.")
            return default
        return values
