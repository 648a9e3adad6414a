"""A hostile agent against the seccomp profile of its container (shared/docker/seccomp.py), on the real engine."""

from __future__ import annotations

import platform
import struct

import pytest

from execution.models import AttemptStatus
from execution.runner import run_attempt
from tests.execution.conftest import custom, logs

pytestmark = [
    pytest.mark.docker,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(platform.machine() != "x86_64", reason="the 32-bit call below is x86 machine code"),
]


def elf_of(code: bytes) -> bytes:
    """A static x86_64 executable of one loadable segment holding ``code``."""
    base, header, segment = 0x400000, 64, 56
    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)
    ehdr = ident + struct.pack("<HHIQQQIHHHHHH", 2, 0x3E, 1, base + header + segment, header, 0, 0, header, segment,
                               1, 0, 0, 0)  # fmt: skip
    size = header + segment + len(code)
    return ehdr + struct.pack("<IIQQQQQQ", 1, 5, 0, base, base, size, size, 0x1000) + code


#: getpid through the 32-bit entry (int 0x80); exit 0 when it answered, 1 when it failed (native exit).
I386_GETPID = elf_of(
    bytes.fromhex(
        "b814000000"  # mov eax, 20 (i386 getpid)
        "cd80"  # int 0x80
        "85c0"  # test eax, eax
        "7804"  # js failed
        "31ff"  # xor edi, edi
        "eb05"  # jmp out
        "bf01000000"  # failed: mov edi, 1
        "b83c000000"  # out: mov eax, 60 (exit)
        "0f05"  # syscall
    )
)

PROBES = r"""
import ctypes, errno, os, socket, threading
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
def result(value):
    return "ok" if value >= 0 else errno.errorcode[ctypes.get_errno()]
def sock(family, kind=socket.SOCK_STREAM):
    try:
        socket.socket(family, kind).close()
        return "ok"
    except OSError as exc:
        return errno.errorcode[exc.errno]
print("io_uring_setup=" + result(libc.syscall(425, 1, ctypes.create_string_buffer(120))))
print("ptrace=" + result(libc.syscall(101, 3, 999999, 0, 0)))  # PEEKUSER of no such process: ESRCH if allowed
print("af_alg=" + sock(38, socket.SOCK_SEQPACKET))
print("af_vsock=" + sock(40))
print("af_unix=" + sock(socket.AF_UNIX))
print("af_inet=" + sock(socket.AF_INET))
pid = os.fork()
if pid == 0:
    os._exit(7)
print("fork=" + str(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])))
seen = []
thread = threading.Thread(target=lambda: seen.append(1)); thread.start(); thread.join()
print("thread=" + str(len(seen)))
"""


def probe_script() -> str:
    octal = "".join(f"\\{byte:03o}" for byte in I386_GETPID)
    return (
        f"printf '{octal}' > ~/i386 && chmod +x ~/i386; ~/i386; echo i386=$?; "
        "unshare -U true 2>/dev/null; echo unshare=$?; "
        f"python3 -c '{PROBES}'"
    )


def probed(world) -> dict[str, str]:
    attempt = world.attempt(plan=[custom("bash", "-c", probe_script())])
    assert run_attempt(attempt.pk) == AttemptStatus.SUCCEEDED, logs(attempt)
    return dict(line.split("=", 1) for line in logs(attempt).splitlines() if "=" in line and " " not in line)


@pytest.mark.hostile
def test_an_agent_gets_no_32_bit_calls_namespaces_or_odd_kernel_surfaces(world, settings):
    """The same probes in a container with the engine's default profile first: there the 32-bit call answers,
    so the refusal after it is the profile's doing."""
    settings.ANYON_CONTAINER_SECCOMP = "engine"
    assert probed(world)["i386"] == "0"
    settings.ANYON_CONTAINER_SECCOMP = "anyon"
    seen = probed(world)
    assert seen["i386"] == "159"  # 128 + SIGSYS: killed at the 32-bit entry
    assert seen["unshare"] != "0"
    for name in ("io_uring_setup", "ptrace", "af_alg", "af_vsock"):
        assert seen[name] == "EPERM", (name, seen)
    # What programs need still works: unix and IP sockets, processes and threads.
    assert (seen["af_unix"], seen["af_inet"], seen["fork"], seen["thread"]) == ("ok", "ok", "7", "1")
