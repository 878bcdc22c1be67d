"""Reaching a Dask cluster: `local:N` starts a LocalCluster of N worker processes, an address connects."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from ..errors import InputError, MissingExtraError

if TYPE_CHECKING:
    from distributed import Client

CLUSTER_ENV = "DUPAUDIT_CLUSTER"  # the cluster spec when --cluster is not given
CONNECT_TIMEOUT_S = 10  # a scheduler that does not answer in this time is reported as unreachable
_LOCAL = re.compile(r"^local(?::(\d+))?$")


def require_dask() -> None:
    try:
        import dask  # noqa: F401
        import distributed  # noqa: F401
    except ImportError as exc:
        raise MissingExtraError("dask", "the cluster scan (--cluster)") from exc


def connect(spec: str) -> Client:
    """A Client for `spec`: `local` or `local:N` (a LocalCluster of N single-threaded worker processes, N
    defaulting to the CPU count) or a scheduler address such as `tcp://host:8786`."""
    require_dask()
    from distributed import Client, LocalCluster

    spec = spec.strip()
    local = _LOCAL.match(spec)
    if local:
        workers = int(local.group(1)) if local.group(1) else None
        if workers is not None and workers < 1:
            raise InputError(f"cluster {spec!r}: local:N needs at least one worker")
        # one thread per worker: fingerprinting is CPU-bound Python and numpy; processes give real parallelism
        cluster = LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0", silence_logs=50
        )
        return Client(cluster, set_as_default=False)
    if "://" not in spec and not re.match(r"^[\w.-]+:\d+$", spec):
        raise InputError(f"cluster {spec!r}: give local, local:N or a scheduler address such as tcp://host:8786")
    try:
        return Client(spec, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise InputError(
            f"cluster {spec}: no Dask scheduler answered within {CONNECT_TIMEOUT_S} s ({type(exc).__name__}); "
            "start one with `dask scheduler` or check the address"
        ) from exc


@contextmanager
def open_cluster(spec: str) -> Iterator[Client]:
    """connect(spec) for the length of a `with` block; a LocalCluster started here is shut down after it."""
    client = connect(spec)
    try:
        yield client
    finally:
        cluster = client.cluster if _LOCAL.match(spec.strip()) else None
        client.close()
        if cluster is not None:
            cluster.close()
