"""The credential-adding reverse proxies: ``api.sock`` (Anthropic API), ``git.sock`` (one repository) and the opt-in
``github-api.sock`` (the GitHub REST API of that repository).

The container holds a placeholder, never a credential. ``api.sock`` accepts only what the Claude CLI sends
(:mod:`shared.egress.anthropic_policy`), and only when its credential header is exactly the placeholder of the grant's
kind, then puts the real credential in its place; ``git.sock`` accepts only
git smart-HTTP of the grant's repository and adds ``Authorization: Basic x-access-token:<token>``; ``github-api.sock``
accepts only reads of ``/repos/<owner>/<repo>`` and what lies under it, sensitive endpoints excepted
(``github_api_policy``), and adds ``Authorization: Bearer <token>``. A push through ``git.sock`` may touch only the
attempt's own branch (``receive_pack``). The credential is asked for when a request needs it and kept for a few
seconds per attempt (:meth:`AttemptSockets.credential`), so each decrypt is the wiring's to audit and a burst of
requests is not a burst of decrypts.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import json
import logging
import re
from collections.abc import Awaitable, Callable

from aiohttp import web

from shared.egress import anthropic_policy
from shared.egress.github_api_policy import github_api_refusal
from shared.egress.grant import ApiAuth, Service
from shared.egress.receive_pack import screen_push
from shared.egress.reverse_proxy import continue_if_expected, forward, refuse, request_headers

logger = logging.getLogger(__name__)

#: ``/<repository>[.git]/<endpoint>``: only these characters, so percent-encoding cannot disguise a path.
_GIT_PATH = re.compile(
    r"/(?P<repo>[A-Za-z0-9_.-]+(?:/[A-Za-z0-9_.-]+)*)/(?P<endpoint>info/refs|git-upload-pack|git-receive-pack)"
)
_UPLOAD, _RECEIVE = "git-upload-pack", "git-receive-pack"
#: Bodies up to this size are checked in the event loop (a CLI turn is far smaller); larger ones in a thread.
_CHECK_INLINE = 1024 * 1024


def _anthropic_error(status: int, message: str, kind: str = "permission_error") -> web.Response:
    body = {"type": "error", "error": {"type": kind, "message": f"egress proxy: {message}"}}
    # x-should-retry: otherwise the CLI retries a refusal with backoff for minutes.
    return web.Response(
        status=status, text=json.dumps(body), content_type="application/json", headers={"x-should-retry": "false"}
    )


def _is_placeholder(values: list[str], expected: str) -> bool:
    return len(values) == 1 and hmac.compare_digest(values[0].strip().encode(), expected.encode())


async def _credential(attempt, service: Service) -> str | None:
    try:
        return await attempt.credential(service)
    except Exception as exc:  # the wiring's refusal (no credential, expired, ...): its type, never a value
        name = type(exc).__name__
        logger.warning("egress attempt %s: no %s credential (%s)", attempt.grant.attempt_id, service, name)
        return None


def anthropic_handler(attempt) -> Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]:
    """``api.sock``: only the requests the Claude CLI makes (:mod:`shared.egress.anthropic_policy`), with the
    placeholder swapped for the real API key or setup-token, streamed to the Anthropic API."""
    grant = attempt.grant

    async def refuse_api(request: web.BaseRequest, problem: str, status: int = 403, kind: str = "permission_error"):
        path = request.raw_path.partition("?")[0]
        logger.info("egress attempt %s: api %s refused: %s", grant.attempt_id, request.method, problem)
        await attempt.blocked(attempt.api_upstream.target, f"refused {request.method[:10]} {path[:80]}: {problem}")
        return _anthropic_error(status, problem, kind)

    async def handle(request: web.BaseRequest) -> web.StreamResponse:
        problem = anthropic_policy.request_problem(request.method, request.raw_path)
        if problem:
            return await refuse_api(request, problem)
        keys = request.headers.getall("x-api-key", [])
        auths = request.headers.getall("Authorization", [])
        if grant.api_auth is ApiAuth.API_KEY:
            ok = _is_placeholder(keys, grant.placeholder) and not auths
        else:
            ok = not keys and _is_placeholder(auths, f"Bearer {grant.placeholder}")
        if not ok:
            logger.info("egress attempt %s: api request without the placeholder refused", grant.attempt_id)
            return _anthropic_error(403, f"send the placeholder credential ({grant.api_auth.value})")
        body: bytes | None = None
        if request.method == "POST":
            if request.headers.get("Content-Encoding", "identity").lower() != "identity":
                return await refuse_api(request, "a compressed body cannot be checked", 415, "invalid_request_error")
            if (request.content_length or 0) > anthropic_policy.MAX_BODY:
                return await refuse_api(request, "the body is too large", 413, "request_too_large")
            await continue_if_expected(request)
            body = await _read_body(request, anthropic_policy.MAX_BODY, attempt.limits.idle_timeout)
            if body is None:
                return await refuse_api(request, "the body is too large or too slow", 413, "request_too_large")
            if len(body) > _CHECK_INLINE:  # a big body is parsed beside the event loop, not in it
                problem = await asyncio.to_thread(
                    anthropic_policy.body_problem, body, remote_fetch=grant.api_remote_fetch
                )
            else:
                problem = anthropic_policy.body_problem(body, remote_fetch=grant.api_remote_fetch)
            if problem:
                status, kind = (400, "invalid_request_error") if "JSON" in problem else (403, "permission_error")
                return await refuse_api(request, problem, status, kind)
        elif request.body_exists:
            return await refuse_api(request, "a GET request has no body")
        credential = await _credential(attempt, Service.ANTHROPIC)
        if credential is None:
            return _anthropic_error(403, "no Anthropic credential is available for this run")
        headers = request_headers(request, drop=("x-api-key", "Authorization"))
        if grant.api_auth is ApiAuth.API_KEY:
            headers["x-api-key"] = credential
        else:
            headers["Authorization"] = f"Bearer {credential}"
        return await forward(request, attempt.session(Service.ANTHROPIC), attempt.api_upstream, headers,
                             attempt.policy, grant.internal, body=body)  # fmt: skip

    return handle


async def _read_body(request: web.BaseRequest, cap: int, timeout: float) -> bytes | None:
    """The whole request body, or None when it is over ``cap`` bytes or not complete within ``timeout``."""
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout):
            while chunk := await request.content.readany():
                size += len(chunk)
                if size > cap:
                    return None
                chunks.append(chunk)
    except TimeoutError:
        return None
    return b"".join(chunks)


def git_request_allowed(method: str, raw_path: str, raw_query: str, repository: str, push: bool) -> str | None:
    """Why a git request is refused, or None: smart HTTP of ``repository`` only (push only when ``push``)."""
    match = _GIT_PATH.fullmatch(raw_path)
    if not match or match["repo"].removesuffix(".git").lower() != repository.lower():
        return "only the run's repository is reachable"
    endpoint = match["endpoint"]
    if endpoint == "info/refs":
        service = raw_query.removeprefix("service=")
        allowed = method in ("GET", "HEAD") and raw_query.startswith("service=") and service in (_UPLOAD, _RECEIVE)
    else:
        service = endpoint
        allowed = method == "POST" and not raw_query and endpoint in (_UPLOAD, _RECEIVE)
    if not allowed:
        return "only git smart HTTP is reachable"
    if service == _RECEIVE and not push:
        return "push is not allowed for this run"
    return None


def git_handler(attempt) -> Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]:
    """``git.sock``: git smart HTTP of the grant's repository, with the token added as HTTP Basic auth."""
    grant = attempt.grant

    async def handle(request: web.BaseRequest) -> web.StreamResponse:
        problem = git_request_allowed(
            request.method, request.raw_path.partition("?")[0], request.rel_url.raw_query_string,
            grant.git_repository or "", grant.git_push,
        )  # fmt: skip
        if problem:
            logger.info("egress attempt %s: git %s refused: %s", grant.attempt_id, request.method, problem)
            return refuse(403, f"egress proxy: {problem}")
        body = None
        if request.method == "POST" and request.raw_path.partition("?")[0].endswith(f"/{_RECEIVE}"):
            screened = await screen_push(attempt, request)  # the ref policy, before a byte goes upstream
            if isinstance(screened, web.Response):
                return screened
            body = screened
        token = await _credential(attempt, Service.GITHUB)
        if token is None:
            return refuse(403, "egress proxy: no GitHub credential is available for this run")
        headers = request_headers(request, drop=("Authorization", "Cookie"))
        if token:  # "": the user has none; the request goes out anonymously (public repositories clone)
            basic = base64.b64encode(f"x-access-token:{token}".encode()).decode()
            headers["Authorization"] = f"Basic {basic}"
        return await forward(request, attempt.session(Service.GITHUB), attempt.git_upstream, headers,
                             attempt.policy, grant.internal, body)  # fmt: skip

    return handle


def github_api_handler(attempt) -> Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]:
    """``github-api.sock``: the GitHub REST API of the grant's repository, with the token added as a bearer token."""
    grant = attempt.grant

    async def handle(request: web.BaseRequest) -> web.StreamResponse:
        path = request.raw_path.partition("?")[0]
        problem = github_api_refusal(request.method, path, grant.git_repository or "", write=grant.github_api_write)
        if problem:
            logger.info("egress attempt %s: GitHub API %s refused: %s", grant.attempt_id, request.method, problem)
            await attempt.blocked(attempt.github_api_upstream.target, f"refused {path[:80]}: {problem}")
            return refuse(403, f"egress proxy: {problem}", content_type="text/plain")
        token = await _credential(attempt, Service.GITHUB)
        if token is None:
            return refuse(403, "egress proxy: no GitHub credential is available for this run")
        headers = request_headers(request, drop=("Authorization", "Cookie"))
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return await forward(request, attempt.session("github-api"), attempt.github_api_upstream, headers,
                             attempt.policy, grant.internal)  # fmt: skip

    return handle
