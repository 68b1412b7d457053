"""The README and CI stay true to the code."""

from __future__ import annotations

import re
from pathlib import Path

from exec_analytics.cli import cli_reference

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _bash_blocks(text: str) -> list[str]:
    return [b.strip() for b in re.findall(r"```bash\n(.*?)```", text, flags=re.S)]


def test_readme_gives_the_two_commands_first() -> None:
    section = README.split("## Two commands", 1)[1].split("\n## ", 1)[0]
    assert _bash_blocks(section) == ["pip install . && exec-analytics demo", "pip install -e '.[test]' && pytest"]


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    test_command = _bash_blocks(README.split("## Two commands", 1)[1])[1]
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert test_command in ci_lines


def test_cli_reference_in_readme_matches_the_parser() -> None:
    block = README.split("<!-- cli-reference:start", 1)[1].split("-->", 1)[1].split("<!-- cli-reference:end -->")[0]
    assert block.strip() == cli_reference().strip(), "stale README CLI reference: regenerate with cli_reference()"
