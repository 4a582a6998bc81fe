"""The docs test's helpers: which lines a Markdown file's bash blocks hold, and how the shell runs them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.docs_commands import DocShell, command_words, option, shell_lines

DOC = """\
# Title

```bash
cd examples/power          # a comment
# a comment-only line
tidecast predict --model m --version 3 \\
                 --output f.csv

curl -s localhost:8000/forecast -d '{
  "horizon": 288
}'
```

```yaml
not: [a, shell, line]
```

```text
tidecast report [--model NAME]
```

```sh
TOKEN=x tidecast serve --port 9000   # a server
```
"""


def test_shell_lines_joins_continued_lines_and_skips_other_blocks(tmp_path: Path) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text(DOC)
    assert shell_lines(doc) == [
        "cd examples/power          # a comment",
        "tidecast predict --model m --version 3 \\\n                 --output f.csv",
        "curl -s localhost:8000/forecast -d '{\n  \"horizon\": 288\n}'",
        "TOKEN=x tidecast serve --port 9000   # a server",
    ]


def test_an_unterminated_line_is_an_error(tmp_path: Path) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text("```bash\necho 'open\n```\n")
    with pytest.raises(ValueError, match="unterminated"):
        shell_lines(doc)


def test_command_words_drop_assignments_and_comments() -> None:
    words = command_words("TOKEN=x A=1 tidecast serve --port=9000 --model 3  # note")
    assert words == ["tidecast", "serve", "--port=9000", "--model", "3"]
    assert option(words, "--port", "8000") == "9000" and option(words, "--model", "c") == "3"
    assert option(words, "--host", "127.0.0.1") == "127.0.0.1"


def test_cd_lines_move_the_shell_and_failures_show(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    shell = DocShell(tmp_path, {**os.environ})
    assert shell.change_dir("cd a") is None and shell.cwd == tmp_path / "a"
    assert shell.change_dir("cd b && pwd") == "pwd" and shell.cwd == tmp_path / "a" / "b"
    assert shell.run("pwd", timeout=10).stdout.strip() == str(tmp_path / "a" / "b")
    assert shell.change_dir("(cd .. && pwd)") == "(cd .. && pwd)"  # a subshell moves nothing
    with pytest.raises(AssertionError, match="no folder"):
        shell.change_dir("cd nowhere")
    assert shell.run("exit 3  # a comment", timeout=10).returncode == 3
    with pytest.raises(subprocess.TimeoutExpired):
        shell.run("sleep 20; echo late", timeout=0.5)
    shell.start_document()
    assert shell.cwd == tmp_path


def test_a_server_is_probed_and_stopped(tmp_path: Path) -> None:
    shell = DocShell(tmp_path, {**os.environ})
    server = shell.start(
        f"{sys.executable} -m http.server 0 --bind 127.0.0.1", None, "Serving HTTP", tmp_path / "s.log"
    )
    assert "Serving HTTP" in server.wait_ready(30)
    assert shell.stop_server() is not None and server.process.poll() is not None
    dead = shell.start("exit 4", "http://127.0.0.1:9/", None, tmp_path / "d.log")
    with pytest.raises(AssertionError, match="exited with 4"):
        dead.wait_ready(10)
