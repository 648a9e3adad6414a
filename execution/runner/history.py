"""The agent's session history outlives the container (``~/.claude`` in the home volume, for ``--resume``), tool
output included: every injected secret in it is masked, as in the log."""

from __future__ import annotations

import contextlib
import logging

import docker
from django.conf import settings

from execution.containers import HOME, home_volume, labels_for, seccomp_profile
from execution.models import Attempt
from shared.docker.engine import DockerEngine, EngineError
from shared.masking import Masker

logger = logging.getLogger(__name__)

#: Replaces every line of standard input (the secrets' masked forms) in the files under $ARGV[0]; prints how many
#: files changed. Perl is in every Debian image (perl-base is essential); the values travel on stdin, never in argv.
SCRUB_SCRIPT = r"""
use strict; use warnings; use File::Find;
my @values = grep { length } map { s/\r?\n\z//r } <STDIN>;
my $changed = 0;
if (@values) {
  my $any = join "|", map { quotemeta } sort { length $b <=> length $a } @values;
  find({ no_chdir => 1, wanted => sub {
    return unless -f $_ && !-l $_ && -s _ < 64 * 1024 * 1024;
    open(my $in, "<:raw", $_) or return; local $/; my $text = <$in>; close $in;
    return unless defined $text && $text =~ s/$any/***/g;
    open(my $out, ">:raw", $_) or return; print $out $text; close $out; $changed++;
  }}, $ARGV[0]);
}
print "$changed\n";
"""


def scrub_session_history(*, engine: DockerEngine, attempt: Attempt, container_id: str, masker: Masker) -> str:
    """Mask the secrets in the home volume; returns the line to log about it ("" when there is nothing to say)."""
    if not container_id or not masker.variants:
        return ""
    values = ("\n".join(masker.variants) + "\n").encode()
    argv, user = ["perl", "-e", SCRUB_SCRIPT, HOME], str(settings.ANYON_CONTAINER_UID)
    code: int | None = None
    try:
        with contextlib.suppress(EngineError):  # not running (any more): the engine refuses the exec
            code, out, _ = engine.exec_capture(container_id, argv, user=user, stdin=values)
        if code != 0:
            # Stopped (cancel, timeout, kill), removed (docker rm -f, perhaps still under way), or gone during
            # the exec: the volume outlives the container, so a throw-away container with only it masks it.
            code, out = engine.run_once(
                settings.ANYON_CLOUD_IMAGE,
                argv,
                mounts=[docker.types.Mount(HOME, home_volume(attempt.workspace_volume), type="volume")],
                user=user,
                labels=labels_for(attempt),
                stdin=values,
                seccomp_profile=seccomp_profile(),  # it reads what the agent wrote: hardened like the agent's
            )
    except Exception as exc:  # EngineError, or the engine gone mid-call: say so, never skip the cleanup
        code, out = None, str(exc)
    if code != 0:
        logger.warning("attempt %s: session history not checked for secrets: %s", attempt.pk, out[-300:])
        return "WARNING: the agent's session history could not be checked for secrets."
    if out.strip() not in ("", "0"):
        return f"Masked secrets in {out.strip()} file(s) of the agent's session history"
    return ""
