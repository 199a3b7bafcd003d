"""Which models can do what: name patterns from configuration, matched the same way everywhere.

Whether a model sees pictures or reasons is never guessed from the API at request time: the owner
names the models with patterns (VISION_MODELS, REASONING_MODELS), and these are their defaults.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence

# OpenAI's chat models that take image input; other servers' models are the owner's to list.
DEFAULT_VISION_MODELS = ("gpt-4o*", "gpt-4.1*", "gpt-5*", "o1*", "o3*", "o4*")
# OpenAI's reasoning models: only the default temperature, no top_p, reasoning counted in the answer's tokens.
DEFAULT_REASONING_MODELS = ("gpt-5*", "o1*", "o3*", "o4*")


def parse_patterns(text: str) -> tuple[str, ...]:
    """Comma-separated name patterns as a tuple, blanks dropped: "gpt-4o*, o3*" -> ("gpt-4o*", "o3*")."""
    return tuple(pattern.strip() for pattern in text.split(",") if pattern.strip())


def model_matches(model: str, patterns: Sequence[str]) -> bool:
    """Whether a model name matches any fnmatch-style pattern (`*`, `?`, `[...]`), ignoring case.

    A name with a provider prefix ("openai/gpt-4o", as routers such as OpenRouter write them) also
    matches by its last part, so the default patterns serve those servers too.
    """
    name = model.strip().casefold()
    candidates = {name, name.rsplit("/", 1)[-1]}
    return any(
        fnmatch.fnmatchcase(candidate, pattern.strip().casefold())
        for pattern in patterns
        if pattern.strip()
        for candidate in candidates
    )
