"""Each benchmark's --quick mode runs to the end and prints its table (no timing is checked: figures vary).

The PostgreSQL parts are left out (TEST_POSTGRES_URL removed) to keep this to a few seconds; each script
then says it skipped them, which is checked too.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
# Each script, and what its output must contain once it has run to the end.
EXPECTED = {
    "chat_process.py": ["bot SQLite thread", "bot SQLite mentions", "floor thread", "x the floor", "REST calls"],
    "concurrent_conversations.py": ["bot SQLite", "20/20", "target < 200 MB"],
    "store.py": ["SQLite window load", "SQLite append", "SQLite answer write"],
    "reports.py": ["bot SQLite /usage alone", "bot SQLite turn during /settings show", "server by member, month"],
    "shards_load.py": ["skipped (TEST_POSTGRES_URL is not set"],
}


@pytest.mark.parametrize("script", sorted(EXPECTED))
def test_the_quick_mode_runs_to_the_end(script: str, tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if key != "TEST_POSTGRES_URL"}
    done = subprocess.run(
        [sys.executable, str(BENCH / script), "--quick"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    for expected in EXPECTED[script]:
        assert expected in done.stdout, f"{expected!r} not in:\n{done.stdout}"
    if script != "shards_load.py":
        assert "PostgreSQL: skipped" in done.stdout
