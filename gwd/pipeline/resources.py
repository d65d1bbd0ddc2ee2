"""What a worker's route handlers share: backend pools, the shared buckets, trusted proxies."""

from __future__ import annotations

from dataclasses import dataclass

from gwd.buckets import BucketTable
from gwd.pipeline.clientip import Networks
from gwd.pipeline.upstream import UpstreamPools


@dataclass(frozen=True, slots=True)
class Resources:
    pools: UpstreamPools
    buckets: BucketTable
    trusted_proxies: Networks
