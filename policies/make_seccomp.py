"""Derive ``seccomp-standard.json`` from Docker's default seccomp profile.

Docker's default profile (shipped by Debian in golang-github-docker-docker-dev)
is an allowlist that still lets through several kernel attack surfaces a
sandboxed Python kernel never needs: io_uring, userfaultfd, the keyring, ...
This script removes every name in ``DENIED`` from every allow rule, drops the
rules that only apply when a capability is granted (rlm-host drops them all),
and adds one explicit rule answering the denied calls with EPERM, so a probe
sees a clear "Operation not permitted" rather than a crash. ``socket`` is
allowed only for the address families in ``SOCKET_FAMILIES``; any other family
(AF_VSOCK, AF_ALG, AF_PACKET, ...) gets the default answer, EPERM. ``mknod`` and
``mknodat`` are allowed only for regular files, FIFOs and sockets; a character or
block device node gets EPERM (``MKNOD_TYPES``). Only each
architecture's native ABI is allowed (no 32-bit compat syscalls).

Run it by hand when Docker's profile changes; the output is committed, and
``tests/test_hardening.py`` proves what it denies.

    python3 policies/make_seccomp.py [DEFAULT_JSON] > policies/seccomp-standard.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

DEBIAN_DEFAULT = Path(
    "/usr/share/gocode/src/github.com/docker/docker/profiles/seccomp/default.json"
)

DENIED = sorted(
    {
        # async I/O rings: a large, often-exploited kernel surface
        "io_uring_setup", "io_uring_enter", "io_uring_register",
        # page-fault handling in user space: a classic race-widening primitive
        "userfaultfd",
        # kernel keyrings
        "keyctl", "add_key", "request_key",
        # eBPF and performance counters
        "bpf", "perf_event_open",
        # namespaces and mounts
        "unshare", "setns", "mount", "umount", "umount2", "pivot_root", "chroot",
        "fsopen", "fsconfig", "fsmount", "fspick", "move_mount", "open_tree",
        "mount_setattr", "open_by_handle_at", "name_to_handle_at",
        # looking into or moving between other processes
        "ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd",
        # kernel modules, kexec, machine-wide state
        "init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load",
        "acct", "quotactl", "swapon", "swapoff", "reboot", "syslog", "vhangup",
        "iopl", "ioperm", "settimeofday", "clock_settime", "lookup_dcookie",
        # the 32-bit socket multiplexer, whose arguments no filter can see; listed for the record:
        # what actually closes it is allowing native ABIs only (see ``derive``)
        "socketcall",
    }
)

# socket(2) families a kernel needs: Unix (ZeroMQ ipc, the RPC socket), IP (refused anyway:
# no interface but lo) and netlink (glibc's interface queries). The rest (AF_VSOCK, AF_ALG,
# AF_PACKET, AF_BLUETOOTH, ...) are kernel code with a history of local privilege escalations
# (AF_VSOCK: CVE-2021-26708) that Docker 20.10's profile lets any process reach.
SOCKET_FAMILIES = {"AF_UNIX": 1, "AF_INET": 2, "AF_INET6": 10, "AF_NETLINK": 16}
# mknod(2)/mknodat(2) only for the file types a program makes without privilege: regular files, FIFOs
# and sockets. runc refuses device nodes for lack of CAP_MKNOD, but gVisor does not ask for it (and does
# not see /tmp's nodev): under runsc uid 1000 could make a working node for any device gVisor has, e.g.
# /dev/null's (1,3). Character and block devices (and invalid types) get the default answer, EPERM.
S_IFMT = 0o170000
MKNOD_TYPES = {"0 (regular file)": 0, "S_IFREG": 0o100000, "S_IFIFO": 0o010000, "S_IFSOCK": 0o140000}
MKNOD_MODE_ARG = {"mknod": 1, "mknodat": 2}
FILTERED = {"socket", *MKNOD_MODE_ARG}

EPERM = 1


def derive(default: dict) -> dict:
    """Return our profile: Docker's, minus ``DENIED`` and capability-only rules."""
    rules = []
    for rule in default["syscalls"]:
        if rule.get("includes", {}).get("caps"):
            continue  # granted only with a capability; every capability is dropped
        names = [n for n in rule["names"] if n not in DENIED and n not in FILTERED]
        if names:
            rules.append({**rule, "names": names})
    rules.extend(_socket_rule(name, family) for name, family in SOCKET_FAMILIES.items())
    rules.extend(_mknod_rule(call, index, kind, bits)
                 for call, index in MKNOD_MODE_ARG.items() for kind, bits in MKNOD_TYPES.items())
    rules.append(
        {
            "names": DENIED,
            "action": "SCMP_ACT_ERRNO",
            "errnoRet": EPERM,
            "comment": "rlm-host: denied beyond Docker's default (policies/make_seccomp.py)",
        }
    )
    # native ABIs only: a 32-bit syscall (int 0x80 works from a 64-bit process) would reach the
    # whole compat layer, and libseccomp turns our socket() family filter into an unfiltered
    # socketcall(SYS_SOCKET) there (seen: AF_VSOCK through it); no program in the image needs it
    arches = [{**entry, "subArchitectures": []} for entry in default["archMap"]]
    return {**default, "archMap": arches, "defaultErrnoRet": EPERM, "syscalls": rules}


def _socket_rule(name: str, family: int) -> dict:
    return {"names": ["socket"], "action": "SCMP_ACT_ALLOW",
            "args": [{"index": 0, "value": family, "valueTwo": 0, "op": "SCMP_CMP_EQ"}],
            "comment": f"rlm-host: socket({name}) allowed; other families get EPERM"}


def _mknod_rule(call: str, index: int, kind: str, bits: int) -> dict:
    return {"names": [call], "action": "SCMP_ACT_ALLOW",
            "args": [{"index": index, "value": S_IFMT, "valueTwo": bits, "op": "SCMP_CMP_MASKED_EQ"}],
            "comment": f"rlm-host: {call}() of type {kind} allowed; device nodes get EPERM"}


def main(argv: list[str]) -> None:
    source = Path(argv[1]) if len(argv) > 1 else DEBIAN_DEFAULT
    json.dump(derive(json.loads(source.read_text())), sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main(sys.argv)
