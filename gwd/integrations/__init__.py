"""What answers a request once every stage has let it through, one module per integration type:
``mock`` (a configured response), ``proxy`` (an HTTP backend),
``function`` (a Lambda handler gwd runs) and ``aws`` (a signed call to an
AWS service).  A non-proxy integration (one with mapping keys) gets its
request through :mod:`gwd.stages.mapping` and answers it the same way.

The contract of an integration.  Its module has one builder, chosen by the
type of the route's ``integration`` config (``gwd.pipeline.chain.INTEGRATIONS``)
and run once per route and stage at config load::

    build(route: RouteConfig, stage: StageConfig, resources: Resources) -> Handler

- The handler is the innermost one: it calls no other handler, and answers
  every request with a :class:`~gwd.http.message.Response` (status, header
  lines, body bytes or a body stream), returned at once when it needs no
  waiting, else as an awaitable.
- A failure of what it calls is a :class:`~gwd.pipeline.errors.GatewayError`
  with the status a client of a gateway expects (502 for a bad or broken
  answer, 503 when no connection can be had, 504 for a timeout), with
  ``exchange.integration_error`` saying why; never a traceback to the
  client.
- It records ``exchange.integration_latency`` (milliseconds to the
  response head) for the access log and metrics.
- Stage variables and path parameters in its config are split at config
  load (:func:`gwd.pipeline.params.split_params`), not parsed per request.

A new integration is a module here, its config type in :mod:`gwd.config`,
and one entry in ``INTEGRATIONS``.
"""
