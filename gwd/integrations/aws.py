"""AWS service integration: the request (after its template) becomes a signed call to an AWS service.

How the service is spoken to comes from botocore's model, read at config
load (:mod:`gwd.config.aws`): a JSON-protocol service (DynamoDB, SQS,
Kinesis) gets ``POST /`` with ``X-Amz-Target: <prefix>.<Action>`` and
``Content-Type: application/x-amz-json-1.0``; a query-protocol one (SNS)
a form body starting ``Action=...&Version=...``, the template's output
(itself form-encoded) after it; a REST one (S3) the configured method and
path.  Every call is signed with Signature Version 4 by botocore's own
signer.  The service's answer (status, ``Content-Type``, body) is the
integration's response, for the route's integration responses to map.

Credentials are resolved when the route is built, in each worker; those
from a profile may refresh themselves (botocore's refreshable
credentials), and each call signs with their current frozen value.  They
never reach a log line: only the service, action and status do.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any
from urllib.parse import quote

from gwd.config.model import AwsCredentials, AwsIntegration, RouteConfig, StageConfig
from gwd.config.values import parse_backend_uri
from gwd.http.message import Response
from gwd.http.upstream import UpstreamConnection, UpstreamError
from gwd.pipeline.errors import GatewayError, whole_body
from gwd.pipeline.exchange import Exchange
from gwd.pipeline.handler import Handler
from gwd.pipeline.params import split_params
from gwd.pipeline.resources import Resources

log = logging.getLogger("gwd.aws")

TIMED_OUT = GatewayError(504, "Endpoint request timed out", response_type="INTEGRATION_TIMEOUT")
BAD_GATEWAY = GatewayError(502, "Bad Gateway", response_type="INTEGRATION_FAILURE")
MAX_RESPONSE = 10 * 1024 * 1024
"""The most bytes of a service's answer gwd reads (AWS's own payload limit); more is a 502."""
_SEGMENT_SAFE = "!$&'()*+,;=:@-._~"
_PASSED_HEADERS = (b"content-type", b"x-amzn-requestid", b"x-amz-request-id", b"x-amzn-errortype", b"etag", b"last-modified")
"""The service's headers the integration response keeps (the rest are the service's own business)."""


def credentials_of(config: AwsCredentials) -> Any:
    """The botocore credentials an integration signs with (read now from the environment or the profile)."""
    from botocore.credentials import Credentials
    from botocore.session import Session

    if config.source == "profile":
        found = Session(profile=config.profile).get_credentials()
        if found is None:
            raise RuntimeError(f"no credentials for the profile {config.profile!r}")
        return found
    if config.source == "variables":
        assert config.access_key_id_env is not None and config.secret_access_key_env is not None
        token = os.environ.get(config.session_token_env) if config.session_token_env else None
        return Credentials(os.environ[config.access_key_id_env], os.environ[config.secret_access_key_env], token)
    return Credentials(os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"], os.environ.get("AWS_SESSION_TOKEN"))


def build(route: RouteConfig, stage: StageConfig, resources: Resources) -> Handler:
    """A handler calling the route's AWS service with each request's (templated) body."""
    # botocore takes a quarter of a second to import: only workers serving an aws route pay it.
    from botocore.auth import S3SigV4Auth, SigV4Auth
    from botocore.awsrequest import AWSRequest

    config = route.integration
    assert isinstance(config, AwsIntegration)
    endpoint = parse_backend_uri(config.endpoint)
    pool = resources.pools.get(endpoint.scheme, endpoint.host, endpoint.port, config.tls if endpoint.scheme == "https" else None)
    credentials = credentials_of(config.credentials)
    signer_type = S3SigV4Auth if config.signing_name == "s3" else SigV4Auth
    base_url = config.endpoint
    default_port = 443 if endpoint.scheme == "https" else 80
    host = endpoint.host if endpoint.port == default_port else f"{endpoint.host}:{endpoint.port}"
    fixed_headers: dict[str, str] = {"Host": host}
    if config.protocol == "json":
        fixed_headers["X-Amz-Target"] = f"{config.target}.{config.action}"
        fixed_headers["Content-Type"] = f"application/x-amz-json-{config.json_version}"
    elif config.protocol == "query":
        fixed_headers["Content-Type"] = "application/x-www-form-urlencoded; charset=utf-8"
    query_prefix = f"Action={config.action}&Version={config.target}".encode()
    path_parts = split_params(config.path, route.key.param_names) if config.path is not None else ["/"]
    what = f"{config.service} {config.action or config.method + ' ' + (config.path or '')}"
    max_body = resources.max_body

    def target_path(exchange: Exchange) -> str:
        if len(path_parts) == 1:
            return path_parts[0]
        params = exchange.path_params
        return "".join(quote(params[part], safe=_SEGMENT_SAFE) if i % 2 else part for i, part in enumerate(path_parts))

    def signed_head(exchange: Exchange, body: bytes) -> bytes:
        headers = dict(fixed_headers)
        if config.protocol.startswith("rest"):
            content_type = exchange.request.headers.text(b"content-type")
            if content_type and body:
                headers["Content-Type"] = content_type
        path = target_path(exchange)
        request = AWSRequest(method=config.method, url=base_url + path, data=body, headers=headers)
        signer_type(credentials.get_frozen_credentials(), config.signing_name, config.region).add_auth(request)
        lines = [f"{config.method} {path} HTTP/1.1\r\n".encode()]
        lines += [f"{name}: {value}\r\n".encode("latin-1") for name, value in request.headers.items()]
        lines.append(b"Content-Length: %d\r\nX-Request-Id: %b\r\n\r\n" % (len(body), exchange.request_id.encode()))
        return b"".join(lines)

    async def call(exchange: Exchange) -> Response:
        body = await whole_body(exchange.request, max_body)
        if config.protocol == "query":
            body = query_prefix + b"&" + body if body else query_prefix
        head = signed_head(exchange, body)
        connection = pool.take_idle()
        reused = connection is not None
        sent_at = time.perf_counter()
        try:
            while True:
                if connection is None:
                    connection = await pool.connect(config.connect_timeout)
                try:
                    connection.send_head(head, False, config.timeout)
                    await connection.send_body(body)
                    answer = await connection.read_head()
                    break
                except UpstreamError as error:
                    # An idle connection the service closed just as it was reused: nothing reached it, try once more.
                    if not (error.kind == "reset" and reused and not connection.received_any):
                        raise
                    connection.close()
                    connection, reused = None, False
            exchange.integration_latency = int((time.perf_counter() - sent_at) * 1_000_000) / 1000
            content = await _read_answer(connection)
        except UpstreamError as error:
            if connection is not None:
                connection.close()
            exchange.integration_error = error.kind
            log.warning("request %s: %s failed: %s", exchange.request_id, what, error)
            if error.kind == "timeout":
                raise TIMED_OUT from None
            raise BAD_GATEWAY from None
        except BaseException:
            if connection is not None:
                connection.close()
            raise
        if answer.status >= 400:
            log.info("request %s: %s answered %d", exchange.request_id, what, answer.status)
        lines = b"".join(
            name + b": " + value + b"\r\n" for lowered, (name, value) in zip(answer.names, answer.headers) if lowered in _PASSED_HEADERS
        )
        return Response(answer.status, lines, content)

    return call


async def _read_answer(connection: UpstreamConnection) -> bytes:
    """The service's whole answer body (at most MAX_RESPONSE bytes); the connection goes back to its pool."""
    body = connection.complete_body()
    if body is None:
        parts, size = [], 0
        while (chunk := await connection.read_body()) is not None:
            size += len(chunk)
            if size > MAX_RESPONSE:
                raise UpstreamError("protocol", f"the answer passed {MAX_RESPONSE} bytes")
            parts.append(chunk)
        body = b"".join(parts)
    connection.release()
    return body
