"""What the processes use, from /proc: CPU per party (server, Postgres, this client, the rest of the machine)
over an interval, and a process's resident memory during a measurement."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import db

CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass
class Proc:
    name: str  # comm
    ppid: int
    user: float  # utime of all its threads, seconds
    system: float  # stime

    @property
    def seconds(self) -> float:
        return self.user + self.system


def scan_processes() -> dict[int, Proc]:
    procs = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        procs[int(entry.name)] = Proc(
            name, int(fields[1]), int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK
        )
    return procs


def process_tree(procs: dict[int, Proc], root: int) -> set[int]:
    """root and its descendants (uvicorn worker processes when --workers > 1)."""
    children: dict[int, list[int]] = {}
    for pid, proc in procs.items():
        children.setdefault(proc.ppid, []).append(pid)
    found, todo = set(), [root]
    while todo:
        pid = todo.pop()
        found.add(pid)
        todo.extend(children.get(pid, []))
    return found


def cmdline(pid: int) -> str:
    """Postgres rewrites its argv: 'postgres: 15/main: user db 127.0.0.1(port) idle' for a backend."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


MACHINE_FIELDS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")


def machine_ticks() -> dict[str, int]:
    """Jiffies of all CPUs since boot, by kind (guest time is inside user)."""
    values = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    return dict(zip(MACHINE_FIELDS, map(int, values), strict=False))


@dataclass
class CpuSnapshot:
    wall: float
    procs: dict[int, Proc]
    server: set[int]
    backends: set[int]  # postgres processes serving the bench database (not autovacuum)
    postmaster: int | None  # their parent: its other children are the server's own processes
    machine: dict[str, int]


def cpu_snapshot(server_pid: int | None) -> CpuSnapshot:
    procs = scan_processes()
    server = process_tree(procs, server_pid) if server_pid in procs else set()
    backends = set()
    for pid, proc in procs.items():
        if proc.name == "postgres":  # what `ps -C postgres` lists
            args = cmdline(pid)
            if f" {db.BENCH_DB} " in args and "autovacuum" not in args:
                backends.add(pid)
    parents = Counter(procs[pid].ppid for pid in backends)
    postmaster = parents.most_common(1)[0][0] if parents else None
    return CpuSnapshot(time.perf_counter(), procs, server, backends, postmaster, machine_ticks())


def cpu_split(before: CpuSnapshot, after: CpuSnapshot) -> dict[str, Any]:
    """Cores used on average over the interval (1.0 = one core busy all the time), per party.
    A process that started during the interval counts whole; one that ended during it is lost."""
    wall = after.wall - before.wall

    def used(pid: int, kind: str = "seconds") -> float:
        old = before.procs.get(pid)  # (kernel workers rename themselves: match by pid only)
        base = getattr(old, kind) if old is not None else 0.0
        return float(getattr(after.procs[pid], kind) - base) / wall

    me = os.getpid()
    parties: dict[str, float] = {"server": 0.0, "postgres_backends": 0.0, "postgres_other": 0.0}
    parties["bench_client"] = used(me)
    server_system = 0.0
    postmaster = after.postmaster or before.postmaster
    others: dict[str, float] = {}
    for pid, proc in after.procs.items():
        if pid == me:
            continue
        if pid in after.server or pid in before.server:
            parties["server"] += used(pid)
            server_system += used(pid, "system")
        elif pid in after.backends:
            parties["postgres_backends"] += used(pid)
        elif proc.name == "postgres" and postmaster in (pid, proc.ppid):
            parties["postgres_other"] += used(pid)  # walwriter, checkpointer, autovacuum, ...
        elif (seconds := used(pid)) > 0:
            name = proc.name.split("/", 1)[0] if proc.name.startswith("kworker") else proc.name
            name = "postgres (another cluster)" if name == "postgres" else name
            others[name] = others.get(name, 0.0) + seconds
    ticks = {k: (after.machine[k] - before.machine[k]) / CLK_TCK / wall for k in MACHINE_FIELDS}
    busy = sum(ticks.values()) - ticks["idle"] - ticks["iowait"]
    split: dict[str, Any] = {k: round(v, 3) for k, v in parties.items()}
    split["server_system"] = round(server_system, 3)
    split["postgres"] = round(parties["postgres_backends"] + parties["postgres_other"], 3)
    split["other_processes"] = round(sum(others.values()), 3)
    split["profiler"] = round(others.get("py-spy", 0.0), 3)
    top = sorted(others.items(), key=lambda kv: -kv[1])[:3]
    split["top_other_processes"] = {k: round(v, 3) for k, v in top}
    split["machine_busy"] = round(busy, 3)
    split["machine_cores"] = round(sum(ticks.values()), 3)
    split["machine"] = {k: round(v, 3) for k, v in ticks.items() if k not in ("nice", "steal")}
    # Kernel work charged to no process (softirqs of the loopback network, kernel threads' time is above).
    split["unattributed"] = round(busy - sum(parties.values()) - split["other_processes"], 3)
    return split


def cpu_line(split: dict[str, Any]) -> str:
    m = split["machine"]
    top = ", ".join(f"{k} {v:.2f}" for k, v in split["top_other_processes"].items()) or "-"
    foreign = split["other_processes"] - split["profiler"] + max(0.0, split["unattributed"])
    noisy = f"\n  WARNING: other jobs took {foreign:.2f} cores during this phase" if foreign > 0.15 else ""
    return (
        f"  cpu (cores): server {split['server']:.2f} (kernel {split['server_system']:.2f})"
        f" | postgres {split['postgres']:.2f}"
        f" (backends {split['postgres_backends']:.2f}, other {split['postgres_other']:.2f})"
        f" | bench client {split['bench_client']:.2f}"
        f" | other processes {split['other_processes']:.2f} ({top})"
        f" | unattributed {split['unattributed']:.2f}\n"
        f"  machine: busy {split['machine_busy']:.2f} of {split['machine_cores']:.1f} cores"
        f" (user {m['user']:.2f}, system {m['system']:.2f}, softirq {m['softirq']:.2f},"
        f" iowait {m['iowait']:.2f}, idle {m['idle']:.2f})" + noisy
    )


class RssSampler:
    """The server's resident memory during an export: VmHWM after resetting it (clear_refs "5"), and VmRSS
    sampled every 20 ms (the fallback where clear_refs is not writable)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.stop = threading.Event()
        self.peak_sampled = 0
        self.hwm_reset = False
        self.before = self.read("VmRSS")
        with contextlib.suppress(OSError):
            Path(f"/proc/{pid}/clear_refs").write_text("5")
            self.hwm_reset = True
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def read(self, key: str) -> int:
        """kB"""
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith(key + ":"):
                    return int(line.split()[1])
        return 0

    def run(self) -> None:
        while not self.stop.wait(0.02):
            self.peak_sampled = max(self.peak_sampled, self.read("VmRSS"))

    def finish(self) -> dict[str, Any]:
        self.stop.set()
        self.thread.join()
        peak = self.read("VmHWM") if self.hwm_reset else self.peak_sampled
        return {
            "rss_before_mb": round(self.before / 1024, 1),
            "peak_rss_mb": round(max(peak, self.peak_sampled) / 1024, 1),
            "peak_sampled_mb": round(self.peak_sampled / 1024, 1),
            "peak_from": "VmHWM" if self.hwm_reset else "sampled VmRSS",
        }
