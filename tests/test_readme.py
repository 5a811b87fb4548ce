"""The README's Python blocks run as written (they are the first thing a
newcomer copies), and print what the README says they print.

A block states a ``print``'s output as the comment on that ``print`` line
(``print(x)  # ['hiking']``); every ``print`` in the README must state one,
and the block's stdout must be exactly those lines, in order."""

from __future__ import annotations

import io
import re
import subprocess
import sys
import tokenize
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def stated_outputs(code: str) -> list[str | None]:
    """One entry per line that starts with ``print(``, in order: the text of
    the comment on that line, or None when the line has no comment."""
    comments = {
        tok.start[0]: tok.string.removeprefix("#").strip()
        for tok in tokenize.generate_tokens(io.StringIO(code).readline)
        if tok.type == tokenize.COMMENT
    }
    return [comments.get(n) for n, line in enumerate(code.splitlines(), 1) if line.lstrip().startswith("print(")]


def test_readme_has_python_blocks() -> None:
    assert BLOCKS


def test_the_http_example_states_its_outputs() -> None:
    # The "Serving over HTTP" example is the one whose outputs the reader is
    # shown; make sure the parsing below finds them (and so compares them).
    http = [b for b in BLOCKS if "tidal.create_app(app)" in b]
    assert len(http) == 1
    assert stated_outputs(http[0]) == ["after 0 events, try hiking", "['hiking']", "['props.event']"]


def test_stated_outputs_parsing() -> None:
    code = 'x = "print(#)"\nprint(x)  # a # b\n    print("#")\nprint(1)  # 1\n'
    assert stated_outputs(code) == ["a # b", None, "1"]


@pytest.mark.parametrize("code", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_readme_block_runs(code: str, tmp_path: Path) -> None:
    expected = stated_outputs(code)
    assert None not in expected, "every print in a README block states its output as a comment on its line"
    script = tmp_path / "block.py"
    script.write_text(code)
    result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == expected
