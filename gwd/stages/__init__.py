"""The stages a request passes before its integration, one module each, in the order it meets them:

``compression`` (the response the client gets: gzip or Brotli) ->
``policy`` (resource policy, client certificate subject) -> ``authorization``
(JWT or request authorizer, :mod:`gwd.authorizers`) -> ``apikeys`` ->
``throttle`` (buckets and quotas) -> ``validation`` (required
parameters, body models) -> ``cache`` (response cache) -> ``mapping``
(request templates and integration responses, round a non-proxy
integration) -> ``parameters`` (parameter mapping).

The contract of a stage.  A stage module has one builder, run once per
route and stage at config load by :mod:`gwd.pipeline.chain`::

    build(route: RouteConfig, stage: StageConfig, resources: Resources, next_handler: Handler) -> Handler

- ``build`` validates and precomputes what the route needs (patterns,
  header lines, refusals), so a request pays only for the check itself; it
  returns ``next_handler`` unchanged when the route does not use the stage,
  so an unused stage costs nothing per request.
- The handler it returns reads the request from the
  :class:`~gwd.pipeline.exchange.Exchange` (``exchange.request`` is gwd's
  own parsed request: a test makes one without a socket) and records what
  it learned there (``api_key``, ``claims``, header lines for the response
  or the backend); ``mapping`` alone replaces ``exchange.request`` (with
  its template's output as the body) and maps the response it gets back;
  ``compression`` alone re-encodes the response's body.
- It refuses by raising :class:`~gwd.pipeline.errors.GatewayError`, built
  at config load; the gateway renders, logs and counts it.  Otherwise it
  calls ``next_handler`` and returns what that returned (``mapping`` and
  ``compression``: changed as they say).
- A handler that needs no waiting returns the next handler's result as it
  is, a :class:`~gwd.http.message.Response` or an awaitable of one, so a
  chain of such stages in front of a cache hit or a mock answers without a
  task; one that must wait (a Redis call, an authorizer) is a coroutine
  function that awaits the next result when it is awaitable.
- What stages share lives in :class:`~gwd.pipeline.resources.Resources`;
  a stage imports no other stage.

A new stage is a module here and one entry in ``gwd.pipeline.chain.STAGES``.
"""
