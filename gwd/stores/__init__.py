"""Where state that outlives one request lives, and how it is shared between workers and daemons:
``buckets`` (token buckets in shared memory), ``limiters`` (those buckets,
or Redis), ``cachestore`` (cached responses in memory or Redis),
``keystore`` (API keys, usage and cache flushes in SQLite), ``outage``
(what a Redis-backed store does while Redis is down), ``invocations``
(requests running per function and upstream, in shared memory), ``health``
(upstream targets' health, in shared memory) and ``rows`` (how those two
find a name's row).  Stores know nothing
of HTTP: a stage turns what they answer into a response."""
