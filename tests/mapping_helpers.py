"""Helpers shared by the tests/test_mapping_*.py suites: small mapping files built from a valid
base, and positions found by text so the tests do not hard-code line numbers."""
from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import plugin.mapping
from plugin.mapping import DEFAULT_MAPPING_PATH, Problem, validate_mapping_file

BASE = """\
version: 1
objects:
  person:
    target: prospect
    fields:
      - source: main_location[email]
        target: emails
        transforms: [trim, lower, to_list]
{person}
  organisation:
    target: account
    fields:
      - source: name
        target: name
        transforms: [truncate]
{organisation}
"""


def indent(block: str, spaces: int) -> str:
    block = textwrap.dedent(block).strip("\n")
    return textwrap.indent(block, " " * spaces) if block else ""


def mapping_text(person: str = "", organisation: str = "") -> str:
    """A valid mapping plus extra field items (written as at column 0) in each section."""
    return BASE.format(person=indent(person, 6), organisation=indent(organisation, 6))


def write(tmp_path: Path, text: str, name: str = "mapping.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def check(tmp_path: Path, text: str, **kwargs) -> list[Problem]:
    return validate_mapping_file(write(tmp_path, text), **kwargs)


def errors(problems: list[Problem]) -> list[Problem]:
    return [p for p in problems if p.is_error]


def warnings(problems: list[Problem]) -> list[Problem]:
    return [p for p in problems if not p.is_error]


def position(text: str, needle: str, occurrence: int = 1, offset: int = 0) -> tuple[int, int]:
    """(line, column), 1-based, of the `occurrence`-th `needle` in `text`, plus `offset` chars."""
    start = -1
    for _ in range(occurrence):
        start = text.index(needle, start + 1)
    start += offset
    line = text.count("\n", 0, start) + 1
    col = start - (text.rfind("\n", 0, start) + 1) + 1
    return line, col


def at(problems: list[Problem], line: int, col: int) -> list[Problem]:
    return [p for p in problems if (p.line, p.col) == (line, col)]


def only(problems: list[Problem]) -> Problem:
    assert len(problems) == 1, "\n".join(map(str, problems)) or "no problems"
    return problems[0]


# --- mappings a run may read: only the bundle's mappings/ folder (issue 16 §4) ---------------------

def bundled(monkeypatch, tmp_path: Path, text: str, name: str = "custom.yaml") -> str:
    """`text` as a mapping an in-process run reads, returned as its `mapping` parameter. A run
    reads only the bundle's mappings/ folder (plugin.mapping.MAPPINGS_DIR): here a folder of the
    test's own, holding the shipped default beside `text`."""
    folder = tmp_path / "mappings"
    folder.mkdir(exist_ok=True)
    shutil.copy2(DEFAULT_MAPPING_PATH, folder / DEFAULT_MAPPING_PATH.name)
    (folder / name).write_text(text, encoding="utf-8")
    monkeypatch.setattr(plugin.mapping, "MAPPINGS_DIR", folder)
    return f"mappings/{name}"


def bundle_copy(dest: Path, mappings: dict[str, str] | None = None) -> Path:
    """A copy of what tools/package ships, at `dest`, with `mappings` ({name: text}) added to its
    mappings/ folder. Its scripts run as Workbooks runs them: by path, from the bundle."""
    from tools.package import bundled_files
    for name, source in bundled_files():
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
    for name, text in (mappings or {}).items():
        (dest / "mappings" / name).write_text(text, encoding="utf-8")
    return dest
