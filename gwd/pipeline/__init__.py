"""The request pipeline a worker runs: routing, stages, integrations, access log.

It knows HTTP and config, and nothing of processes or signals.
"""
