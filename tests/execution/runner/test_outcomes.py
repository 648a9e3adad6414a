from execution.models import AttemptStatus, RunStatus
from execution.runner.outcomes import Ending, ExecEnd, StopReason, step_outcome


def test_endings_are_run_and_attempt_statuses():
    assert {e.value for e in Ending} <= set(RunStatus.values)
    assert {e.value for e in Ending} <= set(AttemptStatus.values)


def test_a_timed_out_step_names_the_timeout_it_was_given():
    outcome = step_outcome(ExecEnd("Claude Code", None, stopped=StopReason.TIMED_OUT), run_timeout=42)
    assert outcome.status == RunStatus.TIMED_OUT
    assert outcome.attempt_status == AttemptStatus.TIMED_OUT
    assert "(42 s)" in outcome.error


def test_a_failed_exit_fails_the_attempt():
    outcome = step_outcome(ExecEnd("Clone repository", 128), run_timeout=1)
    assert (outcome.status, outcome.attempt_status) == (RunStatus.FAILED, AttemptStatus.FAILED)
    assert step_outcome(ExecEnd("Clone repository", 0), run_timeout=1).attempt_status == AttemptStatus.SUCCEEDED
