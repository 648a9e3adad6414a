"""The attempt containers' seccomp profile as data (shared/docker/seccomp.py); its effect on a real engine is in
tests/execution/runner/test_seccomp_docker.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from execution.attempts.containers import container_spec
from execution.hosts.pool import fingerprint as pool_fingerprint
from shared.docker import seccomp
from shared.docker.engine import hardening
from tests.fakes.docker_engine import FakeEngine

#: Kernel surfaces an agent has no business with; each must be missing from the unconditional allowlist.
NEVER = [
    "mount", "umount2", "pivot_root", "chroot", "unshare", "setns", "fsopen", "fsmount", "open_tree", "move_mount",
    "init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load", "reboot", "swapon",
    "bpf", "perf_event_open", "io_uring_setup", "io_uring_enter", "io_uring_register", "userfaultfd",
    "keyctl", "add_key", "request_key", "ptrace", "process_vm_readv", "process_vm_writev", "pidfd_getfd", "kcmp",
    "open_by_handle_at", "name_to_handle_at", "modify_ldt", "iopl", "ioperm", "settimeofday", "clock_settime",
    "acct", "syslog", "quotactl", "lookup_dcookie", "fanotify_init", "mbind", "set_mempolicy", "migrate_pages",
    "clone", "clone3", "socket", "personality",
]  # fmt: skip


def rules(name: str) -> list[dict]:
    return [rule for rule in seccomp.profile()["syscalls"] if name in rule["names"]]


def test_only_the_native_abi_is_admitted():
    """No architecture named: the engine builds the filter for its own ABI alone, so a 32-bit call is refused."""
    profile = seccomp.profile()
    assert "architectures" not in profile and "archMap" not in profile
    assert profile["defaultAction"] == "SCMP_ACT_ERRNO"


@pytest.mark.hostile
def test_dangerous_calls_are_not_allowed_unconditionally():
    for name in NEVER:
        assert name not in seccomp.allowed_names(), name
        for rule in rules(name):
            assert rule["action"] != "SCMP_ACT_ALLOW" or rule.get("args"), rule


def test_clone_may_not_make_namespaces_and_clone3_falls_back():
    (clone,) = rules("clone")
    (arg,) = clone["args"]
    assert arg["op"] == "SCMP_CMP_MASKED_EQ" and arg["valueTwo"] == 0
    for flag in (0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000, 0x40000000):  # NEW*
        assert arg["value"] & flag
    assert not arg["value"] & 0x00010000  # CLONE_THREAD: threads are made with clone
    (clone3,) = rules("clone3")
    assert clone3["action"] == "SCMP_ACT_ERRNO" and clone3["errnoRet"] == 38  # ENOSYS: libc uses clone


def test_sockets_of_four_families_only():
    allowed = sorted(rule["args"][0]["value"] for rule in rules("socket") if rule["action"] == "SCMP_ACT_ALLOW")
    assert allowed == [1, 2, 10, 16]  # unix, IPv4, IPv6, netlink; not vsock (40), AF_ALG (38), packet (17)


def test_what_programs_need_is_allowed():
    for name in ("read", "write", "openat", "execve", "fork", "wait4", "futex", "epoll_pwait", "connect", "mmap"):
        assert name in seccomp.allowed_names()


def test_the_engine_is_given_the_profile_itself():
    assert json.loads(seccomp.profile_json()) == seccomp.profile()
    ours = hardening(seccomp.profile_json())
    assert ours["security_opt"] == ["no-new-privileges", f"seccomp={seccomp.profile_json()}"]
    assert ours["cap_drop"] == ["ALL"]
    assert hardening(None)["security_opt"] == ["no-new-privileges"]  # the engine's default profile


def test_the_setting_chooses_the_profile_of_attempt_containers(settings, tmp_path):
    def spec():
        return container_spec(name="c", labels={}, volume="v", secret_dir=tmp_path, sealed_environment=None)

    assert spec().seccomp_profile == seccomp.profile_json()
    settings.ANYON_CONTAINER_SECCOMP = "engine"
    assert spec().seccomp_profile is None


def test_warm_containers_of_another_profile_are_replaced(settings):
    """The profile is part of what a warm container was made from: changing it retires the pool's containers."""
    engine = FakeEngine()
    made_with_ours = pool_fingerprint.fingerprint(engine)
    settings.ANYON_CONTAINER_SECCOMP = "engine"
    assert pool_fingerprint.fingerprint(engine) != made_with_ours


def test_a_mistyped_setting_stops_the_start():
    done = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "anyon.settings", "ANYON_CONTAINER_SECCOMP": "off"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "ANYON_CONTAINER_SECCOMP must be anyon or engine, not 'off'" in done.stderr
