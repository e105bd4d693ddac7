"""py-spy on the server: record collapsed stacks for a phase, then summarise where the samples fell."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

# Where a sample's time goes: walking its stack from the leaf up, the first of a bench's categories
# (function name, "" = any, "x*" = prefix; a substring of its file; category) decides; the key frames
# (function name, file) of its request path get an inclusive share each.  Each bench passes its own.
Categories = list[tuple[str, str, str]]
KeyFrames = list[tuple[str, str]]


def py_spy() -> str:
    found = Path(sys.executable).parent / "py-spy"
    exe = str(found) if found.exists() else shutil.which("py-spy")
    if not exe:
        raise SystemExit("--profile needs py-spy: pip install py-spy")
    return exe


def start_profile(
    pid: int,
    seconds: float,
    workers: int,
    out: Path,
    rate: int,
    native: bool,
    categories: Categories,
    key_frames: KeyFrames,
) -> Callable[[], dict[str, Any]]:
    """py-spy record (collapsed stacks) on the server for `seconds`; returns a function that waits for it
    and summarises where the samples fell (under `categories` and `key_frames`)."""
    # --gil: only samples where a thread holds the GIL, i.e. Python (and C extensions) at work; without it,
    # the anyio threadpool's idle workers (FastAPI runs sync dependencies there) show up as busy.
    command = [py_spy(), "record", "--pid", str(pid), "--duration", str(max(1, round(seconds)))]
    command += ["--rate", str(rate), "--format", "raw", "--nolineno", "--gil", "--threads"]
    # --native (C frames: the garbage collector, uvloop, ...) needs py-spy to pause the server per sample.
    command += ["--native"] if native else ["--nonblocking"]
    command += ["--output", str(out)]
    if workers > 1:
        command.append("--subprocesses")
    spy = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def finish() -> dict[str, Any]:
        try:
            _, err = spy.communicate(timeout=seconds + 30)
        except subprocess.TimeoutExpired:
            spy.kill()
            _, err = spy.communicate()
        if spy.returncode != 0 or not out.exists():
            print(f"py-spy failed ({spy.returncode}): {err.strip()[-500:]}")
            return {"error": err.strip()[-500:]}
        return summarise_profile(out, seconds * rate * max(1, workers), categories, key_frames)

    return finish


OTHER = "other (asyncio/uvloop glue, libc, ...)"


def _frame_parts(frame: str) -> tuple[str, str]:
    name, _, rest = frame.partition(" (")
    return name, rest.rstrip(")")


def _package(path: str) -> str:
    if "profilestore/" in path or path.startswith("profilestore"):
        return "profilestore/" + path.rsplit("profilestore/", 1)[-1].split("/")[0].removesuffix(".py")
    head = path.split("/", 1)[0].removesuffix(".py")
    return head or path


def _matches(frame: str, name: str, in_path: str) -> bool:
    fn, path = _frame_parts(frame)
    named = fn.startswith(name[:-1]) if name.endswith("*") else not name or fn == name
    return named and in_path in path


def summarise_profile(
    out: Path, expected: float, categories: Categories, key_frames: KeyFrames
) -> dict[str, Any]:
    """`expected`: samples one thread holding the GIL all the time would give."""
    samples = 0
    threads: Counter[str] = Counter()
    category: Counter[str] = Counter()
    self_fn: Counter[str] = Counter()
    self_pkg: Counter[str] = Counter()
    key: Counter[str] = Counter()
    for line in out.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        parts = stack.split(";")
        thread = "?"
        frames = []
        for part in parts:
            if part.startswith("thread ("):
                # "thread (tid): name"; anyio's pool threads get one name each: group them.
                thread = part.split(": ", 1)[-1]
                thread = "anyio worker threads" if "AnyIO worker" in thread else thread
            elif not part.startswith("process "):
                frames.append(part)
        if not frames:
            continue
        samples += count
        threads[thread] += count
        leaf = frames[-1]
        self_fn[leaf] += count
        self_pkg[_package(_frame_parts(leaf)[1])] += count
        for frame in reversed(frames):
            found = next((c for n, f, c in categories if _matches(frame, n, f)), None)
            if found:
                category[found] += count
                break
        else:
            category[OTHER] += count
        seen = set(frames)
        for name, suffix in key_frames:
            if any(_matches(f, name, suffix) for f in seen):
                key[f"{name} ({suffix})"] += count

    def share(n: int) -> float:
        return round(100 * n / samples, 1) if samples else 0.0

    summary: dict[str, Any] = {
        "file": str(out),
        "samples": samples,
        "gil_held_fraction": round(samples / expected, 3) if expected else None,
        "threads_pct": {k: share(v) for k, v in threads.most_common(5)},
        "breakdown_pct": {k: share(v) for k, v in category.most_common()},
        "key_functions_inclusive_pct": {k: share(v) for k, v in key.most_common()},
        "packages_self_pct": {k: share(v) for k, v in self_pkg.most_common(10)},
        "functions_self_pct": {k: share(v) for k, v in self_fn.most_common(15)},
    }
    tables: list[tuple[str, dict[str, float]]] = [
        ("where the GIL-holding samples fall (exclusive, leaf-up), %", summary["breakdown_pct"]),
        ("by thread, %", summary["threads_pct"]),
        ("request-path functions, inclusive %", summary["key_functions_inclusive_pct"]),
        ("self time by package/module, %", summary["packages_self_pct"]),
        ("top functions by self time, %", summary["functions_self_pct"]),
    ]
    lines = [
        f"py-spy: {samples} samples with the GIL held, i.e. the GIL was busy"
        f" {summary['gil_held_fraction']:.0%} of the wall time (Python + C extensions, not syscalls)"
    ]
    for title, table in tables:
        lines.append(f"  {title}:")
        lines.extend(f"    {v:5.1f}  {k}" for k, v in table.items())
    report = out.with_suffix(".summary.txt")
    report.write_text("\n".join(lines) + "\n")
    summary["summary_file"] = str(report)
    summary["text"] = lines
    return summary
