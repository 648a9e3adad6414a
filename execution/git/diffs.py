"""Turning ``git diff`` output from the workspace into what the attempt page shows (and the database keeps,
because the container is gone between runs): per file the path, added/removed line counts, whether it is
binary, and its unified diff, truncated when large."""

from __future__ import annotations

MAX_FILE_LINES = 400
MAX_FILE_CHARS = 64 * 1024
MAX_FILES_WITH_PATCH = 200


#: Files a CI service runs on a push, with the repository's secrets at hand (a workflow can post them anywhere).
CI_PREFIXES = (".github/workflows/", ".github/actions/", ".circleci/", ".buildkite/", ".gitlab/ci/")
CI_FILES = frozenset(
    {
        ".gitlab-ci.yml",
        ".travis.yml",
        "Jenkinsfile",
        "azure-pipelines.yml",
        "bitbucket-pipelines.yml",
        ".drone.yml",
        ".github/dependabot.yml",
        ".github/dependabot.yaml",
    }
)


def ci_paths(files: list[dict]) -> list[str]:
    """The changed files that configure CI (a push of them runs what they say)."""
    return [f["path"] for f in files if f["path"].startswith(CI_PREFIXES) or f["path"] in CI_FILES]


def parse_numstat(output: str) -> list[dict]:
    """``git diff --numstat --no-renames`` lines: ``added<TAB>removed<TAB>path`` (``-`` for binary files)."""
    files = []
    for line in output.splitlines():
        parts = line.split("\t", 2)
        if len(parts) != 3:
            continue
        added, removed, path = parts
        binary = added == "-" and removed == "-"
        files.append(
            {
                "path": path,
                "added": 0 if binary else int(added),
                "removed": 0 if binary else int(removed),
                "binary": binary,
                "patch": "",
                "truncated": False,
            }
        )
    return files


def split_patch(output: str) -> list[str]:
    """The unified diff of several files, one string per file, in git's order."""
    chunks: list[str] = []
    for line in output.splitlines(keepends=True):
        if line.startswith("diff --git ") or not chunks:
            chunks.append("")
        chunks[-1] += line
    return [c for c in chunks if c.startswith("diff --git ")]


def attach_patches(files: list[dict], patch_output: str, *, complete: bool) -> bool:
    """Give each text file its (possibly truncated) diff; returns whether anything was truncated."""
    truncated = not complete
    patches = split_patch(patch_output)
    for index, entry in enumerate(files):
        if entry["binary"] or index >= len(patches) or index >= MAX_FILES_WITH_PATCH:
            if not entry["binary"] and index >= len(patches):
                entry["truncated"] = truncated = True
            continue
        # Skip git's header lines; the page shows the path itself.
        lines = [
            ln for ln in patches[index].splitlines() if not ln.startswith(("diff --git", "index ", "--- ", "+++ "))
        ]
        text = "\n".join(lines[:MAX_FILE_LINES])
        if len(lines) > MAX_FILE_LINES or len(text) > MAX_FILE_CHARS:
            entry["truncated"] = truncated = True
            text = text[:MAX_FILE_CHARS]
        entry["patch"] = text
    return truncated


def line_class(line: str) -> str:
    """Syntax-neutral highlighting: only what a diff line is (added, removed, hunk header, context)."""
    if line.startswith("@@"):
        return "hunk"
    if line.startswith("+"):
        return "add"
    if line.startswith("-"):
        return "del"
    return "ctx"
