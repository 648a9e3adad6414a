"""Alerts raised by their real causes: an unreachable engine during the sweeps, a secret dir that cannot be made."""

from shared.models import Alert


def test_docker_unreachable_is_raised_by_its_real_cause(transactional_db, settings, slack):
    from execution.sweeps.cleanup import run_scheduled_cleanup

    settings.DOCKER_HOST = "unix:///nonexistent/docker.sock"
    summary = run_scheduled_cleanup()
    assert "containers: failed" in summary
    assert Alert.objects.filter(kind="docker_unreachable").exists()
    assert any("docker_unreachable" in t for t in slack.texts())


def test_secret_injection_failure_is_raised_by_its_real_cause(world, settings, tmp_path):
    from execution.models import AttemptStatus
    from execution.runner import run_attempt
    from tests.execution.conftest import custom

    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    settings.ANYON_TEMP_DIR = blocker  # the secret dir cannot be created under a file
    attempt = world.attempt(plan=[custom("true")])
    assert run_attempt(attempt.pk) == AttemptStatus.FAILED
    assert Alert.objects.filter(kind="secret_injection_failed", attempt_id=attempt.pk).exists()
