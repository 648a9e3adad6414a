# Long because every figure of make bench is measured here against the real engine, one function each.
"""``make bench``: what the platform costs on top of Docker itself, measured on the embedded default (SQLite, ORM
broker, in-memory channel layer, no Redis) against the real engine and runtime image.

Each figure is printed as one JSON line (``{"metric": ..., ...}``) and a human summary at the end. The baseline
runs in the same process: the same image and command driven directly through the docker SDK, no Django.

Deviation, stated: attempts are started with ``execution.attempts.actions.do_start_attempt`` (what the start view calls)
because the UI has no form for a custom command; the HTTP round trip of such a POST is measured separately and
added to the start-latency figures.
"""

from __future__ import annotations

import asyncio
import atexit
import base64
import contextlib
import functools
import gc
import json
import os
import re
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from tests.live_stack import LiveStack, configure  # noqa: E402

#: ANYON_BENCH_MODE=sealed runs the platform's attempts sealed (with an egress proxy process); the throughput figure
#: needs the token inside the container, so it is a mounted-mode figure (masking is the same code in both modes).
MODE = os.environ.get("ANYON_BENCH_MODE", "mounted")
#: ANYON_BENCH_DATABASE=postgresql runs the platform on a throwaway PostgreSQL server (the scale-out database, with
#: the embedded channel layer and broker as before) instead of the embedded SQLite file.
DATABASE = os.environ.get("ANYON_BENCH_DATABASE", "sqlite")
SERVICES = contextlib.ExitStack()
if DATABASE == "postgresql":
    from tests.fixtures.services import postgres_server

    os.environ["DATABASE_URL"] = SERVICES.enter_context(postgres_server("anyon_bench"))
    atexit.register(SERVICES.close)
WORK = configure(
    "bench",
    ANYON_CLOUD_NETWORK="none",
    ANYON_WORKERS=os.environ.get("ANYON_WORKERS", "4"),
    ANYON_CREDENTIAL_MODE=MODE,
    ANYON_ATTEMPT_LOG_MAX_CHARS="0",  # the benchmark stores every byte (200 MB runs)
    ANYON_MAX_ACTIVE_ATTEMPTS_PER_USER="0",  # and measures concurrency, not the per-user limit
    ANYON_MAX_WEBSOCKETS_PER_USER="0",  # 50 viewers of one user (the fan-out figure), not the socket limit
    DJANGO_SETTINGS_MODULE="tests.bench.settings",  # the test settings and the web process's query counter
    **({"DATABASE_URL": os.environ["DATABASE_URL"]} if DATABASE == "postgresql" else {}),
)
os.environ["ANYON_BENCH_QUERY_COUNTS"] = str(WORK)

import django  # noqa: E402

django.setup()

import docker  # noqa: E402
import websockets  # noqa: E402
from django.conf import settings  # noqa: E402
from django.contrib.auth.models import User  # noqa: E402

from execution.attempts import secret_dir  # noqa: E402
from execution.attempts.actions import do_create_task, do_start_attempt  # noqa: E402
from execution.models import Attempt, LogRecord, PoolContainer, Run  # noqa: E402
from execution.runner.step_runner import ENGINE_LOST_OUTPUT  # noqa: E402
from secrets_app.secret_store import do_store_secret  # noqa: E402
from shared.masking import MASK, Masker  # noqa: E402

RESULTS: list[dict] = []
IMAGE = settings.ANYON_CLOUD_IMAGE
GH_TOKEN = "ghp_" + "B" * 30 + "enchT0ken1"
RUNS = int(os.environ.get("ANYON_BENCH_RUNS", "20"))
#: The warm pool of the "warm" items (the worker restarts with ANYON_POOL_SIZE set to this).
POOL = int(os.environ.get("ANYON_BENCH_POOL", "10"))
#: How often the ten-at-once item with a full pool starts its ten attempts.
BURSTS = int(os.environ.get("ANYON_BENCH_BURSTS", "5"))
#: Worker processes of the warm items: the same as the other items unless set (10 processes on 2 cores were slower:
#: they queue on SQLite's write lock and the CPU instead of on the task queue).
POOL_WORKERS = int(os.environ.get("ANYON_BENCH_POOL_WORKERS", os.environ["ANYON_WORKERS"]))
THROUGHPUT_RUNS = int(os.environ.get("ANYON_BENCH_THROUGHPUT_RUNS", "5"))


def emit(metric: str, **values) -> None:
    line = {"metric": metric, **values}
    RESULTS.append(line)
    print(json.dumps(line), flush=True)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


# --- baseline: the docker SDK alone --------------------------------------------------------------------------
def baseline_run(client: docker.DockerClient, argv: list[str], environment: dict | None = None) -> tuple[float, int]:
    started = time.perf_counter()
    container = client.containers.run(IMAGE, ["sleep", "infinity"], detach=True, network_mode="none", init=True)
    try:
        exec_id = client.api.exec_create(container.id, argv, environment=environment)["Id"]
        size = 0
        for out, err in client.api.exec_start(exec_id, stream=True, demux=True):
            size += len(out or b"") + len(err or b"")
        return time.perf_counter() - started, size
    finally:
        container.remove(force=True)


# --- the platform ----------------------------------------------------------------------------------------------
class Platform:
    def __init__(self) -> None:
        self.stack = LiveStack("bench")
        self.user = User.objects.create_user("bench", password="bench password 123")
        do_store_secret(owner=self.user, provider="github", kind="pat", value=GH_TOKEN)
        self.task = do_create_task(
            owner=self.user, title="bench", repo_url="https://github.com/acme/bench", base_branch="main", prompt="x"
        )
        self.url, self.ws_url = self.stack.url, self.stack.ws_url
        self.session = self.stack.login_session("bench", "bench password 123")
        self.cookie = "; ".join(f"{c.name}={c.value}" for c in self.session.cookies)
        self.worker = self.stack.worker
        self.masks_seen = 0

    def stop(self) -> None:
        self.stack.stop()

    def start(self, argv: list[str]) -> Attempt:
        return do_start_attempt(task=self.task, plan=[{"kind": "custom", "title": "bench", "argv": argv}])

    async def watch(
        self,
        attempt_id: int,
        until: str,
        stamps: dict | None = None,
        seqs: dict | None = None,
        check: list[str] | None = None,
        joined: asyncio.Event | None = None,
    ) -> float:
        """Connect a viewer; return the time at which a stdout record containing ``until`` arrived (the system
        line that echoes the command does not count). With ``stamps``, note each time-stamped line's delay (and the
        record that carried it in ``seqs``). With ``check``, count the masks in the output it receives and raise if
        any of those values arrives unmasked. ``joined`` is set at the first message (the viewer has caught up)."""
        async with websockets.connect(
            f"{self.ws_url}/ws/attempts/{attempt_id}/logs/",
            additional_headers={"Cookie": self.cookie, "Origin": self.url},
            max_size=None,
        ) as ws:
            received: list[str] = []
            stdout_tail = ""
            last_status: dict = {}
            engine_lost = False
            async for raw in ws:
                message = json.loads(raw)
                if joined is not None:
                    joined.set()
                if message["type"] == "status":
                    last_status = message["attempt"]
                if message["type"] == "logs":
                    now = time.time()
                    for record in message["records"]:
                        if stamps is not None:
                            for stamp in re.findall(r"^T(\d+\.\d+) (\d+)$", record["text"], re.MULTILINE):
                                sent, line = float(stamp[0]), int(stamp[1])
                                stamps.setdefault(line, []).append((now - sent, (sent, now)))
                                if seqs is not None:
                                    seqs[line] = record["seq"]
                        if check is not None and record["stream"] == "stdout":
                            received.append(record["text"])  # records may split a value: checked joined
                        if record["stream"] == "system" and ENGINE_LOST_OUTPUT in record["text"]:
                            engine_lost = True
                        if record["stream"] != "stdout":
                            continue
                        # A record holds up to 16 KB of the stream, cut anywhere: the marker may straddle two.
                        seen = stdout_tail + record["text"]
                        stdout_tail = seen[-len(until) :]
                        if until in seen:
                            done = time.perf_counter()
                            if check is not None:
                                self.check_masked("".join(received), check)
                            return done
                if message["type"] == "end":
                    if engine_lost:
                        raise EngineLostOutput(f"attempt {attempt_id}: the engine lost its step's output")
                    said = {k: last_status.get(k) for k in ("status", "error", "runs")}
                    raise RuntimeError(f"attempt {attempt_id} ended without {until!r}: {said}, stdout {stdout_tail!r}")
        raise RuntimeError("socket closed")

    def check_masked(self, text: str, values: list[str]) -> None:
        if any(value in text for value in values):
            raise RuntimeError("a secret reached the viewer unmasked")
        self.masks_seen = text.count(MASK)

    def http_overhead(self) -> float:
        """One authenticated POST through the full stack (session, CSRF, view, redirect), the part the start
        figures do not include: cancelling an already finished attempt does the same work minus the insert."""
        attempt = (
            Attempt.objects.filter(task=self.task).exclude(status__in=["queued", "provisioning", "running"]).first()
        )
        samples = []
        for _ in range(20):
            t0 = time.perf_counter()
            self.session.post(
                f"{self.url}/attempts/{attempt.pk}/cancel/",
                data={"csrfmiddlewaretoken": self.session.cookies["csrftoken"]},
                headers={"Referer": self.url},
                allow_redirects=False,
            )
            samples.append(time.perf_counter() - t0)
        return statistics.median(samples)


def wait_until_finished(attempt: Attempt) -> None:
    """Runs are measured one at a time: the next starts when this one has cleaned up, its container included (the
    worker removes it in the background after the final status, execution/hosts/container_removal.py)."""
    while Attempt.objects.filter(pk=attempt.pk, status__in=["queued", "provisioning", "running"]).exists():
        time.sleep(0.05)
    container_id = Attempt.objects.values_list("container_id", flat=True).get(pk=attempt.pk)
    deadline = time.time() + 30
    while container_id and time.time() < deadline:
        try:
            client_of().api.inspect_container(container_id)
        except docker.errors.NotFound:
            return
        time.sleep(0.02)


def start_latency(platform: Platform, client) -> float:
    base = [baseline_run(client, ["echo", "ready"])[0] for _ in range(RUNS)]
    ours = []
    for _ in range(RUNS):
        t0 = time.perf_counter()
        attempt = platform.start(["echo", "ready"])
        ours.append(asyncio.run(platform.watch(attempt.pk, "ready\n")) - t0)
        wait_until_finished(attempt)
    http = platform.http_overhead()
    ours = [x + http for x in ours]
    emit(
        "start_latency",
        mode=MODE,
        runs=RUNS,
        baseline_p50_s=round(statistics.median(base), 3),
        baseline_p95_s=round(percentile(base, 95), 3),
        platform_p50_s=round(statistics.median(ours), 3),
        platform_p95_s=round(percentile(ours, 95), 3),
        http_post_s=round(http, 4),
        ratio_p50=round(statistics.median(ours) / statistics.median(base), 2),
        target_ratio_p50=1.5,
    )
    return statistics.median(ours)


LINE = "0123456789" * 9 + "abcdefghi"  # 99 characters + newline = 100 bytes
GH_BASE64 = base64.b64encode(GH_TOKEN.encode()).decode()
#: A token nobody told the platform about: masked by its pattern.
UNKNOWN_TOKEN = "sk-ant-oat01-" + "u" * 50 + "nknown"
#: 100,000 lines; every 100th carries three secrets to mask: the injected GitHub token (read from the environment
#: the step gets, so it is on no command line), its base64 form, and the unknown token.
THROUGHPUT_SCRIPT = (
    'export B64="$(printf %s "$GH_TOKEN" | base64 -w0)"; '
    f"yes '{LINE}' | head -n 100000 | "
    'awk \'NR % 100 == 0 { print "secrets: " ENVIRON["GH_TOKEN"] " " ENVIRON["B64"] " '
    f"{UNKNOWN_TOKEN}\"; next }} {{ print }}'; echo LAST-LINE"
)


def throughput(platform: Platform, client) -> None:
    """Baseline and platform alternate, ``THROUGHPUT_RUNS`` times each; the medians are compared. The viewer checks
    that every secret arrives masked (3 per secret line)."""
    argv = ["sh", "-c", THROUGHPUT_SCRIPT]
    base_times, our_times, masks = [], [], []
    for _ in range(THROUGHPUT_RUNS):
        base_time, size = baseline_run(client, argv, environment={"GH_TOKEN": GH_TOKEN})
        base_times.append(base_time)
        platform.masks_seen = 0
        t0, t0_wall = time.perf_counter(), time.time()
        attempt = platform.start(argv)
        our_times.append(
            asyncio.run(platform.watch(attempt.pk, "LAST-LINE", check=[GH_TOKEN, GH_BASE64, UNKNOWN_TOKEN])) - t0
        )
        masks.append(platform.masks_seen)
        wait_until_finished(attempt)
        if os.environ.get("ANYON_BENCH_TRACE"):
            last = LogRecord.objects.filter(attempt=attempt, stream="stdout").order_by("-seq").first()
            marks = trace(attempt, t0_wall, t0_wall + our_times[-1], records=False)
            print(
                f"  baseline {base_time * 1000:.0f} ms; platform {marks}, last output stored "
                f"{(last.created_at.timestamp() - t0_wall) * 1000:.1f}"
            )
    if set(masks) != {3000}:
        raise RuntimeError(f"expected 3,000 masked secrets per run, the viewer saw {masks}")
    base_time, ours = statistics.median(base_times), statistics.median(our_times)
    text = "".join(LINE + "\n" for _ in range(100_000))
    masker = Masker([GH_TOKEN, "sk-ant-oat01-" + "m" * 60, "hunter2-correct-horse"])
    t1 = time.perf_counter()
    rounds = 5
    for _ in range(rounds):
        masker.mask(text)
    mask_mb_s = rounds * len(text) / (time.perf_counter() - t1) / 1e6
    emit(
        "log_throughput",
        runs=THROUGHPUT_RUNS,
        megabytes=round(size / 1e6, 2),
        secrets_masked_per_run=3000,
        baseline_s=round(base_time, 3),
        platform_s=round(ours, 3),
        platform_range_s=[round(min(our_times), 3), round(max(our_times), 3)],
        platform_mb_s=round(size / 1e6 / ours, 2),
        ratio=round(ours / base_time, 2),
        target_ratio=2.0,
        masker_alone_mb_s_3_secrets=round(mask_mb_s, 1),
        target_masker_mb_s=50,
    )


@contextlib.contextmanager
def profiled_if_asked(platform: Platform, item: str):
    """With ANYON_BENCH_PROFILE=1, py-spy samples the web server and the worker cluster while the block runs, and
    the busiest frames are printed for ``item`` afterwards. Sampling slows the processes down: the figures of a
    profiled run are not the benchmark's."""
    if not os.environ.get("ANYON_BENCH_PROFILE"):
        yield
        return
    from tests.bench.profile import profiled

    pids = {"web": platform.stack.web.proc.pid, "worker": platform.worker.proc.pid}
    with profiled(pids, WORK / f"profile-{item}") as summaries:
        yield
    for name, summary in summaries.items():
        emit("profile", process=name, item=item, **summary)


def rss_of_group(pgid: int) -> int:
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.getpgid(int(entry.name)) != pgid:
                continue
            for line in (entry / "status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except (OSError, ProcessLookupError):
            continue
    return total


def memory(platform: Platform) -> None:
    pgid = platform.worker.proc.pid
    idle = rss_of_group(pgid)
    peak = idle
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, rss_of_group(pgid))
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    attempt = platform.start(["sh", "-c", f"yes '{LINE}' | head -n 2000000; echo LAST-LINE"])  # 200 MB
    asyncio.run(platform.watch(attempt.pk, "LAST-LINE"))
    stop.set()
    sampler.join()
    emit(
        "worker_memory",
        output_mb=200,
        worker_rss_idle_mb=round(idle / 1e6, 1),
        worker_rss_peak_mb=round(peak / 1e6, 1),
        growth_mb=round((peak - idle) / 1e6, 1),
        target_growth_mb=50,
        note="all processes of the worker cluster (sentinel, pusher, monitor, workers)",
    )


def wait_until_no_attempt_is_active(timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while Attempt.objects.filter(status__in=["queued", "provisioning", "running"]).exists() and time.time() < deadline:
        time.sleep(0.2)


class EngineLostOutput(RuntimeError):
    """The attempt's log says the Docker engine lost its step's output (``step_runner.ENGINE_LOST_OUTPUT``)."""


async def ten_at_once(platform: Platform) -> list[float | None]:
    """Ten attempts started together; each one's time to its first line at a viewer (None: the engine lost the
    step's output, which the attempt's log says; counted and reported, never timed)."""

    async def one() -> float | None:
        t0 = time.perf_counter()
        attempt = await asyncio.to_thread(platform.start, ["echo", "ready"])
        try:
            return await platform.watch(attempt.pk, "ready\n") - t0
        except EngineLostOutput:
            return None

    return await asyncio.gather(*(one() for _ in range(10)))


def timed(latencies: list[float | None]) -> tuple[list[float], int]:
    """The latencies measured, and how many attempts the engine lost the output of."""
    return [v for v in latencies if v is not None], sum(v is None for v in latencies)


def concurrency(platform: Platform, single_p50: float) -> None:
    latencies, lost = timed(asyncio.run(ten_at_once(platform)))
    wait_until_no_attempt_is_active()
    recent = Attempt.objects.order_by("-id")[:10]
    left = list(secret_dir.secrets_root().glob("*")) if secret_dir.secrets_root().exists() else []
    emit(
        "concurrency_10",
        all_succeeded=all(a.status == "succeeded" for a in recent),
        secret_dirs_left=len(left),
        p50_s=round(statistics.median(latencies), 3),
        max_s=round(max(latencies), 3),
        engine_lost_output=lost,
        single_p50_s=round(single_p50, 3),
        workers=int(os.environ["ANYON_WORKERS"]),
    )


class ClientPauses:
    """The benchmark's own garbage-collection pauses while an item runs. The 50 viewers are clients in this process:
    a full collection here (~90 ms over Django's heap, seen in a traced run) delayed every viewer at once and was
    counted as the platform's delay. Entering freezes what the process holds so far (``gc.freeze``), so collections
    during the item walk only what it allocates; the pauses still longer than 5 ms are reported with the figure."""

    def __init__(self) -> None:
        self.long_pauses_ms: list[float] = []
        self._started = 0.0

    def _on_gc(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        elif (pause := (time.perf_counter() - self._started) * 1000) > 5:
            self.long_pauses_ms.append(round(pause, 1))

    def __enter__(self) -> ClientPauses:
        gc.collect()
        gc.freeze()
        gc.callbacks.append(self._on_gc)
        return self

    def __exit__(self, *exc) -> None:
        gc.callbacks.remove(self._on_gc)
        gc.unfreeze()


def fan_out(platform: Platform) -> None:
    """50 viewers of one attempt printing a time-stamped line every ~10 ms. Besides the delay from the line's time
    stamp (taken in the container) to its arrival at each viewer, it reports where that delay goes (until the record
    is stored, the record's ``created_at``; from there to the viewer) and how many queries the web process made per
    stored batch (counted in the web process, ``tests/bench/query_counter.py``). ``ANYON_BENCH_PROFILE=1`` samples
    the web process and the worker with py-spy meanwhile."""
    from tests.bench.query_counter import read_counts

    # The output starts a second after the attempt does: the queries are counted once all viewers have joined.
    script = 'sleep 1; for i in $(seq 1 400); do echo "T$(date +%s.%N) $i"; sleep 0.01; done; echo LAST-LINE'
    stamps: list[dict] = [{} for _ in range(50)]
    seqs: dict[int, int] = {}  # line -> seq of the record that carried it
    web = platform.stack.web.proc.pid
    before: dict[str, int] = {}

    async def viewers(attempt_id: int) -> None:
        joined = [asyncio.Event() for _ in range(50)]

        async def count_when_joined() -> None:
            await asyncio.gather(*(event.wait() for event in joined))
            before.update(await asyncio.to_thread(read_counts, web))

        await asyncio.gather(
            count_when_joined(),
            *(platform.watch(attempt_id, "LAST-LINE", stamps[i], seqs, joined=joined[i]) for i in range(50)),
        )

    client_gc = ClientPauses()
    with profiled_if_asked(platform, "fan_out_50"), client_gc:
        attempt = platform.start(["sh", "-c", script])
        asyncio.run(viewers(attempt.pk))
        wait_until_finished(attempt)
    after = read_counts(web)
    if not any(stamps):
        sample = "".join(LogRecord.objects.filter(attempt=attempt).values_list("text", flat=True))[:300]
        raise RuntimeError(f"no time-stamped lines reached the viewers; the log starts: {sample!r}")
    complete = all(list(s) == list(range(1, 401)) and all(len(v) == 1 for v in s.values()) for s in stamps)
    delays = [d for s in stamps for v in s.values() for d, _ in v]
    stored = dict(LogRecord.objects.filter(attempt=attempt).values_list("seq", "created_at"))
    first = min(seqs.values())  # batches before the first time-stamped line were written before the count began
    # A batch is one insert: its records share their created_at.
    batches = len({created for seq, created in stored.items() if seq >= first})
    to_store, to_viewer = [], []
    arrivals: dict[int, list[float]] = {}  # line -> when each viewer got it
    for s in stamps:
        for line, values in s.items():
            for _, (sent, received) in values:
                created = stored[seqs[line]].timestamp()
                to_store.append(created - sent)
                to_viewer.append(received - created)
                arrivals.setdefault(line, []).append(received)
    # Of the time from stored to viewer: until the first viewer has the line, and from the first to the last.
    to_first = [min(times) - stored[seqs[line]].timestamp() for line, times in arrivals.items()]
    spread = [max(times) - min(times) for times in arrivals.values()]
    log_queries = after.get("log_records", 0) - before.get("log_records", 0)
    if os.environ.get("ANYON_BENCH_TRACE"):
        worst = sorted(arrivals, key=lambda line: -(max(arrivals[line]) - stored[seqs[line]].timestamp()))[:12]
        for line in sorted(worst):
            created = stored[seqs[line]].timestamp()
            first, last = (1000 * (when(arrivals[line]) - created) for when in (min, max))
            print(f"line {line} seq {seqs[line]} stored at {created:.3f}: first viewer {first:.1f}, last {last:.1f} ms")
    emit(
        "fan_out_50",
        viewers=50,
        lines=400,
        every_viewer_every_line_once_in_order=complete,
        p50_delay_ms=round(statistics.median(delays) * 1000, 1),
        p99_delay_ms=round(percentile(delays, 99) * 1000, 1),
        target_p99_delay_ms=60,
        stored_p50_ms=round(statistics.median(to_store) * 1000, 1),
        stored_p99_ms=round(percentile(to_store, 99) * 1000, 1),
        stored_to_viewer_p50_ms=round(statistics.median(to_viewer) * 1000, 1),
        stored_to_viewer_p99_ms=round(percentile(to_viewer, 99) * 1000, 1),
        stored_to_first_viewer_p50_ms=round(statistics.median(to_first) * 1000, 1),
        stored_to_first_viewer_p99_ms=round(percentile(to_first, 99) * 1000, 1),
        first_to_last_viewer_p50_ms=round(statistics.median(spread) * 1000, 1),
        first_to_last_viewer_p99_ms=round(percentile(spread, 99) * 1000, 1),
        batches=batches,
        web_log_queries=log_queries,
        web_log_queries_per_batch=round(log_queries / batches, 2),
        web_queries_per_batch=round((after.get("all", 0) - before.get("all", 0)) / batches, 2),
        web_full_gc_pauses_ms=after["gc_full_pauses_ms"][len(before["gc_full_pauses_ms"]) :],
        bench_client_gc_pauses_over_5_ms=client_gc.long_pauses_ms,
    )


# --- the warm pool ----------------------------------------------------------------------------------------------------
def with_warm_pool(platform: Platform, size: int, workers: int) -> None:
    """Restart the worker cluster with ``ANYON_POOL_SIZE=size`` and ``workers`` processes; wait until its pool is
    full."""
    from tests.fixtures.processes import start_process

    platform.stack.worker.stop()
    env = {**os.environ, "ANYON_POOL_SIZE": str(size), "ANYON_WORKERS": str(workers)}
    platform.stack.worker = platform.worker = start_process(
        "bench-worker-pool", [sys.executable, "manage.py", "qcluster"], env
    )
    wait_for_pool(size, timeout=120)


def wait_for_pool(size: int, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while PoolContainer.objects.count() < size:
        if time.time() > deadline:
            raise RuntimeError(f"the warm pool holds {PoolContainer.objects.count()} of {size} after {timeout} s")
        time.sleep(0.05)


def trace(attempt: Attempt, t0_wall: float, seen: float, *, records: bool = True) -> dict[str, float]:
    """Where one attempt's first line spent its time, in ms from the start call (database timestamps)."""
    attempt.refresh_from_db()
    run = Run.objects.filter(attempt=attempt).order_by("id").first()
    first = LogRecord.objects.filter(attempt=attempt, stream="stdout").order_by("seq").first()
    marks = {
        "created": attempt.created_at.timestamp(),
        "picked_up": attempt.started_at.timestamp(),
        "exec_requested": run.started_at.timestamp() if run else None,
        "first_output_stored": first.created_at.timestamp() if first else None,
        "viewer": seen,
        "finished": attempt.finished_at.timestamp(),
    }
    if records and os.environ.get("ANYON_BENCH_TRACE"):
        for record in LogRecord.objects.filter(attempt=attempt).order_by("seq"):
            print(f"  {(record.created_at.timestamp() - t0_wall) * 1000:7.1f} ms {record.text.strip()[:80]}")
    return {k: round((v - t0_wall) * 1000, 1) for k, v in marks.items() if v is not None}


def start_latency_warm(platform: Platform, client) -> None:
    """Item 1 with a full warm pool of ``POOL``: the pool is refilled between runs (a claim queues a refill). The
    baseline is measured again in this item, interleaved with the platform's runs."""
    base, ours, traces = [], [], []
    for _ in range(RUNS):
        base.append(baseline_run(client, ["echo", "ready"])[0])
        wait_for_pool(POOL)
        t0, t0_wall = time.perf_counter(), time.time()
        attempt = platform.start(["echo", "ready"])
        seen = asyncio.run(platform.watch(attempt.pk, "ready\n"))
        ours.append(seen - t0)
        wait_until_finished(attempt)
        traces.append(trace(attempt, t0_wall, t0_wall + seen - t0))
        if "warm from the pool" not in "".join(
            LogRecord.objects.filter(attempt=attempt).values_list("text", flat=True)
        ):
            raise RuntimeError(f"attempt {attempt.pk} did not get a warm container")
    http = platform.http_overhead()
    ours = [x + http for x in ours]
    emit(
        "start_latency_warm",
        mode=MODE,
        runs=RUNS,
        pool=POOL,
        baseline_p50_s=round(statistics.median(base), 3),
        platform_p50_s=round(statistics.median(ours), 3),
        platform_p95_s=round(percentile(ours, 95), 3),
        http_post_s=round(http, 4),
        ratio_p50=round(statistics.median(ours) / statistics.median(base), 2),
        target_ratio_p50=0.6,
        trace_p50_ms={k: round(statistics.median(t[k] for t in traces if k in t), 1) for k in traces[0]},
    )


def concurrency_warm(platform: Platform) -> None:
    """Item 4 with a full warm pool of ``POOL``: 10 attempts started at once, first line of each; ``BURSTS`` times
    (the pool refilled in between), since one burst's median moved by a quarter from run to run on this machine.
    The figure is the median of the bursts' p50s; each burst's p50 is reported too."""
    bursts = [one_burst(platform, profile=i == 0) for i in range(BURSTS)]
    emit(
        "concurrency_10_warm",
        database=DATABASE,
        pool=POOL,
        bursts=BURSTS,
        all_succeeded=all(b["all_succeeded"] for b in bursts),
        all_warm=all(b["all_warm"] for b in bursts),
        one_container_each=all(b["one_container_each"] for b in bursts),
        containers_removed=all(b["containers_removed"] for b in bursts),
        containers_removed_within_s=max(b["containers_removed_within_s"] for b in bursts),
        secret_dirs_left=sum(b["secret_dirs_left"] for b in bursts),
        p50_s=round(statistics.median(b["p50_s"] for b in bursts), 3),
        p50_each_s=[b["p50_s"] for b in bursts],
        max_s=max(b["max_s"] for b in bursts),
        engine_lost_output=sum(b["engine_lost_output"] for b in bursts),
        target_p50_s=1.0,
        workers=POOL_WORKERS,
        until_last_first_line_each_s=[b["until_last_first_line_s"] for b in bursts],
        cpu_s_meanwhile_first_burst=bursts[0]["cpu_s_meanwhile"],
    )


def one_burst(platform: Platform, *, profile: bool) -> dict:
    wait_for_pool(POOL)
    cpu_before = cpu_times(platform)
    t0_wall = time.time()
    with profiled_if_asked(platform, "concurrency_10_warm") if profile else contextlib.nullcontext():
        try:
            latencies, lost = timed(asyncio.run(ten_at_once(platform)))
        except RuntimeError:
            wait_until_no_attempt_is_active()
            for attempt in Attempt.objects.order_by("-id")[:10]:
                records = "".join(r.text for r in attempt.log_records.order_by("seq"))
                print(f"attempt {attempt.pk}: {attempt.status} {attempt.error!r} log {records!r}", flush=True)
            raise
    wall = time.time() - t0_wall
    cpu = cpu_used(cpu_before, cpu_times(platform))
    wait_until_no_attempt_is_active()
    recent = list(Attempt.objects.order_by("-id")[:10])
    if os.environ.get("ANYON_BENCH_TRACE"):
        for attempt in sorted(recent, key=lambda a: a.started_at):
            print(" ", trace(attempt, t0_wall, t0_wall))
    claimed = {a.secret_dir for a in recent}
    left = [p for p in secret_dir.secrets_root().glob("*") if p.name in claimed]
    # The containers go after their attempts, in the background (execution/hosts/container_removal.py).
    ended = time.time()
    client = client_of()
    ours = {a.container_id for a in recent}
    while True:
        label = f"anyon.instance={settings.ANYON_INSTANCE}"
        present = {c["Id"] for c in client.api.containers(all=True, filters={"label": label})}
        if not present & ours or time.time() - ended > 30:
            break
        time.sleep(0.05)
    return {
        "all_succeeded": all(a.status == "succeeded" for a in recent),
        "all_warm": all(a.secret_dir.startswith("pool-") for a in recent),
        "one_container_each": len({a.container_id for a in recent}) == 10,
        "containers_removed": not present & ours,
        "containers_removed_within_s": round(time.time() - ended, 2),
        "secret_dirs_left": len(left),
        "p50_s": round(statistics.median(latencies), 3),
        "max_s": round(max(latencies), 3),
        "engine_lost_output": lost,
        "until_last_first_line_s": round(wall, 2),
        "cpu_s_meanwhile": cpu,
    }


def cpu_times(platform: Platform) -> dict[int, tuple[str, float]]:
    """Each process's CPU so far (its own and its reaped children's: a shim's runc calls), named by its part."""
    web, cluster = platform.stack.web.proc.pid, platform.worker.proc.pid
    tick = os.sysconf("SC_CLK_TCK")
    found = {}
    for entry in Path("/proc").iterdir():
        # Not init: its children's CPU is that of every orphan it reaped (a removed container's shim), for its life.
        if not entry.name.isdigit() or entry.name == "1":
            continue
        try:
            stat = (entry / "stat").read_text()
            pid = int(entry.name)
            name = stat[stat.index("(") + 1 : stat.rindex(")")]
            fields = stat[stat.rindex(")") + 2 :].split()
            part = (
                "web" if pid == web
                else "worker cluster" if os.getpgid(pid) == cluster
                else "benchmark" if pid == os.getpid()
                else "containerd-shim (runc)" if name.startswith("containerd-shim")
                else name
            )  # fmt: skip
            found[pid] = (part, sum(int(f) for f in fields[11:15]) / tick)
        except (OSError, ValueError, ProcessLookupError):
            continue
    return found


def cpu_used(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]) -> dict[str, float]:
    """CPU seconds by part between two ``cpu_times`` (a process that ended between them is not counted)."""
    used: dict[str, float] = {}
    for pid, (part, seconds) in after.items():
        spent = seconds - (before[pid][1] if pid in before else 0.0)
        if spent > 0:
            used[part] = used.get(part, 0.0) + spent
    return {part: round(seconds, 2) for part, seconds in sorted(used.items(), key=lambda kv: -kv[1]) if seconds >= 0.01}


@functools.cache
def client_of() -> docker.DockerClient:
    return docker.from_env(timeout=120)


def sealed_round_trip(client) -> None:
    """The real Claude CLI's first answer (its first ``assistant`` event) through the egress proxy against the same
    CLI talking to the API directly (host network): what sealing costs a Claude round trip. The proxy runs in this
    process (the same code ``manage.py egress_proxy`` serves), in front of the fake Anthropic API on 127.0.0.1."""
    import tempfile

    from shared.egress import EgressClient, Grant, HostPort, run
    from tests.fakes.anthropic_api import FakeAnthropicAPI

    uid = settings.ANYON_CONTAINER_UID
    folder = Path(tempfile.mkdtemp(prefix="ab-", dir="/tmp"))
    sockets = folder / "attempt"
    sockets.mkdir(mode=0o700)
    os.chown(sockets, uid, uid)
    control = folder / "control.sock"
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    ready = threading.Event()
    thread = threading.Thread(
        target=lambda: loop.run_until_complete(
            run(control, lambda attempt, service: "sk-ant-api03-" + "r" * 40, stop=stop, on_ready=lambda p: ready.set())
        ),
        daemon=True,
    )
    thread.start()
    ready.wait(30)
    argv = ["claude", "-p", "ping", "--output-format", "stream-json", "--verbose"]
    quiet = {"CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "HOME": "/home/anyon"}
    with FakeAnthropicAPI() as api:
        grant = Grant(
            attempt_id="bench", placeholder="anyon-sealed-placeholder", anthropic_url=api.url,
            internal=[str(HostPort.of_url(api.url))],
        )  # fmt: skip
        EgressClient(control).open(grant, sockets, uid=uid, gid=uid)
        direct = client.containers.run(IMAGE, ["sleep", "infinity"], detach=True, network_mode="host", init=True)
        sealed = client.containers.run(
            IMAGE, ["sleep", "infinity"], detach=True, network_mode="none", init=True,
            volumes={str(sockets): {"bind": "/run/anyon-secrets", "mode": "ro"}},
        )  # fmt: skip
        try:
            client.api.exec_start(client.api.exec_create(sealed.id, ["anyon-egress-bridge"])["Id"])  # listeners up

            def first_answer(container, environment: dict, prefix: list[str]) -> float:
                exec_id = client.api.exec_create(container.id, [*prefix, *argv], environment=environment)["Id"]
                started, seen = time.perf_counter(), None
                for out, _ in client.api.exec_start(exec_id, stream=True, demux=True):
                    if seen is None and out and b'"type":"assistant"' in out:
                        seen = time.perf_counter() - started
                if seen is None:
                    raise RuntimeError(f"no assistant event: {client.api.exec_inspect(exec_id)}")
                return seen

            directs, sealeds = [], []
            for _ in range(max(5, RUNS // 2)):
                directs.append(
                    first_answer(direct, {**quiet, "ANTHROPIC_BASE_URL": api.url, "ANTHROPIC_API_KEY": "k" * 20}, [])
                )
                sealeds.append(
                    first_answer(
                        sealed,
                        {
                            **quiet,
                            "ANTHROPIC_BASE_URL": "http://127.0.0.1:18080",
                            "ANTHROPIC_API_KEY": "anyon-sealed-placeholder",
                        },
                        [],  # as the runner's later execs: the listeners are up since the session's first
                    )
                )
        finally:
            direct.remove(force=True)
            sealed.remove(force=True)
    loop.call_soon_threadsafe(stop.set)
    thread.join(10)
    emit(
        "sealed_claude_round_trip",
        runs=len(directs),
        direct_p50_s=round(statistics.median(directs), 3),
        sealed_p50_s=round(statistics.median(sealeds), 3),
        ratio_p50=round(statistics.median(sealeds) / statistics.median(directs), 3),
        target_ratio=1.1,
    )


def retention() -> None:
    """Item 7 (``tests/bench/retention.py``) in its own process, once on a fresh SQLite file and once on a throwaway
    PostgreSQL server: database growth per 1,000 lines and per attempt, and none once the sweep runs."""
    import subprocess

    from tests.fixtures.services import postgres_server

    def measure(database_url: str) -> None:
        env = {**os.environ, "DATABASE_URL": database_url}
        done = subprocess.run(
            [sys.executable, "-m", "tests.bench.retention"], cwd=ROOT, env=env, capture_output=True, text=True
        )
        results = [line[len("RESULT ") :] for line in done.stdout.splitlines() if line.startswith("RESULT ")]
        if done.returncode or not results:
            raise RuntimeError(f"retention bench failed ({done.returncode}): {done.stderr[-3000:]}")
        emit("log_retention", **json.loads(results[-1]))

    measure(f"sqlite:///{WORK / 'retention.sqlite3'}")
    with postgres_server("anyon_bench_retention") as url:
        measure(url)


def snapshots() -> None:
    """The snapshot item (``tests/bench/snapshots.py``) in its own process: the start from a snapshot of a 20 s
    setup against the first attempt and a repository without setup; the snapshot's size; the sweep."""
    import subprocess

    done = subprocess.run(
        [sys.executable, "-m", "tests.bench.snapshots"], cwd=ROOT, env=dict(os.environ), capture_output=True, text=True
    )
    results = [line[len("RESULT ") :] for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode or not results:
        raise RuntimeError(f"snapshot bench failed ({done.returncode}): {done.stderr[-3000:]}")
    emit("snapshot_start", **json.loads(results[-1]))


def main() -> None:
    only = set(filter(None, os.environ.get("ANYON_BENCH_ONLY", "").split(",")))
    if not only or only - {"retention", "snapshots"}:
        with_platform(only)
    if not only or "retention" in only:  # after the stack stopped; needs no Docker, only the databases
        retention()
    if not only or "snapshots" in only:
        snapshots()
    print("\nsummary:")
    for line in RESULTS:
        print(" ", json.dumps(line))


def with_platform(only: set[str]) -> None:
    client = docker.from_env(timeout=120)
    client.images.get(IMAGE)
    platform = Platform()
    try:
        single = start_latency(platform, client) if not only or "start" in only else 0.0
        if not only or "throughput" in only:
            with profiled_if_asked(platform, "log_throughput"):
                throughput(platform, client)
        if not only or "memory" in only:
            memory(platform)
        if not only or "concurrency" in only:
            concurrency(platform, single)
        if not only or "fanout" in only:
            fan_out(platform)
        if not only or "sealed" in only:
            sealed_round_trip(client)
        if not only or only & {"warm", "concurrency_warm"}:
            with_warm_pool(platform, POOL, POOL_WORKERS)
            if not only or "warm" in only:
                start_latency_warm(platform, client)
            if not only or "concurrency_warm" in only:
                concurrency_warm(platform)
    finally:
        platform.stop()
        for container in client.containers.list(
            all=True, filters={"label": f"anyon.instance={settings.ANYON_INSTANCE}"}
        ):
            container.remove(force=True)
        for volume in client.volumes.list(filters={"label": f"anyon.instance={settings.ANYON_INSTANCE}"}):
            volume.remove(force=True)


if __name__ == "__main__":
    main()
