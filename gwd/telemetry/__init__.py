"""What a daemon tells its operator about the requests it served:
``accesslog`` (one JSON line per request), ``metrics`` (a worker's counts,
batched) and ``prometheus`` (prometheus-client's multiprocess files and
the daemon's one exposition)."""
