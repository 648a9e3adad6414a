"""The agent's session history outlives the container (``~/.claude`` in the home volume, for ``--resume``), tool
output included: every injected secret in it is masked, as in the log."""

from __future__ import annotations

import logging

import docker
from django.conf import settings

from execution.attempts.containers import HOME, home_volume, labels_for, seccomp_profile
from execution.models import Attempt
from shared.docker.engine import DockerEngine
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


def scrub_session_history(
    *, engine: DockerEngine, attempt: Attempt, container_id: str, masker: Masker, sealed: bool
) -> str:
    """Mask the secrets in the home volume; returns the line to log about it ("" when there is nothing to say).

    The values go only to a helper container of their own (no network, no capability, read-only root, its own
    process namespace) that mounts the home volume after the attempt's container was killed: no process the agent
    started can see them. A sealed session skips it: no credential ever entered its container (the proxy adds
    them outside), so none can be in what the agent wrote, and there is nothing to mask."""
    if sealed or not masker.variants:
        return ""
    values = ("\n".join(masker.variants) + "\n").encode()
    argv, user = ["/usr/bin/perl", "-e", SCRUB_SCRIPT, HOME], str(settings.ANYON_CONTAINER_UID)
    try:
        if container_id:
            engine.kill_and_wait(container_id)  # the agent's processes are gone before the values exist anywhere
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
