"""``ANYON_BENCH_PROFILE=1 make bench``: sample the web and worker processes with py-spy while an item runs and
print where their time went (the functions holding the most samples, idle waits left out). ``ANYON_BENCH_PROFILE=gil``
keeps only the samples of threads holding the GIL: the processes' Python CPU, without their waits on locks, sockets
and the database."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

#: Frames that are a process waiting, not working.
IDLE = (
    "select (",
    "epoll",
    "poll (",
    "wait (threading",
    "_worker (concurrent",
    "readinto (socket",
    "get (queue",
    "(multiprocessing/",
    "wait (shared/wakeups/sockets.py",
    "_loop (execution/sweeps/host_beat.py",  # its sleep between heartbeats
    "_work (execution/hosts/container_removal.py",  # waiting for a container to remove
)


PROJECT = ("(anyon/", "(execution/", "(secrets_app/")


def summarize(raw: Path, top: int = 10) -> dict[str, list[str]]:
    """Busiest leaf frames (where the CPU was) and busiest project functions (inclusive: what caused it)."""
    leaves: Counter[str] = Counter()
    ours: Counter[str] = Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        if not count.isdigit() or any(marker in frames[-1] for marker in IDLE):
            continue
        leaves[frames[-1]] += int(count)
        for frame in dict.fromkeys(f.rsplit(":", 1)[0] for f in frames if any(p in f for p in PROJECT)):
            ours[frame] += int(count)
    total = sum(leaves.values()) or 1

    def share(counter: Counter[str]) -> list[str]:
        return [f"{100 * n / total:4.1f}% {name}" for name, n in counter.most_common(top)]

    return {"busy_samples": [str(total)], "leaf": share(leaves), "project": share(ours)}


@contextlib.contextmanager
def profiled(pids: dict[str, int], folder: Path):
    """Record each process (and its children) with py-spy until the block ends; yields the summaries by name."""
    beside = Path(sys.executable).parent / "py-spy"  # the virtualenv's, when its bin/ is not on PATH
    spy = str(beside) if beside.exists() else shutil.which("py-spy")
    if spy is None:
        raise RuntimeError("py-spy is not installed: pip install -e '.[test]'")
    folder.mkdir(parents=True, exist_ok=True)
    records = {
        name: subprocess.Popen(
            [
                spy,
                "record",
                "--subprocesses",
                "-r",
                "250",
                "-f",
                "raw",
                "-o",
                str(folder / f"{name}.txt"),
                "-p",
                str(pid),
                *(["--gil"] if os.environ.get("ANYON_BENCH_PROFILE") == "gil" else []),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for name, pid in pids.items()
    }
    summaries: dict[str, dict[str, list[str]]] = {}
    try:
        yield summaries
    finally:
        for process in records.values():
            process.send_signal(signal.SIGINT)  # py-spy writes its file on Ctrl-C
        for name, process in records.items():
            process.wait(timeout=60)
            if (folder / f"{name}.txt").exists():
                summaries[name] = summarize(folder / f"{name}.txt")
