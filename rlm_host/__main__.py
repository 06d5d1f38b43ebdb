"""``python -m rlm_host`` is the ``rlm-host`` command."""

from .cli import main

main()
