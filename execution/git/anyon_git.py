"""Anyon's own git in the agent's workspace: commit, head, diff, the pre-push guard and the push
(docs/ARCHITECTURE.md, "Trust boundary").

The workspace's ``.git`` is the agent's: its hooks, config (textconv and filter drivers, fsmonitor, aliases, push
settings, ``url.*.insteadOf``, ``include.path``), ``info/attributes``, replace refs and remote-tracking refs are all
what the agent wrote. Anyon's git therefore reads only **objects** from it, by id, through a git dir of its own:

* every command runs with ``GIT_CONFIG_NOSYSTEM``, ``GIT_CONFIG_GLOBAL=/dev/null``, ``GIT_NO_REPLACE_OBJECTS``,
  ``GIT_ATTR_NOSYSTEM``, ``XDG_CONFIG_HOME`` elsewhere, and ``-c`` overrides (no hooks, no fsmonitor, no attributes
  or excludes file, no external diff, no pager, no signing, no follow-tags, no submodule recursion);
* commit, diff, guard and push use a fresh bare git dir in the container's ``/tmp`` (made without templates: no
  hooks, empty config, no ``info/attributes``, no refs) with ``GIT_OBJECT_DIRECTORY`` set to the workspace's
  objects. So no driver the agent configured exists, no replace ref is seen, and no ref the agent can move is read:
  the range is ``base..head`` as Anyon recorded them;
* only three commands touch the agent's git dir itself: ``rev-parse HEAD`` and ``symbolic-ref HEAD`` (read refs,
  run nothing) and the commit's ``update-ref`` (runs no program once hooks are off).

In-tree ``.gitattributes`` still apply to the commit's ``add`` (line endings, encodings): they change what is
committed, which is then what is diffed and pushed; a ``filter=``/``diff=`` attribute names a driver that Anyon's
empty config does not define, so it does nothing.
"""

from __future__ import annotations

REPOSITORY = "/workspace/.git"
CREDENTIAL_HELPER = "/usr/local/bin/anyon-git-credential"
#: Anyon's own programs in the container, by absolute path in the image's root-owned directories (the container user
#: cannot write them: no capability, no root). Never a name looked up in a ``PATH`` a step could have prepared.
SH, GIT = "/bin/sh", "/usr/bin/git"
#: The loader and shell variables that would make a program run something else; cleared in Anyon's own execs.
CLEARED = ("LD_PRELOAD", "LD_LIBRARY_PATH", "LD_AUDIT", "BASH_ENV", "ENV", "CDPATH")
#: First in every script of Anyon's: only the image's root-owned directories are searched, and nothing is preloaded
#: in the programs it starts.
SAFE = f"PATH=/usr/bin:/bin; export PATH; unset {' '.join(CLEARED)}; "

#: ``g``: git with nothing of the agent's configuration; ``own``: a fresh git dir of Anyon's own, sharing the
#: workspace's objects (removed on exit). Assignments before ``git`` reach only that command, never a step.
PRELUDE = SAFE + (
    "g() { GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null GIT_NO_REPLACE_OBJECTS=1 GIT_ATTR_NOSYSTEM=1 "
    "XDG_CONFIG_HOME=/nonexistent GIT_TERMINAL_PROMPT=0 GIT_PAGER=cat "
    f"{GIT} -c core.hooksPath=/dev/null -c core.fsmonitor=false -c core.attributesFile=/dev/null "
    "-c core.excludesFile=/dev/null -c diff.external= -c core.pager=cat -c commit.gpgSign=false "
    "-c tag.gpgSign=false -c push.followTags=false -c push.recurseSubmodules=no -c submodule.recurse=false "
    '-c protocol.ext.allow=never -c safe.directory=/workspace "$@"; }; '
    f"repo={REPOSITORY}; "
    "own() { d=$(mktemp -d /tmp/anyon-git.XXXXXX) && trap 'rm -rf \"$d\"' EXIT && "
    'g init -q --bare --template= "$d/git" && export GIT_DIR="$d/git" GIT_OBJECT_DIRECTORY="$repo/objects"; }; '
)

HEAD_SCRIPT = PRELUDE + 'g --git-dir="$repo" rev-parse --verify -q "HEAD^{commit}"'

#: ``$1`` base, ``$2`` head: the counts, an empty line, the patches (execution/git/diffs.py reads them).
DIFF_SCRIPT = PRELUDE + 'own && g diff --numstat -p --no-color --no-ext-diff --no-textconv --no-renames "$1" "$2" --'

#: ``$1`` base ("" when unknown: the head's whole history), ``$2`` head: every commit to push, with its message
#: and whole patch (binary files as text, so a token stored as it is in one is found too).
GUARD_SCRIPT = (
    PRELUDE + 'own && g log -p --text --no-color --no-ext-diff --no-textconv "--format=commit %H%n%an <%ae>%n%B" '
    '"$2" ${1:+--not "$1"} --'
)

#: ``$1`` base, ``$2`` head, ``$3`` how many to list: the ref the agent's HEAD names (a line; empty when detached), the
#: number of commits ``base..head``, then the newest ``$3`` of them, each ``id, author name, e-mail, committer name,
#: e-mail, subject`` split by 0x1f and ended by NUL (execution/git/commit_list.py reads them as hostile text).
COMMITS_SCRIPT = PRELUDE + (
    'printf "%s\\n" "$(g --git-dir="$repo" symbolic-ref -q HEAD)"; '
    'own && g rev-list --count "$2" --not "$1" -- && '
    'g log -z --no-color "--max-count=$3" "--format=%H%x1f%an%x1f%ae%x1f%cn%x1f%ce%x1f%s" "$2" --not "$1" --'
)

#: ``$1`` message, ``$2`` name, ``$3`` email. What the workspace holds is committed on top of its HEAD through
#: Anyon's own index and git dir; the branch and the workspace's index then point at the new commit.
COMMIT_SCRIPT = PRELUDE + (
    'head=$(g --git-dir="$repo" rev-parse --verify -q "HEAD^{commit}") || head=; '
    'own && export GIT_INDEX_FILE="$d/index" GIT_WORK_TREE=/workspace && '
    '{ [ -z "$head" ] || g read-tree "$head"; } && g add -A && '
    'if [ -n "$head" ] && g diff-index --cached --quiet "$head" --; then echo "No changes to commit"; exit 0; fi; '
    "tree=$(g write-tree) && "
    'commit=$(g -c user.name="$2" -c user.email="$3" commit-tree "$tree" ${head:+-p "$head"} -m "$1") && '
    'g --git-dir="$repo" update-ref -m "anyon: commit" HEAD "$commit" ${head:+"$head"} && '
    'cat "$GIT_INDEX_FILE" > "$repo/index" && g log -1 --format="Committed %h: %s" "$commit"'
)

#: ``$1`` the repository's URL, ``$2`` the commit (the head whose diff the user reviewed), ``$3`` the branch. A
#: commit id, never a ref the agent could move; only that one ref.
PUSH_SCRIPT = PRELUDE + (
    f'own && g -c credential.helper={CREDENTIAL_HELPER} push --porcelain --no-verify "$1" "$2:refs/heads/$3"'
)

#: ``$1`` the repository's URL, ``$2`` the base branch. A start from a snapshot: the base branch is fetched into
#: Anyon's own git dir (the snapshot's git config and hooks, which its setup could write, play no part), the work tree
#: and the workspace's index are reset to it as ``git reset --hard`` would (files the setup made that git does not
#: track stay), and the workspace's base branch, its remote-tracking ref and HEAD point at it.
FETCH_SCRIPT = PRELUDE + (
    'old=$(g --git-dir="$repo" rev-parse --verify -q "HEAD^{commit}") || old=; '
    'own && { [ -z "$old" ] || g update-ref refs/anyon/old "$old"; } && '
    f'g -c credential.helper={CREDENTIAL_HELPER} fetch --quiet --no-tags --no-write-fetch-head "$1" '
    '"+refs/heads/$2:refs/anyon/base" && new=$(g rev-parse --verify "refs/anyon/base^{commit}") && '
    'export GIT_INDEX_FILE="$d/index" GIT_WORK_TREE=/workspace && '
    '{ cp "$repo/index" "$GIT_INDEX_FILE" 2>/dev/null || true; } && g read-tree -u --reset "$new" && '
    'g --git-dir="$repo" update-ref "refs/remotes/origin/$2" "$new" && '
    'g --git-dir="$repo" update-ref "refs/heads/$2" "$new" && g --git-dir="$repo" symbolic-ref HEAD "refs/heads/$2" && '
    'cat "$GIT_INDEX_FILE" > "$repo/index" && echo "Fetched $2 at $new"'
)

#: Dependency lockfiles, by file name at any depth: their blob ids at the base commit are part of a snapshot's key.
LOCKFILE_NAMES = (
    r"requirements[^/]*\.txt|poetry\.lock|uv\.lock|Pipfile\.lock|package-lock\.json|yarn\.lock|pnpm-lock\.yaml"
    r"|Cargo\.lock|go\.sum|Gemfile\.lock|pom\.xml|build\.gradle[^/]*|composer\.lock"
)

#: ``$1`` the git dir, ``$2`` a commit: ``<mode> blob <id>\t<path>`` of each lockfile in its tree. Objects by id
#: only (no hook, driver or replace ref of the workspace's applies).
LOCKFILES_SCRIPT = (
    PRELUDE
    + 'g --git-dir="$1" ls-tree -r --full-tree "$2" | grep -E "(/|[[:space:]])('
    + LOCKFILE_NAMES
    + ')$" || true'
)


def _sh(script: str, name: str, *args: str) -> list[str]:
    return [SH, "-c", script, name, *args]


def head_argv() -> list[str]:
    return _sh(HEAD_SCRIPT, "anyon-head")


def diff_argv(base: str, head: str) -> list[str]:
    return _sh(DIFF_SCRIPT, "anyon-diff", base, head)


def guard_argv(base: str, head: str) -> list[str]:
    return _sh(GUARD_SCRIPT, "anyon-guard", base, head)


def commits_argv(base: str, head: str, count: int) -> list[str]:
    return _sh(COMMITS_SCRIPT, "anyon-commits", base, head, str(count))


def commit_argv(*, message: str, name: str, email: str) -> list[str]:
    return _sh(COMMIT_SCRIPT, "commit", message, name, email)


def push_argv(*, url: str, commit: str, branch: str) -> list[str]:
    return _sh(PUSH_SCRIPT, "push", url, commit, branch)


def fetch_argv(*, url: str, branch: str) -> list[str]:
    return _sh(FETCH_SCRIPT, "fetch", url, branch)


def lockfiles_argv(*, git_dir: str, commit: str) -> list[str]:
    return _sh(LOCKFILES_SCRIPT, "anyon-lockfiles", git_dir, commit)


def own_environment() -> dict[str, str]:
    """Set in every exec of Anyon's own (over the container's, which Anyon set at its creation and no process in
    the container can change): the image's root-owned directories only, nothing preloaded."""
    return {"PATH": "/usr/bin:/bin", **dict.fromkeys(CLEARED, "")}
