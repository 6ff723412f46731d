"""The repository speaks of its software (versions, dates, commits, measurements), never of how the work on
it was organised: no numbered work periods or issue numbers in code, comments, docs or test names."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TEXT_SUFFIXES = {".py", ".md", ".txt", ".toml", ".json", ".cfg", ".yml", ".yaml", ".sh", ""}
# Built from word lists, so that this file does not itself say what it looks for. A lone unit word is fine
# (a Gradio visitor's session, pytest's session scope); numbered or qualified, it speaks of the work.
UNITS = ("session", "issue", "task", "sprint")
QUALIFIERS = ("this", "next", "previous", "later", "earlier", "work", "training", "gpu", "cpu")
ORGANISATION = re.compile(
    rf"(?<![-\w])({'|'.join(UNITS)})s?[ -]?#?\d"  # numbered (but not a command-line flag such as --sessions 20)
    rf"|\b({'|'.join(QUALIFIERS)}) {UNITS[0]}s?\b"  # qualified
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
    unit, ticket = UNITS[0], UNITS[1]
    for text in (f"measured in {unit} 7", f"{ticket} 15", f"{unit.title()}s 1-3", f"needs a GPU {unit}",
                 f"{QUALIFIERS[0]} {unit}"):
        assert ORGANISATION.search(text), text
    for text in (f"each visitor's {unit}", f"N concurrent gradio_client {unit}s", f'scope="{unit}"',
                 f"--{unit}s 20", f"the {unit}'s model", f"{ticket}s a warning"):
        assert not ORGANISATION.search(text), text
