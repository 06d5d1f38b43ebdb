"""Start the IPython kernel of a sandbox: ``python3 -m rlm_kernel CONNECTION_FILE``.

History is off (the root filesystem is read-only and nothing should persist)
and the kernel binds its ipc sockets where the connection file says, in the
session directory the host can reach.
"""

import sys

from ipykernel.kernelapp import IPKernelApp


def main() -> None:
    app = IPKernelApp.instance()
    app.initialize(
        [
            "-f", sys.argv[1],
            "--HistoryManager.enabled=False",
            "--IPKernelApp.quiet=True",
            "--InteractiveShell.colors=NoColor",
        ]
    )
    app.start()


if __name__ == "__main__":
    main()
