# Long because each hostile push (another ref, a tag, a delete, a malformed head) is its own case.
"""Pushes through ``git.sock`` touch only the attempt's own branch: the receive-pack head parser (strict, hostile
input refused cleanly), the ref policy, and real ``git push`` through the proxy against a real git server, where
every other ref, tag and delete is refused with the reason git prints, before a byte reaches the server."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import subprocess
import time
from pathlib import Path

import pytest

from shared.egress import GIT_SOCKET
from shared.egress.receive_pack import (
    FLUSH,
    MAX_HEAD,
    HeadParser,
    Malformed,
    UpdateRequest,
    parse_update_request,
    pkt_line,
    read_head,
    refusal_result,
    refusals,
)
from tests.fakes.git_http import FakeGitHTTPServer, make_bare_repo
from tests.shared.egress.conftest import GH_TOKEN, grant, tcp_bridge, unix_session
from tests.shared.egress.test_git_socket import GIT_ENV

pytestmark = pytest.mark.hostile  # attacks: counted in docs/QA_CHECKLIST.md

ZERO, OLD, NEW = "0" * 40, "a" * 40, "b" * 40
BRANCH = "anyon/attempt-1"
OWN = f"refs/heads/{BRANCH}"
OTHER = f"other refs may not be pushed: only {OWN}"


def command(old: str, new: str, ref: str, caps: str | None = None) -> bytes:
    line = f"{old} {new} {ref}".encode()
    return pkt_line(line + (b"\0" + caps.encode() if caps is not None else b"") + b"\n")


def head(*commands: tuple[str, str, str], caps: str = "report-status side-band-64k") -> bytes:
    lines = [command(*c, caps=caps if i == 0 else None) for i, c in enumerate(commands)]
    return b"".join(lines) + FLUSH


# --- the parser -----------------------------------------------------------------------------------------------
def test_a_command_list_is_read_with_its_capabilities_and_the_pack_is_left_alone():
    body = head((ZERO, NEW, OWN), caps="report-status side-band-64k agent=git/2.39") + b"PACK\x00\x00\x00\x02..."
    request = parse_update_request(body)
    assert request is not None and request.length == body.index(b"PACK")
    assert [(c.old, c.new, c.ref) for c in request.commands] == [(ZERO, NEW, OWN)]
    assert request.capabilities == {"report-status", "side-band-64k", "agent=git/2.39"}
    assert request.reports and request.side_band == 65520


def test_shallow_lines_push_options_sha256_and_a_missing_newline_are_read():
    sha256 = "c" * 64
    body = (
        pkt_line(b"shallow " + OLD.encode() + b"\n")
        + pkt_line(f"{'0' * 64} {sha256} {OWN}\0report-status push-options object-format=sha256".encode())
        + FLUSH
        + pkt_line(b"ci.skip\n")
        + pkt_line(b"merge_request.create")
        + FLUSH
        + b"PACK"
    )
    request = parse_update_request(body)
    assert request is not None and request.length == len(body) - 4
    assert request.commands[0].new == sha256 and "push-options" in request.capabilities


def test_every_proper_prefix_asks_for_more_and_never_decides():
    body = head((ZERO, NEW, OWN), (OLD, NEW, "refs/heads/main"))
    for end in range(len(body)):
        assert parse_update_request(body[:end]) is None, end
    assert parse_update_request(body) is not None


def test_a_body_fed_a_byte_at_a_time_gives_the_same_head_as_whole():
    body = pkt_line(b"shallow " + OLD.encode() + b"\n") + head((ZERO, NEW, OWN), (OLD, NEW, "refs/tags/v1")) + b"PACK"
    parser, done = HeadParser(), len(body) - 4  # the head ends before "PACK"
    assert all(parser.feed(body[i : i + 1]) is None for i in range(done - 1))
    assert parser.feed(body[done - 1 : done]) == parse_update_request(body)


def test_a_head_trickled_byte_by_byte_is_read_in_linear_time():
    """Each byte is looked at once: a client trickling a 1 MiB head byte by byte costs the proxy no quadratic time."""
    body = head(*[(ZERO, NEW, f"refs/heads/b{i:05}") for i in range(9000)])
    parser, started = HeadParser(), time.process_time()
    for i in range(len(body) - 1):
        assert parser.feed(body[i : i + 1]) is None
    assert parser.feed(body[-1:]) is not None
    assert time.process_time() - started < 20  # quadratic re-parsing would take hours


def test_gits_probe_is_an_empty_command_list():
    request = parse_update_request(FLUSH)
    assert request == UpdateRequest((), frozenset(), 4) and refusals(request, BRANCH) == {}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"00zz" + b"x" * 60, "four hex digits"),
        (b"+03f" + b"x" * 60, "four hex digits"),
        (b" 03f" + b"x" * 60, "four hex digits"),
        (b"0x3f" + b"x" * 60, "four hex digits"),
        (b"0001", "length 1"),
        (b"0002", "length 2"),
        (b"0003", "length 3"),
        (b"fff1" + b"x" * 10, "over 65520"),
        (b"ffff", "over 65520"),
        (pkt_line(f"{ZERO} {NEW} {OWN}\n".encode()) + FLUSH, "no capabilities"),
        (command(ZERO, NEW, OWN, caps="a") + command(ZERO, NEW, "refs/heads/x", caps="b") + FLUSH, "NUL after"),
        (head((OLD.upper(), NEW, OWN)), "'<old-id> <new-id> <ref>'"),
        (head((ZERO[:39], NEW, OWN)), "'<old-id> <new-id> <ref>'"),
        (head(("0" * 64, NEW, OWN)), "mixes object-id lengths"),
        (head((ZERO, NEW, "HEAD")), "under refs/"),
        (head((ZERO, NEW, "refs/heads/a b")), "under refs/"),
        (head((ZERO, NEW, "refs/heads/a\tb")), "under refs/"),
        (head((ZERO, NEW, "refs/heads/\u00e9")), "under refs/"),
        (head((ZERO, NEW, OWN), caps="report-status \u00e9"), "not ASCII"),
        (pkt_line(b"shallow xyz\n") + head((ZERO, NEW, OWN)), "shallow line"),
        (pkt_line(b"push-cert\0report-status\n") + pkt_line(b"certificate version 0.1\n"), "signed pushes"),
        (head((ZERO, NEW, OWN), caps="push-options") + pkt_line(b"a\0b") + FLUSH, "push option holds a NUL"),
    ],
)
def test_hostile_heads_are_refused_cleanly(body, message):
    with pytest.raises(Malformed, match=message):
        parse_update_request(body)


def test_a_head_past_the_limit_is_refused_and_many_commands_below_it_are_read():
    many = [(ZERO, NEW, f"refs/heads/b{i}") for i in range(5000)]
    request = parse_update_request(head(*many))
    assert request is not None and len(request.commands) == 5000
    assert len(refusals(request, BRANCH)) == 5000
    too_many = head(*[(ZERO, NEW, f"refs/heads/b{i}") for i in range(MAX_HEAD // 80)])
    with pytest.raises(Malformed, match="more than"):
        parse_update_request(too_many)
    endless = command(ZERO, NEW, OWN, caps="") + command(ZERO, NEW, OWN) * (MAX_HEAD // 50)  # no flush, ever
    with pytest.raises(Malformed, match="more than"):
        parse_update_request(endless)


def test_random_bytes_never_crash_the_parser():
    rng = random.Random(7)
    valid = head((ZERO, NEW, OWN), (OLD, NEW, "refs/tags/v1"))
    for _ in range(3000):
        body = bytearray(valid)
        for _ in range(rng.randint(1, 6)):
            body[rng.randrange(len(body))] = rng.randrange(256)
        cut = bytes(body[: rng.randint(0, len(body))])
        for sample in (bytes(body), cut, rng.randbytes(rng.randint(0, 200))):
            with contextlib.suppress(Malformed):  # anything else fails the test
                parse_update_request(sample)


class _Stream:
    """``readany`` over fixed chunks, as aiohttp's request stream gives them."""

    def __init__(self, *chunks: bytes) -> None:
        self.chunks = list(chunks)

    async def readany(self) -> bytes:
        return self.chunks.pop(0) if self.chunks else b""


async def test_the_head_is_read_across_chunks_and_an_unfinished_one_is_refused():
    body = head((ZERO, NEW, OWN)) + b"PACK-and-more"
    request, data = await read_head(_Stream(*(body[i : i + 7] for i in range(0, len(body), 7))))
    assert [c.ref for c in request.commands] == [OWN] and body.startswith(data) and len(data) >= request.length
    with pytest.raises(Malformed, match="ended inside"):
        await read_head(_Stream(body[:20]))
    with pytest.raises(Malformed, match="after an empty command list"):
        await read_head(_Stream(FLUSH + b"PACK"))


# --- the policy -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("commands", "refused"),
    [
        ([(ZERO, NEW, OWN)], {}),  # create the attempt's branch
        ([(OLD, NEW, OWN)], {}),  # update it (a forced update looks the same: it is the attempt's own branch)
        ([(OLD, ZERO, OWN)], {OWN: "deleting a branch is not allowed"}),
        ([(OLD, NEW, "refs/heads/main")], {"refs/heads/main": OTHER}),
        ([(ZERO, NEW, "refs/tags/v9.9.9")], {"refs/tags/v9.9.9": "tags may not be pushed: only " + OWN}),
        ([(ZERO, NEW, OWN + "0")], {OWN + "0": OTHER}),
        ([(ZERO, NEW, OWN + "/x")], {OWN + "/x": OTHER}),
        ([(ZERO, NEW, "refs/heads/Anyon/attempt-1")], {"refs/heads/Anyon/attempt-1": OTHER}),
        (
            [(ZERO, NEW, OWN), (OLD, NEW, "refs/heads/main")],
            {OWN: "refused with the rest of this push", "refs/heads/main": OTHER},
        ),
    ],
)
def test_only_the_attempts_own_branch_may_be_created_or_updated(commands, refused):
    request = parse_update_request(head(*commands))
    assert request is not None and refusals(request, BRANCH) == refused


def test_without_a_push_branch_nothing_may_be_pushed():
    request = parse_update_request(head((ZERO, NEW, OWN)))
    assert refusals(request, None) == {OWN: "no branch may be pushed in this run"}


@pytest.mark.parametrize("branch", ["../main", "a//b", "a b", "a\nb", "refs/heads/x:y", "", "a/./b"])
def test_a_grant_names_a_plain_push_branch(branch):
    with pytest.raises(ValueError, match="bad push branch"):
        grant("1", git_url="https://github.com", git_repository="o/r", git_push_branch=branch)


def _unband(data: bytes) -> tuple[bytes, bytes]:
    """(band 1, band 2) of a side-band stream ending in a flush."""
    bands = {1: b"", 2: b""}
    at = 0
    while data[at : at + 4] != FLUSH:
        size = int(data[at : at + 4], 16)
        bands[data[at + 4]] += data[at + 5 : at + size]
        at += size
    assert at + 4 == len(data)
    return bands[1], bands[2]


@pytest.mark.parametrize("caps", ["report-status", "report-status side-band-64k", "report-status-v2 side-band"])
def test_the_refusal_is_a_report_git_reads(caps):
    refs = [(OLD, NEW, f"refs/heads/b{i}") for i in range(300)]
    request = parse_update_request(head(*refs, caps=caps))
    result = refusal_result(request, refusals(request, BRANCH))
    report, progress = _unband(result) if "side-band" in caps else (result, b"")
    assert b"push refused" in progress if "side-band" in caps else progress == b""
    lines = []
    while report:
        size = int(report[:4], 16)
        lines.append(report[4:size] if size else None)
        report = report[size or 4 :]
    assert lines[0] == b"unpack ok\n" and lines[-1] is None
    assert lines[1:-1] == [
        f"ng refs/heads/b{i} egress proxy: other refs may not be pushed: only {OWN}\n".encode() for i in range(300)
    ]


# --- real git through git.sock ----------------------------------------------------------------------------------
async def git_run(*args: str, cwd: Path | None = None) -> tuple[int, str]:
    env = {"PATH": os.environ["PATH"], "HOME": str(cwd or "/tmp"), **GIT_ENV}
    process = await asyncio.create_subprocess_exec(
        "git", *args, cwd=cwd, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    output, _ = await process.communicate()
    return process.returncode, output.decode()


async def git_ok(*args: str, cwd: Path | None = None) -> str:
    code, output = await git_run(*args, cwd=cwd)
    assert code == 0, output
    return output


def remote_refs(repo: Path) -> dict[str, str]:
    out = subprocess.run(
        ["git", "--git-dir", str(repo), "for-each-ref", "--format=%(refname) %(objectname)"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return dict(line.split(" ") for line in out.splitlines())


@pytest.fixture
def git_server(tmp_path):
    repo = make_bare_repo(tmp_path / "srv" / "octo" / "demo.git", {"README.md": "# demo\n"})
    with FakeGitHTTPServer(repo, GH_TOKEN, project_root=tmp_path / "srv") as server:
        yield server


@pytest.fixture
async def workspace(proxy, attempt_dirs, git_server, tmp_path):
    """A clone through git.sock in a push window, with a commit, a tag and a second branch on the remote; yields
    (work tree, the ``-c`` rewrite that sends GitHub URLs to the bridge)."""
    seed = tmp_path / "seed"
    await git_ok("clone", "--quiet", str(git_server.repo_dir), str(seed))
    await git_ok("tag", "-a", "-m", "v1", "v1", cwd=seed)
    await git_ok("push", "--quiet", "origin", "v1", "main:refs/heads/other", cwd=seed)
    host = git_server.base_url.removeprefix("http://")
    g = grant("1", git_url=git_server.base_url, git_repository="octo/demo", internal=[host], git_push=True,
              git_push_branch=BRANCH)  # fmt: skip
    paths = await proxy.open_attempt(g, attempt_dirs[0])
    async with tcp_bridge(paths[GIT_SOCKET]) as port:
        rewrite = f"url.http://127.0.0.1:{port}/.insteadOf=https://github.com/"
        work = tmp_path / "work"
        await git_ok("-c", rewrite, "clone", "--quiet", "https://github.com/octo/demo.git", str(work))
        await git_ok("config", f"url.http://127.0.0.1:{port}/.insteadOf", "https://github.com/", cwd=work)
        await git_ok("checkout", "--quiet", "-b", BRANCH, cwd=work)
        (work / "change.txt").write_text("from the agent\n")
        await git_ok("add", "change.txt", cwd=work)
        await git_ok("commit", "--quiet", "-m", "change", cwd=work)
        yield work


def receive_packs(server: FakeGitHTTPServer) -> int:
    return sum(1 for r in server.requests if r.method == "POST" and r.path.endswith("/git-receive-pack"))


async def test_the_attempts_branch_is_pushed_and_force_pushed(workspace, git_server, blocked):
    await git_ok("push", "--quiet", "origin", f"HEAD:refs/heads/{BRANCH}", cwd=workspace)
    first = (await git_ok("rev-parse", "HEAD", cwd=workspace)).strip()
    assert remote_refs(git_server.repo_dir)[OWN] == first
    await git_ok("commit", "--quiet", "--amend", "-m", "rewritten", cwd=workspace)
    await git_ok("push", "--quiet", "--force", "origin", BRANCH, cwd=workspace)
    assert remote_refs(git_server.repo_dir)[OWN] == (await git_ok("rev-parse", "HEAD", cwd=workspace)).strip() != first
    assert receive_packs(git_server) == 2 and blocked.events == []


@pytest.mark.parametrize(
    ("setup", "push", "reason"),
    [
        ([], ["--force", "origin", "HEAD:refs/heads/main"], "other refs may not be pushed"),
        ([], ["--no-verify", "--force", "origin", "HEAD:main"], "other refs may not be pushed"),
        ([["tag", "v9.9.9"]], ["origin", "v9.9.9"], "tags may not be pushed"),
        ([["tag", "-a", "-m", "x", "v9.9.9"]], ["--follow-tags", "origin", BRANCH], "tags may not be pushed"),
        ([["tag", "v9.9.9"]], ["--tags", "origin"], "tags may not be pushed"),
        ([], ["origin", ":refs/heads/other"], "other refs may not be pushed"),
        ([], ["--delete", "origin", "v1"], "tags may not be pushed"),
        ([], ["origin", "HEAD:refs/heads/feature"], "other refs may not be pushed"),
        ([], ["origin", "HEAD:refs/notes/commits"], "other refs may not be pushed"),
        ([], ["origin", f"HEAD:{BRANCH}", "HEAD:main"], "other refs may not be pushed"),
        ([["branch", "extra"]], ["--all", "origin"], "other refs may not be pushed"),
        ([], ["--mirror", "origin"], "other refs may not be pushed"),
    ],
)
async def test_every_other_push_is_refused_with_the_reason_git_prints(
    workspace, git_server, blocked, setup, push, reason
):
    for step in setup:
        await git_ok(*step, cwd=workspace)
    before = remote_refs(git_server.repo_dir)
    code, output = await git_run("push", *push, cwd=workspace)
    assert code != 0, output
    assert "[remote rejected]" in output and f"egress proxy: {reason}" in output, output
    assert "remote: egress proxy: push refused" in output, output  # side-band progress, shown as remote:
    assert remote_refs(git_server.repo_dir) == before
    assert receive_packs(git_server) == 0  # refused before a byte reached the server
    assert len(blocked.events) == 1 and "refused a push to refs/" in blocked.events[0][3]
    assert blocked.events[0][1:3] == ("127.0.0.1", int(git_server.base_url.rsplit(":", 1)[1]))


async def test_the_attempts_own_branch_cannot_be_deleted(workspace, git_server, blocked):
    await git_ok("push", "--quiet", "origin", BRANCH, cwd=workspace)
    before = remote_refs(git_server.repo_dir)
    code, output = await git_run("push", "origin", "--delete", BRANCH, cwd=workspace)
    assert code != 0 and "egress proxy: deleting a branch is not allowed" in output, output
    assert remote_refs(git_server.repo_dir) == before and len(blocked.events) == 1


@pytest.mark.parametrize(
    ("body", "headers", "status"),
    [
        (b"PACK\x00\x00\x00\x02", {}, 400),  # no command list at all
        (FLUSH + b"PACK", {}, 400),
        (b"00", {}, 400),
        (head((OLD, NEW, "refs/heads/main"), caps="side-band-64k"), {}, 403),  # no report-status: a plain 403
        (head((ZERO, NEW, OWN)), {"Content-Encoding": "gzip"}, 400),
    ],
)
async def test_a_hostile_body_is_refused_and_nothing_goes_upstream(
    proxy, attempt_dirs, git_server, blocked, credentials, body, headers, status
):
    host = git_server.base_url.removeprefix("http://")
    g = grant("1", git_url=git_server.base_url, git_repository="octo/demo", internal=[host], git_push=True,
              git_push_branch=BRANCH)  # fmt: skip
    paths = await proxy.open_attempt(g, attempt_dirs[0])
    async with (
        unix_session(paths[GIT_SOCKET]) as client,
        client.post("http://b/octo/demo.git/git-receive-pack", data=body, headers=headers) as response,
    ):
        assert response.status == status
        assert "egress proxy: push refused" in await response.text()
    assert git_server.requests == [] and credentials.calls == []
    assert len(blocked.events) == 1
