"""The temp dir (ANYON_TEMP_DIR) is refused when another local user could read what is written below it, and a worker
that is neither root nor the container uid hands the secret dir over with CAP_CHOWN alone."""

from __future__ import annotations

import os
import pathlib
import shutil
import stat
import subprocess
import sys
import tempfile
import textwrap

import pytest

from shared.tempdir import TempDirError, ensure_temp_dir

as_root = pytest.mark.skipif(os.geteuid() != 0, reason="another uid's files are made with os.chown, as root")


def mode(path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_a_new_temp_dir_is_0700_and_ours(tmp_path):
    path = ensure_temp_dir(tmp_path / "parent" / "anyon")
    assert mode(path) == 0o700 and path.stat().st_uid == os.geteuid()
    os.chmod(path, 0o755)  # an existing own dir is tightened
    ensure_temp_dir(path)
    assert mode(path) == 0o700


def test_a_temp_dir_that_is_a_symlink_is_refused(tmp_path):
    """Another user made /tmp/anyon a link to a folder they can read: nothing is chmod-ed or written through it."""
    target = tmp_path / "attacker"
    target.mkdir(mode=0o755)
    os.chmod(target, 0o755)
    link = tmp_path / "anyon"
    link.symlink_to(target)
    with pytest.raises(TempDirError, match="is a symlink") as excinfo:
        ensure_temp_dir(link)
    assert "remove it" in str(excinfo.value) and "ANYON_TEMP_DIR" in str(excinfo.value)
    assert mode(target) == 0o755 and link.is_symlink()


@pytest.mark.django_db
def test_no_secret_is_written_below_a_symlinked_temp_dir(tmp_path, settings):
    from execution.attempts.secret_dir import SecretDirError, write_secret_dir

    target = tmp_path / "attacker"
    target.mkdir()
    (tmp_path / "anyon").symlink_to(target)
    settings.ANYON_TEMP_DIR = tmp_path / "anyon"
    with pytest.raises(SecretDirError, match="is a symlink"):
        write_secret_dir(7, {"github_token": "ghp_" + "s" * 36})
    assert list(target.iterdir()) == []


@pytest.mark.hostile
@as_root
def test_a_temp_dir_owned_by_another_uid_is_refused(tmp_path):
    """Another local user created /tmp/anyon first (wide open, so a chmod would look like it fixed it)."""
    path = tmp_path / "anyon"
    path.mkdir()
    os.chmod(path, 0o777)
    os.chown(path, 4242, 4242)
    with pytest.raises(TempDirError, match=r"belongs to uid 4242, not to this service user") as excinfo:
        ensure_temp_dir(path)
    assert "remove it" in str(excinfo.value)
    assert mode(path) == 0o777 and path.stat().st_uid == 4242  # left alone: not taken over by a chmod


def test_doctor_reports_a_symlinked_or_foreign_temp_dir(tmp_path, settings):
    from anyon.health import FAIL, check_temp_dir

    target = tmp_path / "attacker"
    target.mkdir(mode=0o700)
    (tmp_path / "anyon").symlink_to(target)
    settings.ANYON_TEMP_DIR = tmp_path / "anyon"
    check = check_temp_dir()
    assert check.status == FAIL and "symlink" in check.detail and "rm -rf" in check.fix
    if os.geteuid() == 0:
        foreign = tmp_path / "foreign"
        foreign.mkdir(mode=0o700)
        os.chown(foreign, 4242, 4242)
        settings.ANYON_TEMP_DIR = foreign
        check = check_temp_dir()
        assert check.status == FAIL and "belongs to uid 4242" in check.detail


def readable_by_everyone(path: pathlib.Path) -> bool:
    """Whether another uid can run or read ``path``: every folder above it searchable by all, itself readable."""
    path = path.resolve()
    return bool(path.stat().st_mode & stat.S_IROTH) and all(
        parent.stat().st_mode & stat.S_IXOTH for parent in path.parents
    )


def runtime_for_another_uid(folder: pathlib.Path) -> tuple[str, str]:
    """An interpreter and a PYTHONPATH that a process of another uid can read wherever the checkout and the virtualenv
    live (a clone in root's 0700 folder is not readable by uid 4243): copies of Django, asgiref and the modules the
    worker code below imports, in ``folder``; this interpreter's binary when others may run it, else Debian's."""
    lib = folder / "lib"
    import asgiref
    import django

    import execution.attempts.secret_dir
    import shared

    for package in (django, asgiref, shared):
        shutil.copytree(pathlib.Path(package.__file__).parent, lib / package.__name__)
    (lib / "execution/attempts").mkdir(parents=True)
    (lib / "execution/__init__.py").touch()
    (lib / "execution/attempts/__init__.py").touch()
    shutil.copy(execution.attempts.secret_dir.__file__, lib / "execution/attempts/secret_dir.py")
    for path in [folder, *folder.rglob("*")]:
        os.chmod(path, 0o755 if path.is_dir() else 0o644)
    python = pathlib.Path(sys.executable)
    return (str(python) if readable_by_everyone(python) else "/usr/bin/python3"), str(lib)


@as_root
@pytest.mark.skipif(not shutil.which("setpriv"), reason="setpriv (util-linux) runs the worker as another uid")
def test_a_worker_with_cap_chown_only_hands_the_secret_dir_over_and_removes_it(tmp_path_factory):
    """A worker that is neither root nor the container uid, with CAP_CHOWN and no other capability (systemd
    AmbientCapabilities=CAP_CHOWN): the dir and files end up the container uid's, and removal still works."""
    parent = pathlib.Path(tempfile.mkdtemp(prefix="anyon-capchown-"))  # outside root's 0700 pytest folder
    os.chmod(parent, 0o755)
    python, pythonpath = runtime_for_another_uid(parent / "runtime")
    temp = parent / "t"
    temp.mkdir(mode=0o700)
    os.chown(temp, 4243, 4243)
    setup = textwrap.dedent(
        f"""
        import os, pathlib, stat, sys
        from django.conf import settings
        settings.configure(ANYON_TEMP_DIR=pathlib.Path({str(temp)!r}), ANYON_CONTAINER_UID=61001,
                           ANYON_CONTAINER_GID=61001)
        from shared.tempdir import can_hand_over, has_cap_chown
        from execution.attempts.secret_dir import remove_secret_dir, write_secret_dir
        assert os.geteuid() == 4243 and has_cap_chown() and can_hand_over(61001)
        """
    )

    def as_worker(code: str) -> str:
        run = subprocess.run(
            ["setpriv", "--reuid=4243", "--regid=4243", "--clear-groups", "--inh-caps=-all,+chown",
             "--ambient-caps=+chown", python, "-S", "-c", setup + code],
            cwd=parent, env={"PYTHONPATH": pythonpath, "PATH": "/usr/bin:/bin"},
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert run.returncode == 0, run.stderr[-2000:]
        return run.stdout.strip()

    try:
        assert as_worker('print(write_secret_dir(5, {"github_token": "ghp_" + "c" * 36}))') == str(
            temp / "cloud-secrets/5"
        )
        folder, file = temp / "cloud-secrets/5", temp / "cloud-secrets/5/github_token"
        assert (folder.stat().st_uid, mode(folder), file.stat().st_uid, mode(file)) == (61001, 0o700, 61001, 0o400)
        assert as_worker("print(remove_secret_dir(5))") == "True" and not folder.exists()
    finally:
        shutil.rmtree(parent)
