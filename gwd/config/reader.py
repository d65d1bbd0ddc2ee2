"""Reading a config: TOML in, a validated :class:`~gwd.config.model.Config` out, or every problem at once.

Files the config names (certificates, keys) are opened and checked here
too, so a config that loads is one the runtime can serve.
"""

from __future__ import annotations

import difflib
import glob
import importlib.util
import ipaddress
import os
import pwd
import re
import shutil
import ssl
import tomllib
from dataclasses import replace
from importlib import resources
from typing import Any, Callable, Mapping

from gwd.config.aws import PROTOCOLS, default_region, read_credentials, read_endpoint, read_target, service_model
from gwd.config.handlers import SCRIPT_SUFFIXES, handler_problem, import_problems, module_file, split_handler
from gwd.config.keys import BY_TABLE, COMPRESSION_ENCODINGS, Key
from gwd.config.mapping import read_mapping
from gwd.config.model import (
    DEFAULT_STAGE,
    HTTP_METHODS,
    RESERVED_BACKEND_HEADERS,
    Address,
    AdminConfig,
    ApiConfig,
    Authorizer,
    AwsIntegration,
    BackendTls,
    CompressionConfig,
    CorsConfig,
    DomainConfig,
    DomainTls,
    BasePathMapping,
    CacheConfig,
    CachePolicy,
    ClientLimit,
    Config,
    ConfigError,
    FunctionIntegration,
    HttpIntegration,
    Integration,
    JwtAuthorizer,
    Limit,
    ListenerTls,
    LogConfig,
    MetricsConfig,
    MockIntegration,
    Model,
    Networks,
    Quota,
    RequestAuthorizer,
    RouteConfig,
    RouteKey,
    ServerConfig,
    StageConfig,
    ThrottleConfig,
    HealthCheck,
    UpstreamConfig,
    UpstreamTarget,
    RetryPolicy,
    UsagePlan,
)
from gwd.config.parameters import read_parameters
from gwd.config.validation import read_gateway_responses, read_models, read_validation
from gwd.config.values import (
    HEADER_NAME,
    STAGE_VARIABLE,
    parse_address,
    parse_backend_uri,
    parse_duration,
    parse_route_key,
    parse_size,
    substitute_stage_variables,
)
from gwd.tls import backend_context, expiry_warning, listener_context, load_public_key, private_key_problem

BUILTIN_SOURCE = "<built-in default>"
_STAGE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
_LOG_LEVELS = ("debug", "info", "warning", "error")
_INVALIDATION = ("require_key", "allow", "ignore")
_CLIENT_AUTH = ("none", "optional", "require")
_JWT_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA", "HS256")
_IDENTITY_SOURCE = re.compile(r"^(header|query):[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_FUNCTION_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_ENVIRONMENT_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_BINARY_TYPE = re.compile(r"^([A-Za-z0-9!#$&^_.+-]+|\*)/([A-Za-z0-9!#$&^_.+-]+|\*)$")
_DOMAIN_NAME = re.compile(r"^(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_ORIGIN = re.compile(r"^[a-z][a-z0-9+.-]*://[^/?#\s]+$")
_RETRY_ON = ("connect-failure", "refused", "reset", "timeout", "502", "503", "504")
_API_KEYS = (
    "name", "stages", "routes", "authorizers", "usage_plans", "models", "gateway_responses", "binary_media_types", "cors",
    "compression",
)
"""The keys of an API: the main file holding any of them holds an API of its own."""
_COMPRESSED_TYPE = re.compile(r"^[A-Za-z0-9!#$&^_.+-]+/([A-Za-z0-9!#$&^_.+-]+|\*|\*\+[A-Za-z0-9!#$&^_.-]+)$")


def load_config(path: str | None, overrides: Mapping[str, Any] | None = None) -> Config:
    """Read and validate a config file (the built-in default when ``path`` is None).

    ``overrides`` holds command-line settings (``listen``, ``workers``) that
    win over the file, also on every reload.
    """
    overrides = dict(overrides or {})
    if path is None:
        source = BUILTIN_SOURCE
        data = tomllib.loads(resources.files("gwd").joinpath("default.toml").read_text())
    else:
        source = path
        data = _read_toml(path)
    return _ConfigReader(source, overrides).read(data)


def _read_toml(path: str) -> dict[str, Any]:
    """A TOML file's tables; :class:`ConfigError` names the file and what is wrong with it."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{path}: not UTF-8 text: {exc.reason} at byte {exc.start}"]) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: invalid TOML: {exc}"]) from None


class _Table:
    """A TOML table being read: typed look-ups that record problems under a key path."""

    def __init__(self, reader: _ConfigReader, data: Mapping[str, Any], path: str) -> None:
        self._reader = reader
        self._data = data
        self._path = path
        self._seen: set[str] = set()

    @property
    def path(self) -> str:
        """This table's own key path, such as ``routes[0].integration.tls``."""
        return self._path

    def key_path(self, key: str) -> str:
        return f"{self._path}.{key}" if self._path else key

    def problem(self, key: str, message: str) -> None:
        self._reader.problem(self.key_path(key), message)

    def get(self, key: str, kind: type | tuple[type, ...], default: Any, what: str) -> Any:
        self._seen.add(key)
        if key not in self._data:
            return default
        value = self._data[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        # bool is an int in Python, never in a config.
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            self.problem(key, f"expected {what}, got {_describe(value)}")
            return default
        return value

    def names(self) -> list[str]:
        """The keys this table holds, in order."""
        return list(self._data)

    def has(self, key: str) -> bool:
        return key in self._data

    def require(self, key: str, hint: str) -> bool:
        """Record a problem if ``key`` is absent; True if present."""
        if key in self._data:
            return True
        self.problem(key, f"missing: {hint}")
        return False

    def string(self, key: str, default: str | None) -> str | None:
        return self.get(key, str, default, "a string")

    def parsed(self, key: str, default: Any, parse: Callable[[str], Any]) -> Any:
        raw = self.string(key, None)
        if raw is None:
            return default
        try:
            return parse(raw)
        except ValueError as exc:
            self.problem(key, str(exc))
            return default

    def integer(self, key: str, default: int, low: int, high: int) -> int:
        value = self.get(key, int, default, "an integer")
        if not low <= value <= high:
            self.problem(key, f"must be between {low} and {high}, got {value}")
            return default
        return value

    def duration(self, key: str, default: float, low: float, high: float) -> float:
        raw = self._data.get(key)
        if type(raw) is int and raw == 0:  # a bare 0 needs no unit (not True, which == 0 too)
            self._seen.add(key)
            value = 0.0
        else:
            value = self.parsed(key, default, parse_duration)
        if not low <= value <= high:
            self.problem(key, f"must be between {_seconds(low)} and {_seconds(high)}, got {_seconds(value)}")
            return default
        return value

    def read(self, key: Key) -> Any:
        """The value of a declared key (:mod:`gwd.config.keys`), checked against its type and range."""
        kind, name, default = key.kind, key.name, key.default
        if kind == "integer":
            return self.integer(name, default, int(key.low or 0), int(key.high or 0))
        if kind == "duration":
            return self.duration(name, default, key.low or 0.0, key.high or 0.0)
        if kind == "size":
            return self.parsed(name, default, parse_size)
        if kind == "boolean":
            return self.get(name, bool, default, "true or false")
        if kind == "string":
            return self.string(name, default)
        if kind == "address":
            return self.parsed(name, default, parse_address)
        raise TypeError(f"{self.key_path(name)} is read by its own code ({kind})")

    def table(self, key: str) -> _Table:
        return _Table(self._reader, self.get(key, dict, {}, "a table"), self.key_path(key))

    def string_map(self, key: str) -> dict[str, str]:
        table = self.get(key, dict, {}, "a table of strings")
        result = {}
        for name, value in table.items():
            if isinstance(value, str):
                result[name] = value
            else:
                self._reader.problem(f"{self.key_path(key)}.{name}", f"expected a string, got {_describe(value)}")
        return result

    def tables(self, key: str) -> list[_Table]:
        items = self.get(key, list, [], "an array of tables ([[" + key + "]])")
        tables = []
        for index, item in enumerate(items):
            path = f"{self.key_path(key)}[{index}]"
            if isinstance(item, dict):
                tables.append(_Table(self._reader, item, path))
            else:
                self._reader.problem(path, f"expected a table, got {_describe(item)}")
        return tables

    def finish(self) -> None:
        """Report keys nobody asked for: a typo must not be silently ignored (the nearest known key is suggested)."""
        for key in self._data:
            if key not in self._seen:
                near = difflib.get_close_matches(key, self._seen, n=1)
                self.problem(key, f"unknown key (did you mean {near[0]!r}?)" if near else "unknown key")


class _ConfigReader:
    def __init__(self, source: str, overrides: Mapping[str, Any]) -> None:
        self.source = source
        self.overrides = overrides
        self.problems: list[str] = []
        self.warnings: list[str] = []
        self._client_certs = False  # the listener verifies client certificates (read with [server])
        # Function integrations by name, in every API: routes naming one function must agree.
        self._functions: dict[str, FunctionIntegration] = {}
        self._upstream_schemes: dict[str, str] = {}  # [[upstreams]] by name (read before the APIs that use them)
        # Relative file names in the config are relative to its directory.
        self.base_dir = os.getcwd() if source == BUILTIN_SOURCE else os.path.dirname(os.path.abspath(source))

    def problem(self, key_path: str, message: str) -> None:
        self.problems.append(f"{self.source}: {key_path}: {message}")

    def read(self, data: Mapping[str, Any]) -> Config:
        root = _Table(self, data, "")
        server = self._server(root.table("server"))
        server_table = data.get("server")
        # A [server] tls that failed its checks is reported there; routes that want client certificates are not at fault.
        tls_failed = server.tls is None and isinstance(server_table, dict) and "tls" in server_table
        self._client_certs = tls_failed or server.tls is not None and server.tls.client_auth != "none"
        log = self._log(root.table("log"))
        throttle_table = root.table("throttle")
        throttle_keys = BY_TABLE["throttle"]
        backend = throttle_table.read(throttle_keys["backend"])
        if backend != "memory" and not backend.startswith(("redis://", "rediss://", "unix://")):
            throttle_table.problem("backend", f'expected "memory" or a redis:// URL, got {backend!r}')
        throttle = ThrottleConfig(
            table_size=throttle_table.read(throttle_keys["table_size"]),
            backend=backend,
            fail_open=throttle_table.read(throttle_keys["fail_open"]),
        )
        throttle_table.finish()
        cache_table = root.table("cache")
        cache_keys = BY_TABLE["cache"]
        cache_backend = cache_table.read(cache_keys["backend"])
        if cache_backend != "memory" and not cache_backend.startswith("redis://"):
            cache_table.problem("backend", f'expected "memory" or a redis:// URL, got {cache_backend!r}')
        cache = CacheConfig(cache_table.read(cache_keys["max_bytes"]), cache_backend)
        if cache.max_bytes < 1024**2:
            cache_table.problem("max_bytes", f"must be at least 1MiB, got {cache.max_bytes} bytes")
        cache_table.finish()
        upstreams = self._upstreams(root.tables("upstreams"))
        self._upstream_schemes = {upstream.name: upstream.scheme for upstream in upstreams}
        apis: list[ApiConfig] = []
        if server.apis == () or any(root.has(key) for key in _API_KEYS):
            apis.append(self._api(root, server, "default"))
        for path in server.apis:
            api = self._api_file(path, server)
            if api is not None:
                apis.append(api)
        self._check_across_apis(apis)
        domains = self._domains(root.tables("domains"), apis, server)
        default_api = self._default_api(root, apis, domains)
        metrics_table = root.table("metrics")
        metrics_keys = BY_TABLE["metrics"]
        metrics = MetricsConfig(
            enabled=metrics_table.read(metrics_keys["enabled"]),
            per_key=metrics_table.read(metrics_keys["per_key"]),
            server_timing=metrics_table.read(metrics_keys["server_timing"]),
        )
        metrics_table.finish()
        admin = self._admin(root.table("admin"), server)
        root.finish()
        if self.problems:
            raise ConfigError(self.problems)
        self._warn_of_unreachable(apis, domains, default_api)
        return Config(
            self.source, server, log, throttle, tuple(apis), cache, tuple(self.warnings), metrics, admin,
            domains=domains, default_api=default_api, upstreams=upstreams,
        )

    def _api(self, root: _Table, server: ServerConfig, default_name: str) -> ApiConfig:
        """One API's keys in ``root`` (the main file's, or an API file's)."""
        name = root.string("name", default_name) or default_name
        if not _STAGE_NAME.match(name):
            root.problem("name", f"{name!r} is not an API name (letters, digits, '-', '_')")
        stages = self._stages(root.tables("stages"), server.listen)
        authorizers = self._authorizers(root.tables("authorizers"))
        models = read_models(root.table("models"), self.base_dir)
        routes = self._routes(root.tables("routes"), stages, {authorizer.name: authorizer for authorizer in authorizers}, models)
        gateway_responses = read_gateway_responses(root.table("gateway_responses"), self.base_dir)
        binary_media_types = tuple(self._names(root, "binary_media_types", lambda media: bool(_BINARY_TYPE.match(media))))
        compression = self._compression(root) if root.has("compression") else None
        cors = self._cors(root.table("cors")) if root.has("cors") else None
        if not root.get("routes", list, [], "an array of tables ([[routes]])"):
            # An empty or truncated file would otherwise serve nothing (and a reload to it replace a working config).
            self.problem("routes", "missing: an API serves at least one [[routes]] entry (an empty or truncated file?)")
        usage_plans = self._usage_plans(root.tables("usage_plans"))
        return ApiConfig(
            name, self.source, stages, routes, authorizers, usage_plans, gateway_responses, binary_media_types, compression, cors
        )

    def _api_file(self, path: str, server: ServerConfig) -> ApiConfig | None:
        """An API file of ``[server] apis``: its problems are reported under its own name."""
        main_source, main_dir = self.source, self.base_dir
        self.source, self.base_dir = path, os.path.dirname(path)
        try:
            try:
                data = _read_toml(path)
            except ConfigError as error:
                self.problems += error.problems
                return None
            table = _Table(self, data, "")
            api = self._api(table, server, os.path.splitext(os.path.basename(path))[0])
            table.finish()
            return api
        finally:
            self.source, self.base_dir = main_source, main_dir

    def _check_across_apis(self, apis: list[ApiConfig]) -> None:
        """What one API's file cannot see: names taken by another API, and private listen addresses two APIs claim."""
        names: dict[str, str] = {}
        plans: dict[str, str] = {}
        listeners: dict[Address, str] = {}
        for api in apis:
            where = f"{api.source}: name"
            if api.name in names:
                self.problems.append(f"{where}: API {api.name!r} is also defined in {names[api.name]}")
            names.setdefault(api.name, api.source)
            for plan in api.usage_plans:
                if plan.name in plans and plans[plan.name] != api.name:
                    self.problems.append(
                        f"{api.source}: usage_plans: plan {plan.name!r} is also API {plans[plan.name]!r}'s "
                        "(API keys name plans, so their names are the daemon's)"
                    )
                plans.setdefault(plan.name, api.name)
            for stage in api.stages:
                for address in stage.listen:
                    if listeners.setdefault(address, api.name) != api.name:
                        self.problems.append(
                            f"{api.source}: stages: {stage.name!r} listens on {address}, which API "
                            f"{listeners[address]!r}'s stages have: a private listener serves one API"
                        )

    def _default_api(self, root: _Table, apis: list[ApiConfig], domains: tuple[DomainConfig, ...]) -> str | None:
        """``default_api``: named, or the only API of a daemon without custom domains."""
        name = root.string("default_api", None)
        if name is None:
            return apis[0].name if len(apis) == 1 and not domains else None
        if all(api.name != name for api in apis):
            root.problem("default_api", f"no API is named {name!r} (APIs: {', '.join(api.name for api in apis)})")
            return None
        return name

    def _warn_of_unreachable(self, apis: list[ApiConfig], domains: tuple[DomainConfig, ...], default_api: str | None) -> None:
        """An API no request can reach is most likely a mapping left out: said at every start and reload."""
        mapped = {mapping.api for domain in domains for mapping in domain.mappings} | {default_api}
        for api in apis:
            if api.name not in mapped and not any(stage.listen for stage in api.stages):
                self.warnings.append(
                    f"{api.source}: API {api.name!r} serves no request: no domain mapping names it, it is not "
                    "default_api, and none of its stages has listen addresses"
                )

    def _admin(self, table: _Table, server: ServerConfig) -> AdminConfig:
        """``[admin] listen``: an address, or "off"; the command line's --admin-listen wins."""
        text = table.string("listen", None)
        table.finish()
        if "admin_listen" in self.overrides:
            return AdminConfig(self.overrides["admin_listen"])
        if text == "off":
            return AdminConfig(None)
        if text is None:
            return AdminConfig(BY_TABLE["admin"]["listen"].default)
        try:
            address = parse_address(text)
        except ValueError as exc:
            table.problem("listen", f'{exc} (or "off")')
            return AdminConfig(None)
        if address == server.listen:
            table.problem("listen", f"{address} is server.listen; the admin listener needs its own address")
        return AdminConfig(address)

    def _domains(self, tables: list[_Table], apis: list[ApiConfig], server: ServerConfig) -> tuple[DomainConfig, ...]:
        """``[[domains]]``: custom domain names, each with its base path mappings to API stages served on server.listen."""
        domains: list[DomainConfig] = []
        for table in tables:
            name = (table.string("name", None) or "").lower().rstrip(".") if table.require("name", "the domain name") else ""
            if name and not _DOMAIN_NAME.match(name):
                table.problem("name", f'{name!r} is not a domain name ("api.example.com", or "*.example.com")')
            elif name in (domain.name for domain in domains):
                table.problem("name", f"domain {name!r} is defined twice")
            tls = self._domain_tls(table, server) if table.has("tls") else None
            mappings: list[BasePathMapping] = []
            if table.require("mappings", '[{ base_path = "", api = "pets", stage = "$default" }]: where its requests go'):
                for mapping in table.tables("mappings"):
                    base_path = (mapping.string("base_path", "") or "").strip("/")
                    if base_path and not all(_STAGE_NAME.match(part) for part in base_path.split("/")):
                        mapping.problem("base_path", f"{base_path!r} is not a base path (letters, digits, '-', '_', '/')")
                    elif base_path in (m.base_path for m in mappings):
                        mapping.problem("base_path", f"base path {base_path!r} is mapped twice")
                    api = self._mapped_api(mapping, apis)
                    stage = mapping.string("stage", None) if mapping.require("stage", "the stage it reaches") else None
                    if api is not None and stage is not None and not any(s.name == stage and not s.listen for s in api.stages):
                        on_own = any(s.name == stage for s in api.stages)
                        why = "is served on its own listen addresses" if on_own else f"is no stage of API {api.name!r}"
                        mapping.problem("stage", f"{stage!r} {why}")
                    mapping.finish()
                    if stage is not None and api is not None:
                        mappings.append(BasePathMapping(base_path, api.name, stage))
            table.finish()
            if name:
                domains.append(DomainConfig(name, tuple(mappings), tls))
        return tuple(domains)

    def _upstreams(self, tables: list[_Table]) -> tuple[UpstreamConfig, ...]:
        """``[[upstreams]]``: named groups of backend targets that http integrations balance over."""
        upstreams: list[UpstreamConfig] = []
        keys = BY_TABLE["upstream"]
        for table in tables:
            name = self._unique_name(table, [u.name for u in upstreams], "upstream", ', which uri = "http://upstream:NAME/" uses')
            if name is not None and not _STAGE_NAME.match(name):
                table.problem("name", f"{name!r} is not an upstream name (letters, digits, '-', '_')")
            targets = self._targets(table)
            scheme = table.read(keys["scheme"])
            if scheme not in ("http", "https"):
                table.problem("scheme", f'expected "http" or "https", got {scheme!r}')
            tls = self._backend_tls(table, "tls")
            if tls is not None and scheme != "https":
                table.problem("tls", 'applies to scheme = "https" only')
            algorithm = table.read(keys["algorithm"])
            if algorithm not in ("round_robin", "least_requests", "consistent_hash"):
                table.problem("algorithm", f'expected "round_robin", "least_requests" or "consistent_hash", got {algorithm!r}')
            hash_on = table.read(keys["hash_on"])
            if hash_on != "ip" and not re.fullmatch(r"(header|cookie|path):[!#$%&'*+.^_`|~0-9A-Za-z-]+", hash_on):
                table.problem("hash_on", f'expected "ip", "header:NAME", "cookie:NAME" or "path:NAME", got {hash_on!r}')
            elif table.has("hash_on") and algorithm != "consistent_hash":
                table.problem("hash_on", 'applies to algorithm = "consistent_hash" only')
            upstream = UpstreamConfig(
                name=name or "",
                targets=targets,
                scheme=scheme,
                tls=tls,
                algorithm=algorithm,
                hash_on=hash_on if algorithm == "consistent_hash" else None,
                eject_after=table.read(keys["eject_after"]),
                eject_for=table.read(keys["eject_for"]),
                max_ejected_percent=table.read(keys["max_ejected_percent"]),
                slow_start=table.read(keys["slow_start"]),
                max_requests=table.read(keys["max_requests"]),
                retries=self._retries(table.table("retries")) if table.has("retries") else None,
                health=self._health(table.table("health")) if table.has("health") else None,
            )
            table.finish()
            if name is not None and targets:
                upstreams.append(upstream)
        return tuple(upstreams)

    def _targets(self, table: _Table) -> tuple[UpstreamTarget, ...]:
        """An upstream's ``targets``: addresses and weights, each address once."""
        targets: list[UpstreamTarget] = []
        if not table.require("targets", '[{ address = "127.0.0.1:9001" }, ...]: the backends'):
            return ()
        for target in table.tables("targets"):
            address = target.parsed("address", None, parse_address) if target.require("address", "HOST:PORT") else None
            weight = target.integer("weight", 1, 1, 1000)
            target.finish()
            if address is None:
                continue
            if any((t.host, t.port) == (address.host, address.port) for t in targets):
                target.problem("address", f"{address} is listed twice")
                continue
            targets.append(UpstreamTarget(address.host, address.port, weight))
        if not targets and table.has("targets"):
            table.problem("targets", "an upstream needs at least one target")
        return tuple(targets)

    def _health(self, table: _Table) -> HealthCheck:
        """An upstream's ``health`` table."""
        keys = BY_TABLE["health"]
        path = table.read(keys["path"])
        if not path.startswith("/") or any(c in path for c in " \r\n#"):
            table.problem("path", f'expected a path such as "/healthz", got {path!r}')
        statuses = self._names(
            table, "expect_status", lambda status: 100 <= status <= 599, kind=int, invalid=lambda status: f"{status} is no HTTP status"
        ) if table.has("expect_status") else list(keys["expect_status"].default)
        check = HealthCheck(
            path=path,
            interval=table.read(keys["interval"]),
            timeout=table.read(keys["timeout"]),
            healthy_threshold=table.read(keys["healthy_threshold"]),
            unhealthy_threshold=table.read(keys["unhealthy_threshold"]),
            expect_status=frozenset(statuses),
        )
        if check.timeout >= check.interval:
            table.problem("timeout", f"must be shorter than interval ({check.interval:g}s), or checks would overlap")
        table.finish()
        return check

    def _retries(self, table: _Table) -> RetryPolicy:
        """An upstream's ``retries`` table."""
        keys = BY_TABLE["retries"]
        attempts = table.read(keys["attempts"])
        on = self._names(
            table, "on", lambda item: item in _RETRY_ON, invalid=lambda item: f"{item!r} is not one of {', '.join(_RETRY_ON)}"
        ) if table.has("on") else list(keys["on"].default)
        budget = keys["budget"].default
        text = table.string("budget", None)
        if text is not None:
            match = re.fullmatch(r"(\d{1,3})%", text)
            if match is None or int(match.group(1)) > 100:
                table.problem("budget", f'expected a share such as "20%", got {text!r}')
            else:
                budget = int(match.group(1)) / 100
        table.finish()
        return RetryPolicy(attempts, frozenset(on), budget)

    def _mapped_api(self, mapping: _Table, apis: list[ApiConfig]) -> ApiConfig | None:
        """A base path mapping's ``api``: named, or the daemon's only one."""
        name = mapping.string("api", None)
        names = ", ".join(api.name for api in apis)
        if name is None:
            if len(apis) == 1:
                return apis[0]
            mapping.problem("api", f"missing: the API it reaches (one of {names})")
            return None
        found = next((api for api in apis if api.name == name), None)
        if found is None:
            mapping.problem("api", f"no API is named {name!r} (APIs: {names})")
        return found

    def _domain_tls(self, domain: _Table, server: ServerConfig) -> DomainTls | None:
        """A domain's ``tls = { cert, key }``: served by SNI on the HTTPS listener, checked on disk."""
        table = domain.table("tls")
        cert = self._file(table, "cert") if table.require("cert", "the domain's certificate (PEM)") else None
        key = self._file(table, "key") if table.require("key", "the certificate's private key (PEM)") else None
        table.finish()
        if server.tls is None:
            table.problem("cert", "needs [server] tls: a domain's certificate is chosen by SNI on the HTTPS listener")
            return None
        if cert is None or key is None:
            return None
        if not self._usable_tls(table, "key", cert, key, lambda: listener_context(cert, key, None, "none")):
            return None
        expiring = expiry_warning(cert)
        if expiring:
            self.warnings.append(f"{self.source}: {table.key_path('cert')}: {expiring}")
        return DomainTls(cert, key)

    def _cors(self, table: _Table) -> CorsConfig:
        """A ``cors`` table, the API's or a route's."""
        keys = BY_TABLE["cors"]
        origins = tuple(
            self._names(
                table,
                "allow_origins",
                lambda origin: origin == "*" or bool(_ORIGIN.match(origin)),
                invalid=lambda origin: f'not an origin: {origin!r} (write scheme://host[:port], or "*")',
            )
        )
        methods = tuple(
            self._names(
                table,
                "allow_methods",
                lambda method: method == "*" or method in HTTP_METHODS,
                invalid=lambda method: f'not a method: {method!r} (write "GET", "POST", ..., or "*")',
            )
        ) if table.has("allow_methods") else keys["allow_methods"].default

        def header_list(key: str) -> tuple[str, ...]:
            return tuple(
                self._names(
                    table,
                    key,
                    lambda name: name == "*" or bool(HEADER_NAME.match(name)),
                    invalid=lambda name: f"not a header name: {name!r}",
                )
            )

        cors = CorsConfig(
            allow_origins=origins,
            allow_methods=methods,
            allow_headers=header_list("allow_headers"),
            expose_headers=header_list("expose_headers"),
            max_age=table.read(keys["max_age"]),
            allow_credentials=table.read(keys["allow_credentials"]),
        )
        if cors.allow_credentials and "*" in origins:
            table.problem("allow_credentials", 'cannot be true with "*" in allow_origins (browsers refuse it): list the origins')
        if not origins:
            table.problem("allow_origins", 'missing: name the origins whose pages may call the API (or "*")')
        table.finish()
        return cors

    def _compression(self, root: _Table) -> CompressionConfig:
        """The API's ``compression`` table: its presence turns compression on."""
        table = root.table("compression")
        keys = BY_TABLE["compression"]
        encodings = keys["encodings"].default
        supported = ", ".join(COMPRESSION_ENCODINGS)
        if table.has("encodings"):
            encodings = tuple(
                self._names(
                    table,
                    "encodings",
                    lambda name: name in COMPRESSION_ENCODINGS,
                    invalid=lambda name: f"unknown encoding {name!r} (supported: {supported})",
                )
            )
        if len(set(encodings)) != len(encodings):
            table.problem("encodings", "names an encoding twice")
        elif not encodings and table.has("encodings"):
            table.problem("encodings", f"empty: name at least one of {supported} (or drop the table)")
        types = keys["types"].default
        if table.has("types"):
            types = tuple(
                self._names(
                    table,
                    "types",
                    _COMPRESSED_TYPE.match,
                    invalid=lambda media: f"not a media type pattern: {media!r} (write type/subtype, type/*, or type/*+suffix)",
                )
            )
        compression = CompressionConfig(
            min_size=table.read(keys["min_size"]),
            encodings=encodings,
            types=types,
            gzip_level=table.read(keys["gzip_level"]),
            br_quality=table.read(keys["br_quality"]),
        )
        table.finish()
        return compression

    def _cache_policy(self, parent: _Table) -> tuple[CachePolicy | None, bool]:
        """The ``cache`` table under ``parent``: (the policy, or None; True if it says enabled = false)."""
        if not parent.has("cache"):
            return None, False
        table = parent.table("cache")
        keys = BY_TABLE["cache_policy"]
        enabled = table.read(keys["enabled"])
        ttl = table.read(keys["ttl"])
        key = table.table("key")
        query = tuple(self._names(key, "query", lambda name: bool(name)))
        headers = tuple(name.lower() for name in self._names(key, "headers", HEADER_NAME.match))
        key.finish()
        listed = self._names(table, "statuses", lambda code: 200 <= code <= 599, kind=int)
        statuses = frozenset(listed or keys["statuses"].default)
        per_identity = table.read(keys["per_identity"])
        respect_backend = table.read(keys["respect_backend"])
        invalidation = table.read(keys["invalidation"])
        if invalidation not in _INVALIDATION:
            table.problem("invalidation", f"expected one of {', '.join(_INVALIDATION)}, got {invalidation!r}")
        table.finish()
        if not enabled:
            return None, True
        return CachePolicy(ttl, query, headers, statuses, per_identity, respect_backend, invalidation), False

    def _names(
        self,
        table: _Table,
        key: str,
        valid: Callable[[Any], object],
        kind: type = str,
        invalid: Callable[[Any], str] | None = None,
    ) -> list[Any]:
        """A list of strings (or ``kind``) under ``key``, each passing ``valid`` (``invalid`` says why one does not)."""
        what = "a list of strings" if kind is str else "a list of integers"
        items = table.get(key, list, [], what)
        names = []
        for index, item in enumerate(items):
            if not isinstance(item, kind) or isinstance(item, bool):
                self.problem(f"{table.key_path(key)}[{index}]", f"not a valid entry: {_describe(item)}")
            elif not valid(item):
                why = invalid(item) if invalid is not None else f"not a valid entry: {_describe(item)}"
                self.problem(f"{table.key_path(key)}[{index}]", why)
            else:
                names.append(item)
        return names

    def _usage_plans(self, tables: list[_Table]) -> tuple[UsagePlan, ...]:
        plans: list[UsagePlan] = []
        for table in tables:
            name = self._unique_name(table, [plan.name for plan in plans], "usage plan", "")
            throttle = self._limit(table, "throttle")
            quota = None
            if table.has("quota"):
                quota_table = table.table("quota")
                quota_table.require("limit", "requests per period")
                limit = quota_table.integer("limit", 1, 1, 2**62)
                period = quota_table.string("period", "day")
                if period not in ("day", "week", "month"):
                    quota_table.problem("period", f'expected "day", "week" or "month", got {period!r}')
                quota_table.finish()
                quota = Quota(limit, period)
            table.finish()
            if name is not None:
                plans.append(UsagePlan(name, throttle, quota))
        return tuple(plans)

    def _limit(self, table: _Table, key: str) -> Limit | None:
        """``{ rate = R, burst = B }`` under ``key``, or None when absent."""
        if not table.has(key):
            return None
        limit = table.table(key)
        rate, burst = self._bucket(limit)
        limit.finish()
        return Limit(rate, burst)

    def _client_limit(self, table: _Table, key: str) -> ClientLimit | None:
        """``{ rate = R, burst = B, key = "ip" | "header:NAME" }`` under ``key``, or None when absent."""
        if not table.has(key):
            return None
        limit = table.table(key)
        rate, burst = self._bucket(limit)
        client_key = limit.string("key", "ip")
        prefix, _, name = client_key.partition(":")
        if client_key != "ip" and not (prefix in ("header", "claim") and name):
            limit.problem("key", f'expected "ip", "header:NAME" or "claim:NAME", got {client_key!r}')
        limit.finish()
        return ClientLimit(rate, burst, client_key)

    def _bucket(self, limit: _Table) -> tuple[float, int]:
        limit.require("rate", "requests per second")
        limit.require("burst", "how many requests may arrive at once")
        rate = limit.get("rate", (int, float), 1.0, "a number")
        if rate <= 0:
            limit.problem("rate", f"must be more than 0, got {rate}")
        return float(rate), limit.integer("burst", 1, 1, 1_000_000_000)

    def _server(self, table: _Table) -> ServerConfig:
        keys = BY_TABLE["server"]
        listen = table.read(keys["listen"])
        workers = table.read(keys["workers"])
        if "listen" in self.overrides:
            listen = self.overrides["listen"]
        if "workers" in self.overrides:
            workers = self.overrides["workers"]
        config = ServerConfig(
            listen=listen,
            workers=workers or default_worker_count(),
            drain_timeout=table.read(keys["drain_timeout"]),
            keepalive_timeout=table.read(keys["keepalive_timeout"]),
            backlog=table.read(keys["backlog"]),
            reuse_port=table.read(keys["reuse_port"]),
            trusted_proxies=self._networks(table, "trusted_proxies"),
            upstream_keepalive=table.read(keys["upstream_keepalive"]),
            state_dir=table.parsed("state_dir", default_state_dir(), _absolute_path),
            tls=self._listener_tls(table),
            header_timeout=table.read(keys["header_timeout"]),
            body_timeout=table.read(keys["body_timeout"]),
            max_body=table.read(keys["max_body"]),
            user=self._user(table),
            worker_timeout=self._worker_timeout(table, keys["worker_timeout"]),
            max_connections=table.read(keys["max_connections"]),
            function_threads=table.read(keys["function_threads"]),
            apis=self._api_files(table),
        )
        table.finish()
        return config

    def _api_files(self, table: _Table) -> tuple[str, ...]:
        """``[server] apis``: the files its paths and globs name, in order, each once; a glob matching none is a problem."""
        files: list[str] = []
        for index, pattern in enumerate(self._names(table, "apis", lambda pattern: bool(pattern))):
            pattern = os.path.join(self.base_dir, os.path.expanduser(pattern))
            found = sorted(glob.glob(pattern)) if any(c in pattern for c in "*?[") else [pattern]
            if not found:
                self.problem(f"{table.key_path('apis')}[{index}]", f"{pattern!r} matches no file")
            files += [os.path.abspath(path) for path in found if os.path.abspath(path) not in files]
        return tuple(path for path in files if path != os.path.abspath(self.source))

    def _worker_timeout(self, table: _Table, key: Key) -> float:
        timeout = table.duration(key.name, key.default, key.low or 0.0, key.high or 0.0)
        if 0 < timeout < 1:
            table.problem(key.name, f"must be 0 (never) or at least 1s, got {_seconds(timeout)}")
            return key.default
        return timeout

    def _user(self, table: _Table) -> str | None:
        user = table.string("user", None)
        if user is not None:
            try:
                pwd.getpwnam(user)
            except KeyError:
                table.problem("user", f"no user named {user!r} on this machine")
        return user

    def _listener_tls(self, server: _Table) -> ListenerTls | None:
        """``[server] tls = { cert, key, client_ca, client_auth }``, checked on disk."""
        if not server.has("tls"):
            return None
        table = server.table("tls")
        cert = self._file(table, "cert") if table.require("cert", "the server certificate (PEM)") else None
        key = self._file(table, "key") if table.require("key", "the server certificate's private key (PEM)") else None
        client_ca = self._file(table, "client_ca")
        client_auth = table.read(BY_TABLE["listener_tls"]["client_auth"])
        table.finish()
        if client_auth not in _CLIENT_AUTH:
            table.problem("client_auth", f"expected one of {', '.join(_CLIENT_AUTH)}, got {client_auth!r}")
            return None
        if client_auth != "none" and client_ca is None and not table.has("client_ca"):
            table.problem("client_ca", f'client_auth = "{client_auth}" needs the CAs that sign client certificates')
            return None
        if cert is None or key is None:
            return None
        if not self._usable_tls(table, "key", cert, key, lambda: listener_context(cert, key, client_ca, client_auth)):
            return None
        expiring = expiry_warning(cert)
        if expiring:
            self.warnings.append(f"{self.source}: {table.key_path('cert')}: {expiring}")
        return ListenerTls(cert, key, client_ca, client_auth)

    def _networks(self, table: _Table, key: str) -> Networks:
        networks = []
        for index, item in enumerate(table.get(key, list, [], "an array of CIDRs")):
            try:
                networks.append(ipaddress.ip_network(item))
            except (TypeError, ValueError) as exc:
                self.problem(f"{table.key_path(key)}[{index}]", f"not a CIDR such as \"10.0.0.0/8\": {exc}")
        return tuple(networks)

    def _log(self, table: _Table) -> LogConfig:
        keys = BY_TABLE["log"]
        access = table.read(keys["access"])
        if access not in ("stdout", "off") and not access.startswith("/"):
            table.problem("access", f'expected "stdout", "off" or an absolute file path, got {access!r}')
        elif access.startswith("/") and not os.path.isdir(os.path.dirname(access)):
            table.problem("access", f"directory {os.path.dirname(access)!r} does not exist")
        elif os.path.isdir(access):
            table.problem("access", f"{access!r} is a directory; expected the path of the log file")
        level = table.read(keys["level"])
        if level not in _LOG_LEVELS:
            table.problem("level", f"expected one of {', '.join(_LOG_LEVELS)}, got {level!r}")
        table.finish()
        return LogConfig(access=access, level=level)

    def _private_listen(self, table: _Table, main_listen: Address) -> tuple[Address, ...]:
        """A stage's ``listen`` list (private stages may share addresses; server.listen is not theirs)."""
        addresses = []
        for index, text in enumerate(self._names(table, "listen", lambda item: bool(item))):
            where = f"{table.key_path('listen')}[{index}]"
            try:
                address = parse_address(text)
            except ValueError as exc:
                self.problem(where, str(exc))
                continue
            if address == main_listen:
                self.problem(where, f"{address} is server.listen; a private stage needs addresses of its own")
            else:
                addresses.append(address)
        return tuple(addresses)

    def _stages(self, tables: list[_Table], main_listen: Address) -> tuple[StageConfig, ...]:
        stages: list[StageConfig] = []
        seen: set[str] = set()
        for table in tables:
            table.require("name", "every stage needs a name")
            name = table.string("name", None)
            if name is None:
                pass
            elif name != DEFAULT_STAGE and not _STAGE_NAME.match(name):
                table.problem("name", f'{name!r} is not a stage name (letters, digits, "-", "_", or "$default")')
            elif name in seen:
                table.problem("name", f"stage {name!r} is defined twice")
            variables = table.string_map("variables")
            throttle = self._limit(table, "throttle")
            client_throttle = self._client_limit(table, "client_throttle")
            cache, _ = self._cache_policy(table)
            backend_tls = self._backend_tls(table, "backend_tls")
            allow, deny = self._networks(table, "allow"), self._networks(table, "deny")
            listen = self._private_listen(table, main_listen)
            table.finish()
            if name is not None:
                seen.add(name)
                stages.append(StageConfig(name, variables, throttle, client_throttle, cache, backend_tls, allow, deny, listen))
        return tuple(stages) or (StageConfig(DEFAULT_STAGE, {}),)

    def _authorizers(self, tables: list[_Table]) -> tuple[Authorizer, ...]:
        authorizers: list[Authorizer] = []
        for table in tables:
            name = self._unique_name(table, [a.name for a in authorizers], "authorizer", ", which routes use")
            kind = table.string("type", None) if table.require("type", '"jwt" or "request"') else None
            authorizer: Authorizer | None = None
            if kind == "jwt":
                authorizer = self._jwt_authorizer(table, name or "")
            elif kind == "request":
                authorizer = self._request_authorizer(table, name or "")
            elif kind is not None:
                table.problem("type", f'expected "jwt" or "request", got {kind!r}')
            table.finish()
            if name is not None and authorizer is not None:
                authorizers.append(authorizer)
        return tuple(authorizers)

    def _jwt_authorizer(self, table: _Table, name: str) -> JwtAuthorizer | None:
        issuer = table.string("issuer", None) if table.require("issuer", "the iss claim tokens must carry") else None
        audience = self._one_or_many(table, "audience")
        if not audience:
            table.problem("audience", "missing: the aud value(s) tokens must be for")
        listed = tuple(self._names(table, "algorithms", lambda a: a in _JWT_ALGORITHMS))
        algorithms = listed or BY_TABLE["jwt_authorizer"]["algorithms"].default
        jwks_uri = table.string("jwks_uri", None)
        if jwks_uri is not None:
            try:
                parse_backend_uri(jwks_uri)
            except ValueError as exc:
                table.problem("jwks_uri", str(exc))
        public_keys = []
        for index, file_name in enumerate(self._names(table, "public_keys", lambda f: bool(f))):
            path = os.path.join(self.base_dir, os.path.expanduser(file_name))
            try:
                load_public_key(path)
            except OSError as exc:
                self.problem(f"{table.key_path('public_keys')}[{index}]", f"cannot read {path}: {exc.strerror}")
            except ValueError:
                self.problem(f"{table.key_path('public_keys')}[{index}]", f"{path} holds no PEM public key or certificate")
            public_keys.append(path)
        secret_file = self._file(table, "secret_file")
        if secret_file is not None:
            problem = private_key_problem(secret_file)
            if problem:
                table.problem("secret_file", problem.replace("private key", "secret"))
        if "HS256" in algorithms and secret_file is None:
            table.problem("algorithms", "HS256 needs secret_file (a shared secret); asymmetric keys never verify HS256")
        if secret_file is not None and "HS256" not in algorithms:
            table.problem("secret_file", 'a shared secret is used only with algorithms = [..., "HS256"] said explicitly')
        if jwks_uri is None and not public_keys and secret_file is None:
            table.problem("jwks_uri", "missing: give jwks_uri, public_keys or (for HS256) secret_file")
        keys = BY_TABLE["jwt_authorizer"]
        leeway = table.read(keys["leeway"])
        header = table.string("header", keys["header"].default)
        if not HEADER_NAME.match(header):
            table.problem("header", f"not a header name: {header!r}")
        claim_headers = self._header_map(table, "claim_headers")
        if issuer is None or not audience:
            return None
        return JwtAuthorizer(
            name, issuer, tuple(audience), algorithms, jwks_uri, tuple(public_keys), secret_file, leeway, header, claim_headers
        )

    def _request_authorizer(self, table: _Table, name: str) -> RequestAuthorizer | None:
        uri = table.string("uri", None)
        function = table.string("function", None)
        if (uri is None) == (function is None):
            table.problem("uri", 'give exactly one of uri (an HTTP endpoint) and function ("module:function")')
        if uri is not None:
            try:
                parse_backend_uri(uri)
            except ValueError as exc:
                table.problem("uri", str(exc))
        if function is not None and not re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*", function):
            table.problem("function", f'expected "module:function", got {function!r}')
        elif function is not None and not _module_exists(function.partition(":")[0]):
            table.problem("function", f"no module {function.partition(':')[0]!r} on the Python path")
        sources = self._names(table, "identity_sources", lambda s: s == "ip" or bool(_IDENTITY_SOURCE.match(s)))
        if not sources:
            table.problem("identity_sources", 'missing: what identifies a caller, such as ["header:Authorization"]')
        keys = BY_TABLE["request_authorizer"]
        ttl = table.read(keys["ttl"])
        timeout = table.read(keys["timeout"])
        context_headers = self._header_map(table, "context_headers")
        return RequestAuthorizer(name, uri, function, tuple(sources), ttl, timeout, context_headers)

    def _unique_name(self, table: _Table, taken: list[str], what: str, why: str) -> str | None:
        """The table's required ``name``, reported when missing or already ``taken``."""
        table.require("name", f"every {what} needs a name{why}")
        name = table.string("name", None)
        if name is not None and name in taken:
            table.problem("name", f"{what} {name!r} is defined twice")
        return name

    def _one_or_many(self, table: _Table, key: str) -> list[str]:
        value = table.get(key, (str, list), [], "a string or a list of strings")
        if isinstance(value, str):
            return [value]
        return self._names(table, key, lambda v: bool(v))

    def _header_map(self, table: _Table, key: str) -> tuple[tuple[str, str], ...]:
        mapping = table.string_map(key)
        for source, header in mapping.items():
            if not HEADER_NAME.match(header) or header.lower() in RESERVED_BACKEND_HEADERS:
                why = f"{header!r} cannot carry it (not a header name, or one gwd sets)"
                self.problem(f"{table.key_path(key)}.{source}", why)
        return tuple(mapping.items())

    def _routes(
        self, tables: list[_Table], stages: tuple[StageConfig, ...], authorizers: Mapping[str, Authorizer], models: dict[str, Model]
    ) -> tuple[RouteConfig, ...]:
        routes: list[RouteConfig] = []
        first_seen: dict[tuple, str] = {}
        to_import: list[tuple[str, FunctionIntegration]] = []  # Python handlers to import once the rest is valid
        for table in tables:
            key = None
            if table.require("route", 'every route needs a key such as "GET /pets/{id}"'):
                key = table.parsed("route", None, parse_route_key)
            integration = self._integration(table.table("integration"), key, stages)
            throttle = self._limit(table, "throttle")
            client_throttle = self._client_limit(table, "client_throttle")
            api_key_required = table.read(BY_TABLE["route"]["api_key_required"])
            cache, cache_disabled = self._cache_policy(table)
            allow, deny = self._networks(table, "allow"), self._networks(table, "deny")
            authorizer = table.string("authorizer", None)
            if authorizer is not None and authorizer not in authorizers:
                table.problem("authorizer", f"no [[authorizers]] entry is named {authorizer!r}")
            scopes = tuple(self._names(table, "scopes", lambda scope: bool(scope)))
            if scopes and (authorizer is None or not isinstance(authorizers.get(authorizer), JwtAuthorizer)):
                table.problem("scopes", "scopes are checked by a jwt authorizer, and this route names none")
            subject = table.string("client_cert_subject", None)
            if subject is not None:
                try:
                    re.compile(subject)
                except re.error as exc:
                    table.problem("client_cert_subject", f"not a regular expression: {exc}")
                if not self._client_certs:
                    table.problem("client_cert_subject", 'needs [server] tls with client_auth = "optional" or "require"')
            validation = read_validation(table, models)
            cors = self._cors(table.table("cors")) if table.has("cors") else None
            table.finish()
            if key is None or integration is None:
                continue
            # Parameter names do not tell routes apart: GET /a/{x} and GET /a/{y} collide.
            shape = (key.method, tuple((s.kind, s.text if s.kind == "literal" else "") for s in key.segments))
            if shape in first_seen:
                table.problem("route", f"{str(key)!r} duplicates {first_seen[shape]}")
                continue
            first_seen[shape] = f"{table.key_path('route')} ({str(key)!r})"
            if isinstance(integration, FunctionIntegration):
                # The payload format is the route's integration's own (as on AWS); the rest is the function's.
                first = self._functions.setdefault(integration.name, integration)
                if first is integration and integration.runtime == "python":
                    to_import.append((table.key_path("integration.handler"), integration))
                elif replace(first, handler="", payload_format="", mapping=None) != replace(
                    integration, handler="", payload_format="", mapping=None
                ):
                    why = f"function {integration.name!r} is configured differently by another route: give this one its own name"
                    table.problem("integration.name", why)
            routes.append(
                RouteConfig(
                    key, integration, throttle, client_throttle, api_key_required, cache, cache_disabled, allow, deny, subject,
                    authorizer, scopes, validation, cors,
                )
            )
        if to_import and not self.problems:
            self._import_handlers(to_import, stages)
        return tuple(routes)

    def _import_handlers(self, to_import: list[tuple[str, FunctionIntegration]], stages: tuple[StageConfig, ...]) -> None:
        """Import the Python handlers in a throwaway process (with the first stage's environment): a failure is a problem."""
        handlers = [
            (f.code_dir, f.module, f.file, f.function, {k: substitute_stage_variables(v, stages[0]) for k, v in f.environment})
            for _, f in to_import
        ]
        for (key_path, _), problem in zip(to_import, import_problems(handlers)):
            if problem is not None:
                self.problem(key_path, problem)

    def _integration(
        self, table: _Table, key: RouteKey | None, stages: tuple[StageConfig, ...]
    ) -> Integration | None:
        if not table.require("type", 'say which integration serves the route (type = "mock")'):
            table.finish()
            return None
        kind = table.string("type", None)
        if kind == "mock":
            return self._mock(table, stages)
        if kind == "http":
            return self._http(table, key, stages)
        if kind == "function":
            return self._function(table, stages)
        if kind == "aws":
            return self._aws(table, key)
        if kind is not None:
            table.problem("type", f'unknown integration type {kind!r} (supported: "mock", "http", "function", "aws")')
        table.finish()
        return None

    def _check_stage_variables(self, table: _Table, key: str, text: str, stages: tuple[StageConfig, ...]) -> bool:
        ok = True
        for name in STAGE_VARIABLE.findall(text):
            for stage in stages:
                if name not in stage.variables:
                    table.problem(key, f"uses ${{stageVariables.{name}}} but stage {stage.name!r} does not define it")
                    ok = False
        return ok

    def _mock(self, table: _Table, stages: tuple[StageConfig, ...]) -> MockIntegration:
        keys = BY_TABLE["mock"]
        status = table.read(keys["status"])
        headers = table.string_map("headers")
        body = table.read(keys["body"])
        delay = table.read(keys["delay"])
        self._check_stage_variables(table, "body", body, stages)
        mapping = read_mapping(table, self.base_dir)
        table.finish()
        lowered = {name.lower() for name in headers}
        if "content-type" not in lowered:
            headers["content-type"] = "application/json"
        return MockIntegration(status=status, headers=tuple(headers.items()), body=body, delay=delay, mapping=mapping)

    def _http(self, table: _Table, key: RouteKey | None, stages: tuple[StageConfig, ...]) -> HttpIntegration | None:
        uri = None
        if table.require("uri", 'the backend to forward to, such as "http://127.0.0.1:9000/{proxy}"'):
            uri = table.string("uri", None)
        method = table.string("method", None)
        if method is not None and method not in HTTP_METHODS:
            table.problem("method", f"expected one of {', '.join(sorted(HTTP_METHODS))}, got {method!r}")
        integration = HttpIntegration(
            uri=uri or "",
            method=method,
            timeout=table.read(BY_TABLE["http"]["timeout"]),
            connect_timeout=table.read(BY_TABLE["http"]["connect_timeout"]),
            preserve_host=table.read(BY_TABLE["http"]["preserve_host"]),
            tls=self._backend_tls(table, "tls"),
            mapping=read_mapping(table, self.base_dir),
            parameters=read_parameters(table),
        )
        table.finish()
        if uri is None or not self._check_stage_variables(table, "uri", uri, stages):
            return None
        slots = set(re.findall(r"\{([^{}]*)\}", STAGE_VARIABLE.sub("", uri)))
        known = set(key.param_names) if key is not None else set()
        for slot in sorted(slots - known):
            table.problem("uri", f"{{{slot}}} is not a path parameter of the route")
        for stage in stages:
            try:
                backend = parse_backend_uri(substitute_stage_variables(uri, stage))
            except ValueError as exc:
                where = f" (stage {stage.name!r})" if STAGE_VARIABLE.search(uri) else ""
                table.problem("uri", f"{exc}{where}")
                return None
            if "{" in backend.query:
                table.problem("uri", "path parameters may only appear in the path")
                return None
            if backend.scheme == "http" and integration.tls is not None:
                table.problem("tls", "applies to https:// backends only, and this one is http://")
                return None
            if backend.upstream is not None and self._upstream_schemes.get(backend.upstream) != backend.scheme:
                scheme = self._upstream_schemes.get(backend.upstream)
                why = f"its scheme is {scheme}: write {scheme}://upstream:{backend.upstream}/" if scheme else "no [[upstreams]] entry has it"
                table.problem("uri", f"upstream {backend.upstream!r}: {why}")
                return None
        return integration

    def _function(self, table: _Table, stages: tuple[StageConfig, ...]) -> FunctionIntegration | None:
        keys = BY_TABLE["function"]
        handler = None
        if table.require("handler", 'the handler to call, such as "app:handler" (app.py under code_dir)'):
            handler = table.string("handler", None)
        payload_format = table.string("payload_format", keys["payload_format"].default)
        if payload_format not in ("1.0", "2.0"):
            table.problem("payload_format", f'expected "1.0" or "2.0", got {payload_format!r}')
        code_dir = table.string("code_dir", None)
        code_dir = os.path.join(self.base_dir, os.path.expanduser(code_dir)) if code_dir is not None else self.base_dir
        if not os.path.isdir(code_dir):
            table.problem("code_dir", f"no such directory: {code_dir}")
        name = table.string("name", None)
        if name is not None and not _FUNCTION_NAME.fullmatch(name):
            table.problem("name", f"expected letters, digits, - and _ (at most 64), got {name!r}")
        timeout = table.read(keys["timeout"])
        memory_mb = table.read(keys["memory_mb"])
        concurrency = table.read(keys["concurrency"])
        runtime = table.string("runtime", None)
        if runtime not in (None, "python", "process"):
            table.problem("runtime", f'expected "python" or "process", got {runtime!r}')
            runtime = None
        command = self._names(table, "command", lambda part: bool(part))
        if command and runtime == "python":
            table.problem("command", 'runs a runtime process, not runtime = "python"')
        elif command and not (shutil.which(command[0]) or os.path.isfile(os.path.join(code_dir, command[0]))):
            table.problem("command", f"no program {command[0]!r} on PATH (or in code_dir)")
        min_instances = table.read(keys["min_instances"])
        max_instances = table.read(keys["max_instances"])
        if min_instances > max_instances:
            table.problem("min_instances", f"is more than max_instances ({max_instances})")
        idle_timeout = table.read(keys["idle_timeout"])
        environment = table.string_map("environment")
        for variable, value in environment.items():
            if not _ENVIRONMENT_NAME.fullmatch(variable):
                self.problem(f"{table.key_path('environment')}.{variable}", "not an environment variable name")
            self._check_stage_variables(table, f"environment.{variable}", value, stages)
        mapping = read_mapping(table, self.base_dir)
        table.finish()
        if handler is None:
            return None
        try:
            module, function = split_handler(handler)
        except ValueError as exc:
            table.problem("handler", str(exc))
            return None
        if not os.path.isdir(code_dir):
            return None
        path = module_file(code_dir, module)
        if path is None and not command:
            where = os.path.join(code_dir, *module.split("."))
            table.problem("handler", f"no module {module!r}: neither {where}.py nor {where}/__init__.py exists (nor .js, .mjs, .cjs)")
            return None
        script = path is not None and path.endswith(SCRIPT_SUFFIXES)
        if runtime is None:
            runtime = "process" if script or command else "python"
        if runtime == "python" and script:
            table.problem("runtime", f'{path} is not Python: it runs as runtime = "process"')
            return None
        problem = handler_problem(path, function) if path is not None and not script else None
        if problem is not None:
            table.problem("handler", problem)
            return None
        if runtime == "process" and not command:
            if script and shutil.which("node") is None:
                table.problem("handler", f"{path} needs Node.js: no node on PATH")
                return None
        return FunctionIntegration(
            name=name or re.sub(r"[.:/]", "-", handler)[:64],
            handler=handler,
            module=module,
            function=function,
            file=path or "",
            code_dir=code_dir,
            payload_format=payload_format or "2.0",
            timeout=timeout,
            memory_mb=memory_mb,
            concurrency=concurrency,
            environment=tuple(environment.items()),
            runtime=runtime,
            command=tuple(command),
            min_instances=min_instances,
            max_instances=max_instances,
            idle_timeout=idle_timeout,
            mapping=mapping,
        )

    def _aws(self, table: _Table, key: RouteKey | None) -> AwsIntegration | None:
        keys = BY_TABLE["aws"]
        name = table.string("service", None) if table.require("service", 'the AWS service to call, such as "dynamodb"') else None
        model = service_model(name) if name is not None else None
        if isinstance(model, str):
            table.problem("service", model)
            model = None
        elif model is not None and model.protocol not in PROTOCOLS:
            table.problem("service", f"{name} speaks the {model.protocol} protocol, which gwd does not")
            model = None
        action, path, method = read_target(table, model) if model is not None else (None, None, "POST")
        if path is not None and key is not None:
            known = set(key.param_names)
            for slot in sorted(set(re.findall(r"\{([^{}]*)\}", path)) - known):
                table.problem("path", f"{{{slot}}} is not a path parameter of the route")
        region = table.string("region", None) or default_region()
        endpoint = read_endpoint(table)
        credentials = read_credentials(table)
        timeout = table.read(keys["timeout"])
        connect_timeout = table.read(keys["connect_timeout"])
        tls = self._backend_tls(table, "tls")
        mapping = read_mapping(table, self.base_dir)
        table.finish()
        if model is None or credentials is None or (action is None and path is None):
            return None
        if tls is not None and not endpoint.startswith("https://"):
            table.problem("tls", "applies to an https:// endpoint only")
            return None
        return AwsIntegration(
            service=model.name,
            action=action,
            path=path,
            method=method,
            region=region,
            endpoint=endpoint or f"https://{model.endpoint_prefix}.{region}.amazonaws.com",
            credentials=credentials,
            timeout=timeout,
            connect_timeout=connect_timeout,
            protocol=model.protocol,
            target=model.target,
            json_version=model.json_version,
            signing_name=model.signing_name,
            tls=tls,
            mapping=mapping,
        )

    def _backend_tls(self, parent: _Table, key: str) -> BackendTls | None:
        """``{ client_cert, client_key, ca, server_name, insecure_skip_verify }`` under ``key``, checked on disk."""
        if not parent.has(key):
            return None
        table = parent.table(key)
        client_cert = self._file(table, "client_cert")
        client_key = self._file(table, "client_key")
        ca = self._file(table, "ca")
        server_name = table.string("server_name", None)
        insecure = table.read(BY_TABLE["backend_tls"]["insecure_skip_verify"])
        table.finish()
        if (client_cert is None) != (client_key is None):
            table.problem("client_key" if client_key is None else "client_cert", "client_cert and client_key go together")
            return None
        if insecure and client_cert is not None:
            table.problem(
                "insecure_skip_verify",
                "the client certificate is never presented to a backend whose certificate is not verified:"
                " drop insecure_skip_verify or the client certificate",
            )
            return None
        if not self._usable_tls(
            table, "client_key", client_cert, client_key, lambda: backend_context(client_cert, client_key, ca, insecure)
        ):
            return None
        if insecure:
            self.warnings.append(
                f"{self.source}: {table.key_path('insecure_skip_verify')}: backend certificates are not verified;"
                " anyone on the path can impersonate the backend"
            )
        if client_cert is not None:
            expiring = expiry_warning(client_cert)
            if expiring:
                self.warnings.append(f"{self.source}: {table.key_path('client_cert')}: {expiring}")
        return BackendTls(client_cert, client_key, ca, server_name, insecure)

    def _usable_tls(
        self, table: _Table, key_name: str, cert_path: str | None, key_path: str | None, build: Callable[[], object]
    ) -> bool:
        """Whether the private key (if any) is its owner's alone and ``build`` makes a context of the files; else report why."""
        if key_path is not None:
            problem = private_key_problem(key_path)
            if problem:
                table.problem(key_name, problem)
                return False
        try:
            build()
        except (OSError, ssl.SSLError, ValueError) as exc:
            reason = getattr(exc, "reason", None) or str(exc)
            if reason == "KEY_VALUES_MISMATCH":
                table.problem(key_name, f"the private key {key_path} is not the key of the certificate {cert_path}")
            else:
                self.problem(table.path, f"cannot use these files: {reason}")
            return False
        return True

    def _file(self, table: _Table, key: str) -> str | None:
        """An existing file's absolute path under ``key`` (relative to the config's directory), or None."""
        name = table.string(key, None)
        if name is None:
            return None
        path = os.path.join(self.base_dir, os.path.expanduser(name))
        if not os.path.isfile(path):
            table.problem(key, f"no such file: {path}")
            return None
        return path


def default_state_dir() -> str:
    """systemd's StateDirectory, else /var/lib/gwd for root, else ~/.local/state/gwd."""
    if os.environ.get("STATE_DIRECTORY"):
        return os.environ["STATE_DIRECTORY"].split(":")[0]
    if os.geteuid() == 0:
        return "/var/lib/gwd"
    return os.path.join(os.path.expanduser("~"), ".local", "state", "gwd")


def _absolute_path(text: str) -> str:
    path = os.path.expanduser(text)
    if not os.path.isabs(path):
        raise ValueError(f"expected an absolute path, got {text!r}")
    return path


def default_worker_count() -> int:
    """One worker per CPU this process may run on (respects cgroup/affinity limits)."""
    return len(os.sched_getaffinity(0)) or 1


def _module_exists(name: str) -> bool:
    """Whether ``name`` can be imported (its parent packages are imported to tell)."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _describe(value: Any) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "an array", dict: "a table"}
    name = names.get(type(value), type(value).__name__)
    return name if isinstance(value, (dict, list)) else f"{name} ({value!r})"


def _seconds(value: float) -> str:
    return f"{value:g}s"
