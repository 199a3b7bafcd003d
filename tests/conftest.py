"""Fixtures shared by the whole suite: the fake OpenAI server and the spec validator it uses."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.databases import BACKENDS, database_url_for
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.openapi import SPECS_DIR, OpenApiValidator


@pytest.fixture(scope="session")
def openai_validator() -> OpenApiValidator | None:
    """The OpenAI spec validator, or None when the spec is absent (the fake then checks nothing)."""
    spec = SPECS_DIR / "openai-openapi.yaml"
    return OpenApiValidator.load(spec) if spec.exists() else None


@pytest.fixture
async def fake_openai(openai_validator: OpenApiValidator | None) -> AsyncIterator[FakeOpenAI]:
    """A started FakeOpenAI; the test fails if anything it received broke the spec."""
    fake = FakeOpenAI(validator=openai_validator)
    await fake.start()
    yield fake
    await fake.close()
    if fake.violations:
        pytest.fail("requests broke the OpenAI spec:\n" + "\n".join(fake.violations), pytrace=False)


@pytest.fixture(params=BACKENDS)
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A DATABASE_URL for the test, once per backend: an SQLite file and a fresh PostgreSQL database."""
    async with database_url_for(request.param, tmp_path) as url:
        yield url
