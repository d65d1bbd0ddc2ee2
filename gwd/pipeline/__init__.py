"""The request pipeline: what a worker does with a parsed request until its response is written.

- ``gateway.py``: the entry, around every route: request id, route match
  (``routing.py``), the route's handler, errors rendered as responses
  (by the config's gateway responses, ``gatewayresponses.py``), access log
  and metrics.
- ``chain.py``: each route's handler, assembled at config load from the
  stages (:mod:`gwd.stages`) and its integration (:mod:`gwd.integrations`).
- What stages and integrations share: ``exchange.py`` (one request and what
  was learned about it), ``handler.py`` (the type every stage and
  integration returns), ``errors.py`` (how a stage refuses), ``resources.py``
  (what one config generation's handlers share), and request facts
  (``clientip.py``, ``clientcert.py``, ``tracing.py``, ``params.py``).

Stages and integrations import those shared modules, never ``gateway`` or
``chain``.  The pipeline knows HTTP (:mod:`gwd.http`) and config, and
nothing of processes or signals.
"""
