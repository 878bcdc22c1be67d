"""The scan on a Dask cluster: the same answer as the single-process scan, with fingerprinting and the exact
hash search spread over the workers (the `dask` extra).

Nothing here is imported unless a cluster is asked for (`scan(..., cluster=...)`, `dupaudit scan --cluster`), so
the core install and `dupaudit --help` never load Dask. See docs/scale.md.
"""

from __future__ import annotations

from .client import CLUSTER_ENV, connect, open_cluster
from .runner import WORKDIR_ENV, DaskRunner

__all__ = ["CLUSTER_ENV", "WORKDIR_ENV", "DaskRunner", "connect", "open_cluster"]
