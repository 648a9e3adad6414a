"""One step's exec: a reader thread pulls output into a bounded queue; the calling thread decodes, masks and
stores it and, between chunks, heartbeats, honours cancel and the run timeout (by killing the container), and
flushes pending output."""

from __future__ import annotations

import codecs
import contextlib
import queue
import threading
import time
from collections.abc import Callable

from django.conf import settings

from execution.attempts.runs import do_record_tool_output
from execution.logs.claude_events import AgentOutcome, render_event
from execution.logs.writer import TOOL_OUTPUT_MAX_CHARS, LogWriter
from execution.models import LogStream, Run
from execution.runner.outcomes import ExecEnd, StopReason
from execution.runner.step_report import ReportCatcher
from execution.runner.workspace import exec_environment
from shared.docker.engine import DockerEngine, EngineError, ExecResult
from shared.masking import Masker, StreamMasker

CONTROL_SECONDS = 0.1  # how often the loop looks at cancel / timeout when output is quiet
QUEUE_CHUNKS = 64  # bound on output chunks in flight between reader and writer (backpressure)
IDLE_RELEASE_SECONDS = 0.25  # an incomplete line is shown after output has paused this long
MAX_AGENT_LINE = 1024 * 1024
#: Up to this much output waiting in the queue is joined into one piece (when the loop fell behind the engine).
JOIN_BYTES = 256 * 1024  # longer than any event: not JSON, shown as plain output

#: Called between chunks with the current monotonic time and the run's deadline: a reason to stop, or None.
Control = Callable[[float, float], StopReason | None]


class ExecStream:
    def __init__(
        self,
        *,
        engine: DockerEngine,
        container_id: str,
        writer: LogWriter,
        masker: Masker,
        environment: dict[str, str] | None = None,
    ) -> None:
        self.engine, self.container_id, self.writer, self.masker = engine, container_id, writer, masker
        #: Added to every exec's environment (a sealed session's variables: nothing secret).
        self.environment = environment or {}

    def run(
        self,
        run: Run,
        argv: list[str],
        *,
        agent: bool,
        stdin: bytes | None,
        control: Control,
        report: ReportCatcher | None = None,
    ) -> ExecEnd:
        """``report``: ``argv`` reports the workspace's commits at its end (``step_report.reporting``, never an
        agent's exec); the catcher takes the line out of its output."""
        chunks: queue.Queue = queue.Queue(maxsize=QUEUE_CHUNKS)
        result = ExecResult()
        failure: list[BaseException] = []

        def reader() -> None:
            try:
                for item in self.engine.exec_stream(
                    self.container_id,
                    argv,
                    result,
                    environment={**exec_environment(), **self.environment},
                    user=str(settings.ANYON_CONTAINER_UID),
                    stdin=stdin,
                ):
                    chunks.put(item)
            except BaseException as exc:  # reported to the calling thread
                failure.append(exc)
            finally:
                chunks.put(None)

        thread = threading.Thread(target=reader, name=f"exec-reader-{run.pk}", daemon=True)
        thread.start()
        decoders = {s: codecs.getincrementaldecoder("utf-8")(errors="replace") for s in ("stdout", "stderr")}
        maskers = {s: StreamMasker(self.masker) for s in ("stdout", "stderr")}
        outcome = AgentOutcome(run_id=run.pk)
        agent_line = ""
        deadline = time.monotonic() + settings.RUN_TIMEOUT
        stopped: StopReason | None = None
        last_output = time.monotonic()
        carried = ""  # an item taken while joining chunks that belongs to the next round
        while True:
            if carried != "":
                item, carried = carried, ""
            else:
                try:
                    item = chunks.get(timeout=CONTROL_SECONDS)
                except queue.Empty:
                    item = ""
            if item is None:
                break
            now = time.monotonic()
            if item:
                stream, data = item
                # Chunks that queued up meanwhile go on in one piece: one decode, one masking pass, one write.
                pieces, size = [data], len(data)
                while size < JOIN_BYTES:
                    try:
                        following = chunks.get_nowait()
                    except queue.Empty:
                        break
                    if following is None or following[0] != stream:
                        carried = following
                        break
                    pieces.append(following[1])
                    size += len(following[1])
                text = decoders[stream].decode(b"".join(pieces) if len(pieces) > 1 else data)
                last_output = now
                if agent and stream == "stdout":
                    agent_line += text
                    lines = agent_line.split("\n")
                    agent_line = lines.pop()
                    self._agent_lines(run, lines, maskers["stdout"], outcome)
                    if len(agent_line) > MAX_AGENT_LINE:
                        self.writer.write(run.pk, LogStream.STDOUT, maskers["stdout"].feed(agent_line))
                        agent_line = ""
                else:
                    if report is not None and stream == "stdout":
                        text = report.feed(text)
                    self.writer.write(run.pk, stream, maskers[stream].feed(text))
            elif now - last_output > IDLE_RELEASE_SECONDS:
                for stream, masker in maskers.items():
                    if masker.pending:
                        self.writer.write(run.pk, stream, masker.release())
            self.writer.flush_if_due(quiet=chunks.empty())
            if stopped is None:
                stopped = control(now, deadline)
                if stopped is not None:
                    self.engine.kill(self.container_id)
        thread.join(timeout=10)
        for stream in ("stdout", "stderr"):
            tail = decoders[stream].decode(b"", final=True)
            if report is not None and stream == "stdout":
                tail = report.feed(tail) + report.finish()
            if agent and stream == "stdout":
                self._agent_lines(run, (agent_line + tail).split("\n"), maskers["stdout"], outcome)
            else:
                self.writer.write(run.pk, stream, maskers[stream].feed(tail))
            self.writer.write(run.pk, stream, maskers[stream].finish())
        self.writer.flush()
        end = ExecEnd(
            title=run.title or run.kind,
            exit_code=result.exit_code,
            stopped=stopped,
            failure=str(failure[0]) if failure else "",
            agent=outcome if agent else None,
            commits=report.commits if report is not None else None,
        )
        if stopped is None:
            end.container_gone = self._container_gone(end)
        return end

    def _container_gone(self, end: ExecEnd) -> bool:
        """Whether the container itself went away (killed from outside, out of memory), not just the step."""
        if end.failure:  # the exec broke: because the container went away?
            with contextlib.suppress(EngineError):  # the engine cannot say: report the exec's own error
                return not self.engine.is_running(self.container_id)
            return False
        if end.exit_code is None:
            return True
        checks = 10 if end.exit_code == 137 else 1  # SIGKILL: the engine may need a moment to report it
        for check in range(checks):
            if check:
                time.sleep(0.1)
            if not self.engine.is_running(self.container_id):
                return True
        return False

    def _keep_outputs(self, run: Run, outcome: AgentOutcome) -> None:
        """The whole of each long tool output just rendered, masked again (decoded from JSON, a value escaped in the
        line is whole now), before its log line is written: the page's "show full output" finds it."""
        for number, text in outcome.full_outputs:
            if not self.writer.may_keep_output():
                break  # the attempt's log was cut, or its full outputs reached their share: the line says what it can
            masked = self.masker.mask(text)
            kept = masked[:TOOL_OUTPUT_MAX_CHARS]
            self.writer.kept_output_chars += len(kept)
            do_record_tool_output(run=run, number=number, text=kept, chars=len(masked))
        outcome.full_outputs.clear()

    def _agent_lines(self, run: Run, lines: list[str], masker: StreamMasker, outcome: AgentOutcome) -> None:
        for line in lines:
            if not line.strip():
                continue
            # Masked before rendering: the rendering clips long fields, and a secret cut in two by a clip would
            # no longer match (its first part would stay readable). The result text and errors come out masked too.
            line = self.masker.mask(line)
            rendered = render_event(line, outcome)
            self._keep_outputs(run, outcome)
            if rendered is None:
                self.writer.write(run.pk, LogStream.STDOUT, masker.feed(line + "\n"))
            elif rendered:
                self.writer.write(run.pk, LogStream.AGENT, self.masker.mask(rendered))
