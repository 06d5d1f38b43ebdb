"""The Docker Engine connection, with its errors translated once.

Everything that talks to Docker gets its client here, so "Docker is not
running" is one clear message wherever it happens.
"""

from __future__ import annotations

import functools

import docker
from docker.errors import DockerException

from ..errors import DockerUnavailable
from ..settings import docker_host

FIX = ("start it (as root: `dockerd &`, or `systemctl start docker`) or point DOCKER_HOST at it; "
       "`rlm-host doctor` checks the set-up")


@functools.cache
def docker_client() -> docker.DockerClient:
    """A client for the local Docker Engine, checked with a ping."""
    try:
        client = docker.from_env(timeout=120)
        client.ping()
    except DockerException as exc:
        where = docker_host()
        raise DockerUnavailable(f"Docker Engine not reachable at {where}: {FIX}") from exc
    return client
