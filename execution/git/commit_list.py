"""What a push would send: the attempt's branch and the commits ``base..head``, read by Anyon's own git
(``anyon_git.COMMITS_SCRIPT``: objects by id, no hooks, no config, no ref the agent can move) and kept on the attempt
(``Attempt.push_summary``, shown by the attempt page and written into the pull request's body).

Author and committer names, e-mails, subjects and the branch the agent's HEAD names are the agent's text: each is
masked (a credential in a commit message is shown as ``***``), stripped of control and bidirectional-override
characters, cut to ``MAX_FIELD`` characters, and only ever shown escaped. Which commits are Anyon's own is not read
from them (an author line is whatever the agent wrote) but from the ids Anyon's commit step made
(``Run.own_commit``)."""

from __future__ import annotations

import re

from shared.masking import Masker

#: Commits listed; the rest are counted ("and N more").
MAX_COMMITS = 20
MAX_FIELD = 200
_ID = re.compile(r"[0-9a-f]{40}")
#: C0/C1 controls and the characters that reorder text when shown (a name could otherwise pose as another).
_MARKDOWN = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>@~&:])")
_UNSHOWABLE = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def clean(text: str, masker: Masker, limit: int = MAX_FIELD) -> str:
    """Masked first (a secret cut in two would no longer match), then made showable and cut."""
    text = _UNSHOWABLE.sub("\ufffd", masker.mask(text))
    return text if len(text) <= limit else text[:limit] + "…"


def parse(out: str, *, masker: Masker, branch: str, head: str, own_commits: set[str]) -> dict:
    """The summary of ``COMMITS_SCRIPT``'s output: ``{}`` when it is not readable."""
    ref_line, _, rest = out.partition("\n")
    count_line, _, listing = rest.partition("\n")
    if not count_line.strip().isdigit():
        return {}
    total = int(count_line.strip())
    ref = ref_line.strip()
    agent_branch = ref.removeprefix("refs/heads/") if ref else ""
    commits: list[dict] = []
    for record in listing.split("\0"):
        record = record.lstrip("\n")
        fields = record.split("\x1f", 5)
        if len(fields) < 6 or not _ID.fullmatch(fields[0]):
            continue  # not a record of the format (cut by the output limit, or text that merely contains NUL)
        commit_id, author, email, committer, committer_email, subject = fields
        entry = {
            "id": commit_id,
            "author": clean(author, masker),
            "email": clean(email, masker),
            "subject": clean(subject, masker),
            "own": commit_id in own_commits,
        }
        if (committer, committer_email) != (author, email):
            entry["committer"] = clean(committer, masker)
            entry["committer_email"] = clean(committer_email, masker)
        commits.append(entry)
        if len(commits) >= MAX_COMMITS:
            break
    listed_own = sum(1 for c in commits if c["own"])
    unlisted_own = len(own_commits - {c["id"] for c in commits})
    more = max(0, total - len(commits))
    return {
        "branch": branch,
        "head": head,
        "agent_branch": clean(agent_branch, masker),
        "detached": not ref,
        "switched": ref != f"refs/heads/{branch}",
        "total": total,
        "more": more,
        "agent_commits": (len(commits) - listed_own) + max(0, more - unlisted_own),
        "commits": commits,
    }


def notes(summary: dict) -> list[str]:
    """What the attempt page and the pull request say about the push, in plain sentences ([] before it is known)."""
    if not summary:
        return []
    said: list[str] = []
    head, branch = summary["head"][:12], summary["branch"]
    if summary["switched"]:
        where = "left its HEAD detached" if summary["detached"] else f"switched to the branch {summary['agent_branch']}"
        said.append(
            f"The agent {where}. Anyon pushes what it recorded: commit {head} to {branch}, whatever branch the "
            "agent used."
        )
    if not summary["total"]:
        said.append("No commits beyond the base branch: there is nothing to push.")
    elif summary["agent_commits"]:
        n = summary["agent_commits"]
        said.append(
            f"The agent's own commits are included: {n} commit{'s' if n != 1 else ''} not made by Anyon will be "
            "pushed. Check their authors and messages below."
        )
    else:
        said.append("Only Anyon's own commits of the agent's changes: the agent made no commits of its own.")
    return said


def markdown(summary: dict) -> str:
    """The summary for a pull request's body: sentences, then the commits in a code block (names and subjects are
    the agent's text: a fence longer than any run of backticks in it keeps them from becoming markdown)."""
    if not summary:
        return ""
    lines = []
    for commit in summary["commits"]:
        who = f"{commit['author']} <{commit['email']}>"
        if "committer" in commit:
            who += f", committed by {commit['committer']} <{commit['committer_email']}>"
        lines.append(f"{commit['id'][:12]} {commit['subject']} ({who}){'' if not commit['own'] else ' [Anyon]'}")
    if summary["more"]:
        lines.append(f"… and {summary['more']} more")
    body = "\n".join(lines)
    longest = max((len(run) for run in re.findall(r"`+", body)), default=0)
    fence = "`" * max(3, longest + 1)
    # The sentences name the agent's branch: every character markdown gives a meaning to is escaped (no link, no
    # mention, no heading made of a branch name).
    text = "\n\n".join(_MARKDOWN.sub(r"\\\1", note) for note in notes(summary))
    return f"{text}\n\n{fence}\n{body}\n{fence}" if lines else text
