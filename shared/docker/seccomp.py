"""The seccomp profile of attempt containers (docs/ARCHITECTURE.md, "Container hardening")."""

from __future__ import annotations

import functools
import json

#: ``clone`` flags that make a namespace (CLONE_NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET).
CLONE_NAMESPACE_FLAGS = 0x7E020000
#: AF_UNIX, AF_INET, AF_INET6, AF_NETLINK (interface lists).
SOCKET_FAMILIES = (1, 2, 10, 16)
#: ``personality``: Linux itself, and the query (0xffffffff).
PERSONALITIES = (0x0, 0xFFFFFFFF)
ENOSYS = 38

#: What a process may call, by what it is for. A name the engine's architecture lacks (``arch_prctl`` on aarch64,
#: ``open`` there too) or its seccomp library does not know yet is skipped by the engine.
ALLOWED: dict[str, tuple[str, ...]] = {
    "files": (
        "access", "chdir", "chmod", "chown", "close", "close_range", "copy_file_range", "creat", "dup", "dup2",
        "dup3", "faccessat", "faccessat2", "fadvise64", "fallocate", "fchdir", "fchmod", "fchmodat", "fchmodat2",
        "fchown", "fchownat", "fcntl", "fdatasync", "flock", "fstat", "fstatfs", "fsync", "ftruncate",
        "futimesat", "getcwd", "getdents", "getdents64", "lchown", "link", "linkat", "lseek", "lstat", "mkdir",
        "mkdirat", "mknod", "mknodat", "newfstatat", "open", "openat", "openat2", "pread64", "preadv", "preadv2",
        "pwrite64", "pwritev", "pwritev2", "read", "readahead", "readlink", "readlinkat", "readv", "rename",
        "renameat", "renameat2", "rmdir", "sendfile", "splice", "stat", "statfs", "statx", "symlink",
        "symlinkat", "sync", "sync_file_range", "syncfs", "tee", "truncate", "umask", "unlink", "unlinkat",
        "utime", "utimensat", "utimes", "vmsplice", "write", "writev", "cachestat",
    ),
    "extended attributes": (
        "fgetxattr", "flistxattr", "fremovexattr", "fsetxattr", "getxattr", "lgetxattr", "listxattr",
        "llistxattr", "lremovexattr", "lsetxattr", "removexattr", "setxattr", "getxattrat", "listxattrat",
        "removexattrat", "setxattrat",
    ),
    "memory": (
        "brk", "madvise", "membarrier", "memfd_create", "mincore", "mlock", "mlock2", "mlockall", "mmap",
        "mprotect", "mremap", "msync", "munlock", "munlockall", "munmap", "pkey_alloc", "pkey_free",
        "pkey_mprotect", "remap_file_pages", "map_shadow_stack", "mseal",
    ),
    "processes": (
        "arch_prctl", "capget", "capset", "execve", "execveat", "exit", "exit_group", "fork", "get_robust_list",
        "get_thread_area", "getpgid", "getpgrp", "getpid", "getppid", "getpriority", "getrlimit", "getrusage",
        "getsid", "gettid", "ioprio_get", "ioprio_set", "kill", "pidfd_open", "pidfd_send_signal", "prctl",
        "prlimit64", "rseq", "sched_get_priority_max", "sched_get_priority_min", "sched_getaffinity",
        "sched_getattr", "sched_getparam", "sched_getscheduler", "sched_rr_get_interval", "sched_setaffinity",
        "sched_setattr", "sched_setparam", "sched_setscheduler", "sched_yield", "seccomp", "set_robust_list",
        "set_thread_area", "set_tid_address", "setpgid", "setpriority", "setrlimit", "setsid", "tgkill", "tkill",
        "vfork", "wait4", "waitid", "process_mrelease",
    ),
    "identity": (
        "getegid", "geteuid", "getgid", "getgroups", "getresgid", "getresuid", "getuid", "setfsgid", "setfsuid",
        "setgid", "setgroups", "setregid", "setresgid", "setresuid", "setreuid", "setuid",
    ),
    "signals": (
        "alarm", "pause", "restart_syscall", "rt_sigaction", "rt_sigpending", "rt_sigprocmask", "rt_sigqueueinfo",
        "rt_sigreturn", "rt_sigsuspend", "rt_sigtimedwait", "rt_tgsigqueueinfo", "sigaltstack", "signalfd",
        "signalfd4",
    ),
    "time": (
        "adjtimex", "clock_getres", "clock_gettime", "clock_nanosleep", "getitimer", "gettimeofday", "nanosleep",
        "setitimer", "time", "timer_create", "timer_delete", "timer_getoverrun", "timer_gettime", "timer_settime",
        "timerfd_create", "timerfd_gettime", "timerfd_settime", "times",
    ),
    "waiting": (
        "epoll_create", "epoll_create1", "epoll_ctl", "epoll_pwait", "epoll_pwait2", "epoll_wait", "eventfd",
        "eventfd2", "futex", "futex_requeue", "futex_wait", "futex_waitv", "futex_wake", "inotify_add_watch",
        "inotify_init", "inotify_init1", "inotify_rm_watch", "io_cancel", "io_destroy",
        "io_getevents", "io_pgetevents", "io_setup", "io_submit", "pipe", "pipe2", "poll", "ppoll", "pselect6",
        "select",
    ),
    "sockets (the family is checked below)": (
        "accept", "accept4", "bind", "connect", "getpeername", "getsockname", "getsockopt", "listen", "recvfrom",
        "recvmmsg", "recvmsg", "sendmmsg", "sendmsg", "sendto", "setsockopt", "shutdown", "socketpair",
    ),
    "System V and POSIX IPC": (
        "mq_getsetattr", "mq_notify", "mq_open", "mq_timedreceive", "mq_timedsend", "mq_unlink", "msgctl",
        "msgget", "msgrcv", "msgsnd", "semctl", "semget", "semop", "semtimedop", "shmat", "shmctl", "shmdt",
        "shmget",
    ),
    "about the system": ("getcpu", "getrandom", "ioctl", "sysinfo", "uname", "landlock_add_rule",
                         "landlock_create_ruleset", "landlock_restrict_self"),
}  # fmt: skip


def allowed_names() -> list[str]:
    return sorted({name for names in ALLOWED.values() for name in names})


def profile() -> dict:
    """The profile in the engine's JSON form. No architecture is named, so the filter admits the native one only."""
    allow = "SCMP_ACT_ALLOW"
    return {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 1,  # EPERM, as for a capability the process lacks
        "syscalls": [
            {"names": allowed_names(), "action": allow},
            {
                "names": ["clone"],
                "action": allow,
                "args": [{"index": 0, "value": CLONE_NAMESPACE_FLAGS, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}],
            },
            {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS},
            *(
                {"names": ["socket"], "action": allow, "args": [{"index": 0, "value": family, "op": "SCMP_CMP_EQ"}]}
                for family in SOCKET_FAMILIES
            ),
            *(
                {"names": ["personality"], "action": allow, "args": [{"index": 0, "value": p, "op": "SCMP_CMP_EQ"}]}
                for p in PERSONALITIES
            ),
        ],
    }


@functools.cache
def profile_json() -> str:
    """What goes into the container's ``seccomp=`` security option (the engine takes the profile itself)."""
    return json.dumps(profile(), separators=(",", ":"))
