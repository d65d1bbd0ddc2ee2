"""The config's value types: frozen objects the runtime reads, and the names and header lists they rely on.

Nothing here reads files or validates; :mod:`gwd.config.reader` builds these
objects, and only from a config that passed every check.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Mapping

HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
ANY_METHOD = "ANY"
DEFAULT_STAGE = "$default"
DEFAULT_ROUTE = "$default"
HOP_BY_HOP_HEADERS = frozenset(
    {"connection", "keep-alive", "proxy-connection", "proxy-authenticate", "proxy-authorization", "te", "trailer",
     "transfer-encoding", "upgrade"}
)
"""RFC 9110 §7.6.1 and the fields every proxy treats as hop-by-hop: never forwarded, either way."""
GATEWAY_SET_HEADERS = frozenset(
    {"host", "content-length", "expect", "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "x-request-id",
     "via", "traceparent"}
)
"""What gwd itself writes into a backend request (framing, forwarding, tracing), replacing the client's."""
RESERVED_BACKEND_HEADERS = HOP_BY_HOP_HEADERS | GATEWAY_SET_HEADERS
"""Names no configured header (``claim_headers``, ...) may take: the backend would get them twice, or as hop-by-hop."""
API_KEY_HEADER = b"x-api-key"
"""Where a client sends its API key, as on AWS (lower-cased, as header lookups take it)."""
Networks = tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]


class ConfigError(Exception):
    """A config that must not be served; ``problems`` lists every reason."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class Address:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class ListenerTls:
    """HTTPS on the listening socket; paths are absolute."""

    cert: str
    key: str
    client_ca: str | None  # verifies client certificates
    client_auth: str  # "none", "optional" (verified when sent) or "require"


@dataclass(frozen=True, slots=True)
class ServerConfig:
    listen: Address
    workers: int
    drain_timeout: float
    keepalive_timeout: float
    backlog: int
    reuse_port: bool  # a listening socket per worker, the kernel balancing connections over them
    trusted_proxies: Networks
    upstream_keepalive: int
    state_dir: str
    tls: ListenerTls | None
    header_timeout: float  # a new connection's first request head must arrive within this
    body_timeout: float  # the longest pause in a request body being forwarded
    max_body: int  # request body bytes; more is 413
    user: str | None  # started as root: the user to become once the sockets are bound
    worker_timeout: float  # a worker silent this long (stuck event loop) is killed; 0: never
    max_connections: int  # client connections a worker holds at once; 0: as many as its descriptors allow
    function_threads: int  # threads per worker that run plain (not async) Python function handlers
    apis: tuple[str, ...] = ()  # the files of more APIs, found by [server] apis' paths and globs


@dataclass(frozen=True, slots=True)
class LogConfig:
    access: str
    level: str


@dataclass(frozen=True, slots=True)
class BasePathMapping:
    """A custom domain's base path (``""``, ``"v1"``, ``"v1/pets"``) and the API stage requests under it reach."""

    base_path: str
    api: str
    stage: str


@dataclass(frozen=True, slots=True)
class DomainConfig:
    """``[[domains]]``: a custom domain name (``*.example.com``: any one label more) and its base path mappings."""

    name: str  # lower-case, no trailing dot
    mappings: tuple[BasePathMapping, ...]
    tls: DomainTls | None = None  # its own certificate, chosen by SNI; None: [server] tls's


@dataclass(frozen=True, slots=True)
class DomainTls:
    """A custom domain's certificate, presented to clients that name the domain by SNI; paths are absolute."""

    cert: str
    key: str


@dataclass(frozen=True, slots=True)
class CorsConfig:
    """A ``cors`` table (the API's, or a route's own, which replaces it): what browsers on other origins may do."""

    allow_origins: tuple[str, ...]  # "https://app.example.com", or "*"
    allow_methods: tuple[str, ...]  # "*": whichever a preflight asks for
    allow_headers: tuple[str, ...]  # "*": whichever a preflight asks for
    expose_headers: tuple[str, ...]
    max_age: int  # seconds a browser may keep a preflight's answer; 0: no Access-Control-Max-Age
    allow_credentials: bool


@dataclass(frozen=True, slots=True)
class CompressionConfig:
    """The API's ``compression`` table: which responses gwd compresses, and how hard."""

    min_size: int  # bodies shorter than this go as they are
    encodings: tuple[str, ...]  # "br", "gzip": the server's preference, first on ties of the client's q-values
    types: tuple[str, ...]  # media type patterns: "text/*", "application/json", "application/*+json"
    gzip_level: int
    br_quality: int


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    enabled: bool
    per_key: bool  # a series per API key: off by default, since keys are many
    server_timing: bool  # a Server-Timing header on responses


@dataclass(frozen=True, slots=True)
class AdminConfig:
    listen: Address | None  # None: no admin listener


@dataclass(frozen=True, slots=True)
class Limit:
    """A token bucket: ``rate`` requests per second on average, bursts of up to ``burst``."""

    rate: float
    burst: int


@dataclass(frozen=True, slots=True)
class ClientLimit:
    """A token bucket per client; ``key`` is "ip", "header:NAME" or "claim:NAME" (an authorizer's claim or context)."""

    rate: float
    burst: int
    key: str


@dataclass(frozen=True, slots=True)
class ThrottleConfig:
    table_size: int
    backend: str  # "memory", or a redis:// URL shared by several daemons
    fail_open: bool  # with Redis down: serve (True) or answer 503 (False)


@dataclass(frozen=True, slots=True)
class CacheConfig:
    max_bytes: int  # per worker: responses past it evict the least recently used
    backend: str  # "memory", or a redis:// URL shared by every worker and daemon using it


@dataclass(frozen=True, slots=True)
class CachePolicy:
    """How a route's responses are cached (a stage's policy is its routes' default)."""

    ttl: float
    query: tuple[str, ...]  # query parameters in the key
    headers: tuple[str, ...]  # lower-cased request headers in the key (Accept-Encoding always)
    statuses: frozenset[int]
    per_identity: bool  # cache authenticated requests, one entry per caller
    respect_backend: bool  # honour the backend's max-age / s-maxage when shorter
    invalidation: str  # a client's Cache-Control: max-age=0: "require_key", "allow" or "ignore"


@dataclass(frozen=True, slots=True)
class BackendTls:
    """How gwd speaks TLS to an https backend; paths are absolute."""

    client_cert: str | None  # presented when the backend asks (mTLS)
    client_key: str | None
    ca: str | None  # verifies the backend; None: the system's CAs
    server_name: str | None  # SNI and the name checked in the backend's certificate; None: the URI's host
    insecure_skip_verify: bool = False


@dataclass(frozen=True, slots=True)
class StageConfig:
    name: str
    variables: Mapping[str, str]
    throttle: Limit | None = None  # the default for each of the stage's routes
    client_throttle: ClientLimit | None = None
    cache: CachePolicy | None = None
    backend_tls: BackendTls | None = None  # the default for the stage's https integrations
    allow: Networks = ()  # resource policy: client addresses let in (empty: all)...
    deny: Networks = ()  # ...and refused
    listen: tuple[Address, ...] = ()  # a private stage: served only on these addresses, and nothing else is


@dataclass(frozen=True, slots=True)
class Segment:
    """One path segment of a route key: a literal, a ``{param}`` or a greedy ``{proxy+}``."""

    text: str
    kind: str  # "literal" | "param" | "greedy"


@dataclass(frozen=True, slots=True)
class RouteKey:
    method: str  # an HTTP method, "ANY", or "$default" for the catch-all route
    segments: tuple[Segment, ...]

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(s.text for s in self.segments if s.kind != "literal")

    def __str__(self) -> str:
        if self.method == DEFAULT_ROUTE:
            return DEFAULT_ROUTE
        path = "/" + "/".join(
            s.text if s.kind == "literal" else "{" + s.text + ("+}" if s.kind == "greedy" else "}")
            for s in self.segments
        )
        return f"{self.method} {path}"


@dataclass(frozen=True, slots=True)
class TemplateSource:
    """A mapping template's text, and where it came from (a file, or the config key holding it) for messages."""

    text: str
    source: str


@dataclass(frozen=True, slots=True)
class IntegrationResponse:
    """How a non-proxy integration's answer becomes the client's response (AWS's integration response)."""

    selection_pattern: str | None  # a regex the whole status (a function's errorMessage) must match; None: the default
    status: int | None  # the client's status; None: the integration's own
    templates: tuple[tuple[str, TemplateSource], ...]  # (content type, template)
    headers: tuple[tuple[str, str], ...]  # (header, "'literal'" or "integration.response.header.NAME")
    content_handling: str | None = None  # "convert_to_text" (bytes to base64) or "convert_to_binary"; None: as it is


@dataclass(frozen=True, slots=True)
class IntegrationMapping:
    """What makes an integration non-proxy: request templates and integration responses."""

    request_templates: tuple[tuple[str, TemplateSource], ...]  # (content type, template)
    passthrough_behavior: str  # "when_no_match", "when_no_templates" or "never"
    responses: tuple[IntegrationResponse, ...]  # in order; at most one default (no selection_pattern)
    content_handling: str | None = None  # the request body: "convert_to_text", "convert_to_binary", or None: as it is


@dataclass(frozen=True, slots=True)
class ParameterRule:
    """One parameter mapping: what to do to which parameter, with what value."""

    action: str  # "append", "overwrite" or "remove"
    kind: str  # "header", "querystring", "path" (the whole path, or with ``name`` a path parameter) or "statuscode"
    name: str
    value: tuple[str, ...]  # literal text, and "$source" parts ("$request.header.x", "$context.requestId", ...)


@dataclass(frozen=True, slots=True)
class ParameterMapping:
    request: tuple[ParameterRule, ...]
    response: tuple[ParameterRule, ...]


@dataclass(frozen=True, slots=True)
class MockIntegration:
    status: int
    headers: tuple[tuple[str, str], ...]
    body: str
    delay: float
    mapping: IntegrationMapping | None = None


@dataclass(frozen=True, slots=True)
class HttpIntegration:
    uri: str  # a template: {param}, {proxy} and ${stageVariables.NAME}
    method: str | None  # None: the client's method
    timeout: float
    connect_timeout: float
    preserve_host: bool
    tls: BackendTls | None = None  # overrides the stage's backend_tls
    mapping: IntegrationMapping | None = None
    parameters: ParameterMapping | None = None


@dataclass(frozen=True, slots=True)
class BackendUri:
    """An http(s) URI split for the proxy; ``path`` may still hold ``{param}`` slots."""

    scheme: str
    host: str  # "" for an upstream
    port: int  # 0 for an upstream
    path: str
    query: str
    upstream: str | None = None  # ``http://upstream:NAME/...``: an [[upstreams]] entry's name


@dataclass(frozen=True, slots=True)
class FunctionIntegration:
    """A Lambda-style handler gwd runs itself, called with an AWS API Gateway event."""

    name: str  # the function's name: metrics, logs, its ARN, and what shares a concurrency limit
    handler: str  # as configured: "todos.get:handler" or AWS's "todos/get.handler"
    module: str  # the module to import from code_dir: "todos.get"
    function: str  # the callable's name in it
    file: str  # the module's file, found at load ("": a runtime process's command knows its handler)
    code_dir: str
    payload_format: str  # "1.0" or "2.0"
    timeout: float
    memory_mb: int
    concurrency: int  # invocations at once per daemon
    environment: tuple[tuple[str, str], ...]  # values may hold ${stageVariables.NAME}
    runtime: str = "python"  # "python": in the worker; "process": runtime processes speaking the Runtime API
    command: tuple[str, ...] = ()  # a runtime process's command; empty: the default for the handler's file
    min_instances: int = 0  # runtime processes per worker kept running
    max_instances: int = 2  # runtime processes per worker at most
    idle_timeout: float = 600.0  # runtime processes beyond min_instances idle this long are retired
    mapping: IntegrationMapping | None = None  # set: a non-proxy integration (the event is the request template's output)


@dataclass(frozen=True, slots=True)
class AwsCredentials:
    """Where an AWS integration's keys come from; the keys themselves are read by the integration, never kept here."""

    source: str  # "env" (the daemon's AWS_* variables), "profile" (a shared-credentials profile) or "variables"
    profile: str | None = None
    access_key_id_env: str | None = None  # "variables": the names of the variables holding them
    secret_access_key_env: str | None = None
    session_token_env: str | None = None


@dataclass(frozen=True, slots=True)
class AwsIntegration:
    """A call to an AWS service (or a compatible one) signed with Signature Version 4."""

    service: str  # botocore's name: "dynamodb", "sqs", "s3", ...
    action: str | None  # an operation of a JSON or query protocol service ("PutItem")
    path: str | None  # a REST protocol service's (S3's) path, with {param} slots
    method: str  # the HTTP method for ``path``; POST for actions
    region: str
    endpoint: str  # scheme://host[:port]; "": the service's own AWS endpoint for the region
    credentials: AwsCredentials
    timeout: float
    connect_timeout: float
    protocol: str  # the service's: "json", "query", "rest-json" or "rest-xml"
    target: str  # "json": the X-Amz-Target prefix ("DynamoDB_20120810"); "query": the API version
    json_version: str  # "json": the Content-Type's version ("1.0")
    signing_name: str  # the service name in the signature's scope
    tls: BackendTls | None = None
    mapping: IntegrationMapping | None = None


Integration = MockIntegration | HttpIntegration | FunctionIntegration | AwsIntegration


@dataclass(frozen=True, slots=True)
class UpstreamTarget:
    """One backend of an upstream, and its share of the traffic."""

    host: str
    port: int
    weight: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """When a failed attempt is tried again on another target."""

    attempts: int  # tries after the first
    on: frozenset[str]  # "connect-failure", "refused", "reset", "timeout", and statuses as "502", "503", "504"
    budget: float  # retries at most this share of the upstream's requests (0.2), past a small floor


@dataclass(frozen=True, slots=True)
class HealthCheck:
    """An upstream's active health check: a GET of ``path`` on each target, run once per daemon."""

    path: str
    interval: float
    timeout: float
    healthy_threshold: int  # consecutive passes that bring a target back
    unhealthy_threshold: int  # consecutive failures that take it out
    expect_status: frozenset[int]


@dataclass(frozen=True, slots=True)
class UpstreamConfig:
    """``[[upstreams]]``: backends that share a route's traffic, and how gwd keeps it off the failing ones."""

    name: str
    targets: tuple[UpstreamTarget, ...]
    scheme: str  # "http" or "https"
    tls: BackendTls | None
    algorithm: str  # "round_robin", "least_requests" or "consistent_hash"
    hash_on: str | None  # consistent_hash: "ip", "header:NAME", "cookie:NAME" or "path:NAME"
    eject_after: int  # consecutive failures (connect failures, 5xx, timeouts) that eject a target; 0: never
    eject_for: float  # the first ejection's length; each repeat doubles it
    max_ejected_percent: int  # at most this share of the targets is ejected at once
    slow_start: float  # a target back from ejection ramps up to its weight over this; 0: at once
    max_requests: int  # requests in flight to the upstream per daemon; more get 503 at once; 0: no limit
    retries: RetryPolicy | None
    health: HealthCheck | None = None


@dataclass(frozen=True, slots=True)
class Model:
    """A JSON Schema (draft 4) from ``[models]``, as canonical JSON text."""

    name: str
    schema: str
    source: str  # its file, or the config key holding it


@dataclass(frozen=True, slots=True)
class RequestValidation:
    """What a route's request validator checks before the integration."""

    body: bool  # against the model for the request's media type
    params: bool  # the required parameters are there
    models: tuple[tuple[str, Model], ...]  # (media type or "$default", model)
    required: tuple[tuple[str, str], ...]  # ("querystring" | "header" | "path", name)


@dataclass(frozen=True, slots=True)
class GatewayResponseConfig:
    """``[gateway_responses.TYPE]``: the API's own answer for one type of gateway error."""

    response_type: str
    status: int | None  # None: the error's own
    headers: tuple[tuple[str, str], ...]
    template: TemplateSource | None  # None: the error's own body


@dataclass(frozen=True, slots=True)
class RouteConfig:
    key: RouteKey
    integration: Integration
    throttle: Limit | None = None  # overrides the stage's
    client_throttle: ClientLimit | None = None
    api_key_required: bool = False
    cache: CachePolicy | None = None  # overrides the stage's; None: the stage's
    cache_disabled: bool = False  # ``cache = { enabled = false }``: not even the stage's
    allow: Networks = ()  # applies together with the stage's lists
    deny: Networks = ()
    client_cert_subject: str | None = None  # a regex the verified client certificate's subject must match
    authorizer: str | None = None  # the name of an [[authorizers]] entry
    scopes: tuple[str, ...] = ()  # a JWT authorizer's token must grant all of these
    validation: RequestValidation | None = None
    cors: CorsConfig | None = None  # replaces the API's; None: the API's


@dataclass(frozen=True, slots=True)
class UsagePlan:
    name: str
    throttle: Limit | None  # per API key of the plan
    quota: Quota | None


@dataclass(frozen=True, slots=True)
class Quota:
    """At most ``limit`` requests per API key per UTC ``period`` (day, week from Monday, month)."""

    limit: int
    period: str


@dataclass(frozen=True, slots=True)
class JwtAuthorizer:
    """Bearer tokens (JWT) checked against an issuer's keys."""

    name: str
    issuer: str
    audience: tuple[str, ...]
    algorithms: tuple[str, ...]
    jwks_uri: str | None  # the issuer's key set, fetched and cached
    public_keys: tuple[str, ...]  # PEM files of static public keys (instead of, or besides, jwks_uri)
    secret_file: str | None  # an HS256 secret; only with "HS256" in algorithms
    leeway: float
    header: str  # where the token is: "Authorization" (as "Bearer TOKEN") or another header (the token alone)
    claim_headers: tuple[tuple[str, str], ...]  # (claim, header): claims passed to the backend as headers


@dataclass(frozen=True, slots=True)
class RequestAuthorizer:
    """A custom authorizer: an HTTP endpoint or a Python function decides, from the request's identity sources."""

    name: str
    uri: str | None
    function: str | None  # "module:function"
    identity_sources: tuple[str, ...]  # "header:NAME", "query:NAME", "ip"
    ttl: float  # how long a decision is cached per identity (0: not cached)
    timeout: float
    context_headers: tuple[tuple[str, str], ...]  # (context key, header): the answer's context passed to the backend


Authorizer = JwtAuthorizer | RequestAuthorizer


@dataclass(frozen=True, slots=True)
class ApiConfig:
    """One API: its stages and routes, and what only its routes use; a daemon serves one or many."""

    name: str
    source: str  # the file it was read from
    stages: tuple[StageConfig, ...]
    routes: tuple[RouteConfig, ...]
    authorizers: tuple[Authorizer, ...] = ()
    usage_plans: tuple[UsagePlan, ...] = ()  # names are the daemon's: an API key's plan says which API it opens
    gateway_responses: tuple[GatewayResponseConfig, ...] = ()
    binary_media_types: tuple[str, ...] = ()  # media types the API treats as bytes ("image/*", ...)
    compression: CompressionConfig | None = None  # None: responses go as the integrations sent them
    cors: CorsConfig | None = None  # routes without a cors table of their own use it; None: no CORS


@dataclass(frozen=True, slots=True)
class Config:
    source: str
    server: ServerConfig
    log: LogConfig
    throttle: ThrottleConfig
    apis: tuple[ApiConfig, ...]  # at least one; names unique
    cache: CacheConfig
    warnings: tuple[str, ...]  # logged at start and at every reload (expiring certificates, ...)
    metrics: MetricsConfig
    admin: AdminConfig
    domains: tuple[DomainConfig, ...] = ()  # custom domain names
    upstreams: tuple[UpstreamConfig, ...] = ()
    default_api: str | None = None  # what requests for no custom domain reach, by stage prefix; None: nothing (404)

    @property
    def usage_plans(self) -> tuple[UsagePlan, ...]:
        """Every API's usage plans: API keys name them, whichever API they open."""
        return tuple(plan for api in self.apis for plan in api.usage_plans)

    def api(self, name: str) -> ApiConfig:
        """The API called ``name`` (one that exists)."""
        return next(api for api in self.apis if api.name == name)

    @property
    def listen_addresses(self) -> tuple[Address, ...]:
        """Every address to listen on: ``server.listen``, then private stages' own."""
        addresses = [self.server.listen]
        for api in self.apis:
            for stage in api.stages:
                addresses += [address for address in stage.listen if address not in addresses]
        return tuple(addresses)

    def stages_served_on(self, address: Address) -> tuple[tuple[ApiConfig, StageConfig], ...]:
        """The stages a listener serves by path prefix: the private ones naming it, or on server.listen the default API's others."""
        if address == self.server.listen:
            if self.default_api is None:
                return ()
            api = self.api(self.default_api)
            return tuple((api, stage) for stage in api.stages if not stage.listen)
        return tuple((api, stage) for api in self.apis for stage in api.stages if address in stage.listen)
