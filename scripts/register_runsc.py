"""Register gVisor's runsc with Docker the way rlm-host needs it (idempotent).

Merges into /etc/docker/daemon.json:
    "runtimes": {"runsc": {"path": "/usr/bin/runsc",
                           "runtimeArgs": ["--network=none", "--host-uds=all", "--oci-seccomp"]}}
--network=none: no network stack at all inside the sandbox.
--host-uds=all: the kernel binds its ipc sockets in the session directory and
connects to the host's RPC socket there; only that directory is mounted.
--oci-seccomp: apply the container's seccomp profile inside the sandbox too. Without it runsc
ignores the profile, and gVisor's own kernel lets uid 1000 create user namespaces (and gain every
capability inside them), set up io_uring and ptrace its children, all of which the profile denies.

Prints "changed" when it wrote the file (dockerd then needs a SIGHUP), else "unchanged".
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

ENTRY = {"path": "/usr/bin/runsc", "runtimeArgs": ["--network=none", "--host-uds=all", "--oci-seccomp"]}


def main(path: Path = Path("/etc/docker/daemon.json")) -> None:
    config = json.loads(path.read_text()) if path.is_file() and path.read_text().strip() else {}
    entry = {**ENTRY, "path": shutil.which("runsc") or ENTRY["path"]}
    if config.get("runtimes", {}).get("runsc") == entry:
        print("unchanged")
        return
    config.setdefault("runtimes", {})["runsc"] = entry
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config, indent=2) + "\n")
    print("changed")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("/etc/docker/daemon.json"))
