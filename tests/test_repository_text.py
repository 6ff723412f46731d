"""The repository speaks of its software (versions, dates, commits, measurements), never of how the work on
it was organised: no numbered work periods or issue numbers in code, comments, docs or test names."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TEXT_SUFFIXES = {".py", ".md", ".txt", ".toml", ".json", ".cfg", ".yml", ".yaml", ".sh", ""}
# "session" alone is fine (a Gradio visitor's session, pytest's session scope); these are not
ORGANISATION = re.compile(
    r"(?<![-\w])(session|issue|task|sprint)s?[ -]?#?\d"  # session 4, issue 15, sessions 1-3 (not --sessions 20)
    r"|\b(this|next|previous|later|earlier|work|training|gpu|cpu) sessions?\b"  # this session, a GPU session
    r"|\bwork periods?\b|\bsubagents?\b",
    re.IGNORECASE)


def tracked_text_files() -> list[Path]:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    names = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split("\n")
    paths = [ROOT / n for n in names if n and (ROOT / n).suffix in TEXT_SUFFIXES and (ROOT / n).is_file()]
    return [p for p in paths if p.stat().st_size < 2_000_000 and p != Path(__file__).resolve()]


def test_no_tracked_text_speaks_of_how_the_work_was_organised():
    found = []
    for path in tracked_text_files():
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        for number, line in enumerate(text.splitlines(), 1):
            if ORGANISATION.search(line):
                found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()[:100]}")
    assert not found, "\n".join(found)


def test_the_pattern_catches_work_periods_and_spares_visitor_sessions():
    for text in ("measured in session 7", "issue 15", "Sessions 1-3", "needs a GPU session", "this session"):
        assert ORGANISATION.search(text), text
    for text in ("each visitor's session", "N concurrent gradio_client sessions", 'scope="session"', "--sessions 20",
                 "the session's model", "issues a warning"):
        assert not ORGANISATION.search(text), text
