"""Write the synchronous modules from their async sources.

    python tools/unasync.py          rewrite the generated files
    python tools/unasync.py --check  exit 1 if a generated file is out of date

The async modules are the source of truth; the sync ones are derived by plain
textual rules, so the two APIs cannot drift. The test suite runs --check.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "rapidfire"
FILES = {
    "_async_executor.py": "_executor.py",
    "_async_batcher.py": "_batcher.py",
}
RULES = [
    (r"\bAsyncExecutor\b", "SyncExecutor"),
    (r"\bAsyncBatcher\b", "Batcher"),
    (r"\bAsyncHandler\b", "Handler"),
    (r"\b_async_executor\b", "_executor"),
    (r"\b_async_worker\b", "_worker"),
    (r"\basync def ", "def "),
    (r"\basync with ", "with "),
    (r"\basync for ", "for "),
    (r"\bawait ", ""),
    (r"\b__aenter__\b", "__enter__"),
    (r"\b__aexit__\b", "__exit__"),
    (r"\baclose\b", "close"),
    (r"\badetect\(\)", "detect()"),
    (r"^ROUTE_PIPELINED_SCRIPTS = False$", "ROUTE_PIPELINED_SCRIPTS = True"),
    (
        r"pipe\.execute\(raise_on_error=False, allow_redirections=False\)",
        "execute_without_resends(pipe)",
    ),
    (
        r"^from \._protocol import ",
        "from ._cluster_pipeline import execute_without_resends\nfrom ._protocol import ",
    ),
    (r"\basync_node_client\(", "node_client("),
    (r"\basync_client\(\)", "client()"),
    (r"\banyio\.sleep\(", "time.sleep("),
    (r"\banyio\.Lock\(\)", "threading.Lock()"),
    (r"^import anyio\n", "import threading\nimport time\n"),
    (r"also awaits what it returns", "ignores what it returns"),
    (r"self\._refuses_async_handlers = False", "self._refuses_async_handlers = True"),
    (
        r"may be sync or async\.\n\s+Sync handlers run in worker threads\.",
        "runs in a worker thread.",
    ),
    (
        r"for asyncio code \(anyio on its asyncio backend\)",
        "for threads and plain code",
    ),
    (
        r"between tasks \(and, for :class:`Batcher`,\n    between threads\)",
        "between threads",
    ),
    (r"a redis-py client of this flavour", "a synchronous redis-py client"),
]
HEADER = (
    "# Generated from {source} by tools/unasync.py; do not edit.\n"
    "# Change {source}, then run `python tools/unasync.py`.\n"
)


def convert(source_name: str, text: str) -> str:
    for pattern, replacement in RULES:
        text = re.sub(pattern, replacement, text, flags=re.MULTILINE)
    text = re.sub(
        r'^"""(.*?)"""\n',
        lambda m: '"""' + m.group(1).split("\n\n")[0].strip() + '"""\n',
        text,
        count=1,
        flags=re.DOTALL,
    )
    text = _drop_repeated_imports(text)
    return HEADER.format(source=source_name) + _tidy(text)


def _drop_repeated_imports(text: str) -> str:
    seen: set[str] = set()
    lines = []
    for line in text.splitlines(keepends=True):
        if line.startswith(("import ", "from ")):
            if line in seen:
                continue
            seen.add(line)
        lines.append(line)
    return "".join(lines)


def _tidy(text: str) -> str:
    """Sort imports, drop unused ones and format, as ruff does for the source."""
    ruff = [sys.executable, "-m", "ruff"]
    name = ["--stdin-filename", str(PACKAGE / "_generated.py")]
    fixed = subprocess.run(
        [*ruff, "check", "--fix", "--select", "I,F401", "--quiet", *name, "-"],
        input=text,
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    return subprocess.run(
        [*ruff, "format", *name, "-"],
        input=fixed or text,
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    for source_name, target_name in FILES.items():
        expected = convert(source_name, (PACKAGE / source_name).read_text())
        target = PACKAGE / target_name
        if target.exists() and target.read_text() == expected:
            continue
        if check:
            stale.append(target_name)
        else:
            target.write_text(expected)
            print(f"wrote {target.relative_to(PACKAGE.parent.parent)}")
    if stale:
        print(
            "out of date: " + ", ".join(stale) + " (run: python tools/unasync.py)",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
