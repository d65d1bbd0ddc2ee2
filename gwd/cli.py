"""The ``gwd`` command: run, check, keys, usage, cache, certs, version."""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import re
import sys
import time
from datetime import date, datetime, timedelta, timezone
from typing import Any, Sequence

from gwd import __version__
from gwd.config.model import Address, Config, ConfigError
from gwd.config.reader import BUILTIN_SOURCE, load_config
from gwd.config.values import parse_address
from gwd.logs import setup_logging
from gwd.stores.keystore import PERMISSIONS, ApiKey, KeyStore, KeyStoreError

log = logging.getLogger("gwd")

EXIT_CONFIG = 78
"""sysexits' EX_CONFIG: a unit can refuse to restart on it (RestartPreventExitStatus=78)."""
EXIT_RUNTIME = 1
EXIT_USAGE = 2
FLUSH_WAIT = 3.0
"""How long `gwd cache flush` waits for running workers to say they applied it."""


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    return args.command(args)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gwd", description="gwd, a self-hosted API gateway daemon.")
    parser.add_argument("--version", action="version", version=f"gwd {__version__}")
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="serve a config (the built-in default without -c)")
    run.add_argument("-c", "--config", metavar="FILE", help="config file (TOML)")
    run.add_argument("--listen", metavar="HOST:PORT", type=_address, help="override server.listen")
    run.add_argument("--workers", metavar="N", type=_worker_count, help="override server.workers (0: one per CPU)")
    run.add_argument("--admin-listen", metavar="HOST:PORT", type=_admin_address, help='override admin.listen ("off": none)')
    run.set_defaults(command=_run)

    check = commands.add_parser("check", help="validate a config file and exit")
    check.add_argument("-c", "--config", metavar="FILE", help="config file (TOML); the built-in default without it")
    check.set_defaults(command=_check)

    openapi = commands.add_parser("import", help="write a config from an OpenAPI 2.0/3.0 document exported from API Gateway")
    openapi.add_argument("document", metavar="FILE", help="the exported document (JSON or YAML)")
    openapi.add_argument("--api", metavar="NAME", help="the API's name (default: the document's title)")
    openapi.add_argument("--stage", help='the stage its routes are served under (default: its base path, else "$default")')
    openapi.add_argument("-o", "--output", metavar="FILE", help="where to write the config (default: stdout)")
    openapi.add_argument(
        "--function", action="append", default=[], metavar="NAME=module:function",
        help="the handler of a Lambda function the document names (by name or ARN); repeat for each",
    )
    openapi.add_argument("--code-dir", default=".", metavar="DIR", help="where those handlers' code is (default: .)")
    openapi.add_argument("--strict", action="store_true", help="fail if anything of the document is not carried over")
    openapi.set_defaults(command=_import)

    export = commands.add_parser("export", help="write a config's routes as an OpenAPI document (JSON)")
    export.add_argument("-c", "--config", metavar="FILE", help="config file (TOML); the built-in default without it")
    export.add_argument("--api", metavar="NAME", help="the API to describe (needed when the config has several)")
    export.add_argument("--stage", help="the stage to describe (default: the API's first)")
    export.add_argument("--format", choices=("oas30", "swagger"), default="oas30", help="OpenAPI 3.0 (default) or Swagger 2.0")
    export.add_argument("--aws-extensions", action="store_true", help="add the x-amazon-apigateway-* settings (integrations, ...)")
    export.add_argument("-o", "--output", metavar="FILE", help="where to write it (default: stdout)")
    export.set_defaults(command=_export)

    keys = commands.add_parser("keys", help="manage API keys (stored hashed in the state directory)")
    keys_commands = keys.add_subparsers(title="keys commands", required=True, metavar="COMMAND")
    create = keys_commands.add_parser("create", help="create a key and print its value, once")
    create.add_argument("--name", required=True)
    create.add_argument("--plan", help="the usage plan whose limits apply to the key")
    create.add_argument("--value", help="the key's value (at least 20 characters); generated when left out")
    create.add_argument(
        "--permission",
        action="append",
        default=[],
        choices=sorted(PERMISSIONS),
        help="allow the key more than calling routes (cache-invalidate: refresh cached responses); repeatable",
    )
    create.set_defaults(command=_keys_create)
    listing = keys_commands.add_parser("list", help="list keys (never their values)")
    listing.set_defaults(command=_keys_list)
    revoke = keys_commands.add_parser("revoke", help="revoke a key; running daemons refuse it within a second")
    revoke.add_argument("name")
    revoke.set_defaults(command=_keys_revoke)
    show = keys_commands.add_parser("show", help="show one key (never its value)")
    show.add_argument("name")
    show.set_defaults(command=_keys_show)
    for sub in (create, listing, revoke, show):
        sub.add_argument("-c", "--config", metavar="FILE", help="the daemon's config file (for server.state_dir and plans)")

    usage = commands.add_parser("usage", help="print per-day request counts of keys whose plan has a quota")
    usage.add_argument("--key", metavar="NAME", help="one key only")
    usage.add_argument("--from", dest="first_day", metavar="YYYY-MM-DD", type=_day, help="first day (default: 30 days ago)")
    usage.add_argument("--to", dest="last_day", metavar="YYYY-MM-DD", type=_day, help="last day (default: today, UTC)")
    usage.add_argument("-c", "--config", metavar="FILE", help="the daemon's config file (for server.state_dir)")
    usage.set_defaults(command=_usage)

    cache = commands.add_parser("cache", help="act on a running daemon's response cache")
    cache_commands = cache.add_subparsers(title="cache commands", required=True, metavar="COMMAND")
    flush = cache_commands.add_parser("flush", help="drop cached responses on every worker (within a second)")
    flush.add_argument("--stage", metavar="NAME", help="only this stage's (default: every stage's)")
    flush.add_argument("--route", metavar="KEY", help='only this route\'s, e.g. "GET /pets/{id}" (default: every route\'s)')
    flush.add_argument("-c", "--config", metavar="FILE", help="the daemon's config file (for server.state_dir)")
    flush.set_defaults(command=_cache_flush)

    certs = commands.add_parser("certs", help="a private CA for mTLS to backends: create, issue, inspect certificates")
    certs_commands = certs.add_subparsers(title="certs commands", required=True, metavar="COMMAND")
    init = certs_commands.add_parser("init", help="create a CA and the gateway's client certificate in DIR")
    init.add_argument("directory", metavar="DIR")
    init.add_argument("--days", type=_days, default=3650, help="how long the CA is valid (default 3650)")
    init.add_argument("--force", action="store_true", help="replace an existing CA")
    init.set_defaults(command=_certs_init)
    issue = certs_commands.add_parser("issue", help="issue a certificate signed by the CA in DIR")
    issue.add_argument("directory", metavar="DIR")
    issue.add_argument("--name", required=True, help="common name, and the file stem: DIR/NAME.pem and DIR/NAME.key")
    issue.add_argument("--san", action="append", default=[], type=_san, help="an IP address or DNS name the certificate is for; repeatable")
    issue.add_argument("--client", action="store_true", help="a client certificate (for mTLS) instead of a server one")
    issue.add_argument("--days", type=_days, default=825, help="how long it is valid (default 825)")
    issue.add_argument("--force", action="store_true", help="replace an existing certificate (a renewal)")
    issue.set_defaults(command=_certs_issue)
    show = certs_commands.add_parser("show", help="print a certificate's subject, SANs and validity")
    show.add_argument("file", metavar="FILE")
    show.set_defaults(command=_certs_show)

    version = commands.add_parser("version", help="print the version")
    version.set_defaults(command=lambda args: print(f"gwd {__version__}") or 0)
    return parser


def _open_keys(args: argparse.Namespace) -> tuple[Config, KeyStore] | None:
    config = _load_or_report(args.config, {})
    if config is None:
        return None
    return config, KeyStore(config.server.state_dir)


def _keys_create(args: argparse.Namespace) -> int:
    opened = _open_keys(args)
    if opened is None:
        return EXIT_CONFIG
    config, store = opened
    if args.plan is not None and args.plan not in {plan.name for plan in config.usage_plans}:
        print(f"gwd: no usage plan named {args.plan!r} in {config.source}", file=sys.stderr)
        return EXIT_USAGE
    try:
        key, value = store.create(args.name, args.plan, args.value, frozenset(args.permission))
    except KeyStoreError as exc:
        print(f"gwd: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(f"created key {key.name} (id {key.id}, plan {key.plan or '-'}); its value, shown this once:")
    print(value)
    return 0


def _keys_list(args: argparse.Namespace) -> int:
    opened = _open_keys(args)
    if opened is None:
        return EXIT_CONFIG
    print(f"{'NAME':<24} {'ID':<18} {'PLAN':<16} {'CREATED (UTC)':<20} STATUS")
    for key in opened[1].list():
        print(_key_line(key))
    return 0


def _keys_show(args: argparse.Namespace) -> int:
    return _key_action(args, lambda store: store.get(args.name))


def _keys_revoke(args: argparse.Namespace) -> int:
    return _key_action(args, lambda store: store.revoke(args.name))


def _key_action(args: argparse.Namespace, action: Any) -> int:
    opened = _open_keys(args)
    if opened is None:
        return EXIT_CONFIG
    try:
        key = action(opened[1])
    except KeyStoreError as exc:
        print(f"gwd: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(_key_line(key))
    return 0


def _key_line(key: ApiKey) -> str:
    created = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(key.created_at))
    status = "active" if key.revoked_at is None else "revoked " + time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(key.revoked_at))
    permissions = f" (may {', '.join(sorted(key.permissions))})" if key.permissions else ""
    return f"{key.name:<24} {key.id:<18} {key.plan or '-':<16} {created:<20} {status}{permissions}"


def _cache_flush(args: argparse.Namespace) -> int:
    opened = _open_keys(args)
    if opened is None:
        return EXIT_CONFIG
    config, store = opened
    stages = [stage for api in config.apis for stage in api.stages]
    routes = [route for api in config.apis for route in api.routes]
    if args.stage is not None and args.stage not in {stage.name for stage in stages}:
        print(f"gwd: no stage named {args.stage!r} in any API of {config.source}", file=sys.stderr)
        return EXIT_USAGE
    if args.route is not None and args.route not in {str(route.key) for route in routes}:
        print(f"gwd: no route {args.route!r} in any API of {config.source}", file=sys.stderr)
        return EXIT_USAGE
    if not any(stage.cache for stage in stages) and not any(route.cache for route in routes):
        print(f"gwd: nothing in {config.source} is cached (no stage or route has a cache): nothing to flush", file=sys.stderr)
        return EXIT_USAGE
    if config.cache.backend == "memory":
        return _flush_workers_caches(store, args.stage, args.route, config.server.state_dir)
    import redis

    try:
        stage_names = {api.name: [stage.name for stage in api.stages] for api in config.apis}
        dropped = _flush_redis_cache(config.cache.backend, stage_names, args.stage, args.route)
    except (redis.exceptions.RedisError, OSError) as exc:
        print(f"gwd: cannot reach the cache at {config.cache.backend}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(f"cache flushed (stage {args.stage or 'all'}, route {args.route or 'all'}): {dropped} responses dropped")
    return 0


def _flush_workers_caches(store: KeyStore, stage: str | None, route: str | None, state_dir: str) -> int:
    """Ask running workers to drop their memory caches' entries, and say how many did within FLUSH_WAIT seconds."""
    flush_id = store.request_cache_flush(stage, route)
    what = f"stage {stage or 'all'}, route {route or 'all'}"
    deadline = time.monotonic() + FLUSH_WAIT
    applied, changed_at = 0, time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.05)
        now_applied = store.cache_flush_workers(flush_id)
        if now_applied != applied:
            applied, changed_at = now_applied, time.monotonic()
        elif applied and time.monotonic() - changed_at > 0.5:
            break  # every running worker polls the database 4 times a second: no more are coming
    if not applied:
        print(
            f"gwd: no running daemon applied the flush within {FLUSH_WAIT:g}s: none uses the state directory {state_dir}"
            " (a memory cache lives and dies with its daemon)",
            file=sys.stderr,
        )
        return EXIT_RUNTIME
    print(f"cache flushed ({what}) by {_plural(applied, 'worker')}")
    return 0


def _flush_redis_cache(url: str, stages: dict[str, list[str]], stage: str | None, route: str | None) -> int:
    """Delete the matching ``gwd:cache:...`` entries; how many."""
    import redis

    from gwd.stages.cache import flush_prefixes

    prefixes = flush_prefixes(stages, stage, route)
    client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
    dropped = 0
    try:
        for prefix in prefixes:
            pattern = "gwd:cache:" + re.sub(r"([\\*?\[\]])", r"\\\1", prefix) + "*"
            for name in client.scan_iter(match=pattern, count=1000):
                dropped += client.delete(name)
    finally:
        client.close()
    return dropped


def _usage(args: argparse.Namespace) -> int:
    opened = _open_keys(args)
    if opened is None:
        return EXIT_CONFIG
    today = datetime.now(timezone.utc).date()
    first_day = args.first_day or (today - timedelta(days=30)).isoformat()
    last_day = args.last_day or today.isoformat()
    if first_day > last_day:
        print(f"gwd: --from {first_day} is after --to {last_day}", file=sys.stderr)
        return EXIT_USAGE
    config, store = opened
    try:
        if config.throttle.backend == "memory":
            rows = store.usage(args.key, first_day, last_day)
        else:
            rows = _redis_usage(config.throttle.backend, store, args.key, first_day, last_day)
    except KeyStoreError as exc:
        print(f"gwd: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        print(f"gwd: cannot read usage from {config.throttle.backend}: {exc}", file=sys.stderr)
        return EXIT_RUNTIME
    print(f"{'DAY':<12} {'KEY':<24} REQUESTS")
    for name, day, count in rows:
        print(f"{day:<12} {name:<24} {count}")
    return 0


def _redis_usage(url: str, store: KeyStore, name: str | None, first_day: str, last_day: str) -> list[tuple[str, str, int]]:
    """Per-day counts from the Redis that the daemons count quotas in."""
    import redis

    from gwd.stores.limiters import usage_key

    keys = [store.get(name)] if name is not None else store.list()
    client = redis.Redis.from_url(url, socket_timeout=5)
    try:
        rows = []
        for key in keys:
            for day, count in sorted(client.hgetall(usage_key(key.id)).items()):
                if first_day <= day.decode() <= last_day:
                    rows.append((key.name, day.decode(), int(count)))
        return rows
    except redis.exceptions.RedisError as exc:
        raise OSError(str(exc)) from None
    finally:
        client.close()


def _day(text: str) -> str:
    try:
        return date.fromisoformat(text).isoformat()
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date as YYYY-MM-DD, got {text!r}") from None


def _days(text: str) -> int:
    """A validity in days: at least 1 (0 or less would write a certificate already expired)."""
    if not text.isdigit() or not 1 <= int(text) <= 36500:
        raise argparse.ArgumentTypeError(f"expected a number of days from 1 to 36500, got {text!r}")
    return int(text)


def _san(text: str) -> str:
    from gwd.certs import CertError, check_san

    try:
        return check_san(text)
    except CertError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _address(text: str) -> Any:
    try:
        return parse_address(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _certs_init(args: argparse.Namespace) -> int:
    from gwd.certs import CertError, init_authority

    try:
        ca, gateway = init_authority(args.directory, days=args.days, force=args.force)
    except (CertError, OSError) as exc:
        print(f"gwd: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(f"CA: {ca.certificate} (key {ca.key})")
    print(f"gateway client certificate: {gateway.certificate} (key {gateway.key})")
    return 0


def _certs_issue(args: argparse.Namespace) -> int:
    from gwd.certs import CertError, issue

    try:
        issued = issue(args.directory, args.name, sans=args.san, days=args.days, client=args.client, force=args.force)
    except (CertError, OSError) as exc:
        print(f"gwd: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(f"{'client' if args.client else 'server'} certificate: {issued.certificate} (key {issued.key})")
    return 0


def _certs_show(args: argparse.Namespace) -> int:
    from gwd.certs import CertError, describe

    try:
        fields = describe(args.file)
    except CertError as exc:
        print(f"gwd: {exc}", file=sys.stderr)
        return EXIT_USAGE
    for name, value in fields.items():
        print(f"{name + ':':12} {value}")
    return 0


def _admin_address(text: str) -> Address | str:
    """``HOST:PORT``, or "off" (returned as "")."""
    return "" if text == "off" else _address(text)


def _worker_count(text: str) -> int:
    if not text.isdigit() or int(text) > 1024:
        raise argparse.ArgumentTypeError(f"expected a number of workers from 0 to 1024, got {text!r}")
    return int(text)


def _load_or_report(path: str | None, overrides: dict[str, Any], outcome: str = "nothing was started") -> Config | None:
    """The config, or None after printing its problems and what that meant (``outcome``, after a semicolon)."""
    try:
        return load_config(path, overrides)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        count = _plural(len(exc.problems), "problem")
        print(f"{path or BUILTIN_SOURCE}: {count}" + (f"; {outcome}" if outcome else ""), file=sys.stderr)
        return None


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _log_warnings(config: Config) -> Config:
    """Log what the config loader warned of; at start and at every reload."""
    for warning in config.warnings:
        log.warning("%s", warning)
    return config


def _check(args: argparse.Namespace) -> int:
    config = _load_or_report(args.config, {}, outcome="")
    if config is None:
        return EXIT_CONFIG
    for warning in config.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    routes = sum(len(api.routes) for api in config.apis)
    stages = sum(len(api.stages) for api in config.apis)
    apis = f", {_plural(len(config.apis), 'API')}" if len(config.apis) > 1 else ""
    print(f"{config.source}: OK ({_plural(routes, 'route')}, {_plural(stages, 'stage')}{apis})")
    return 0


def _import(args: argparse.Namespace) -> int:
    """Each thing not carried over is one stderr line (its JSON pointer and why); --strict makes any an error."""
    import tomli_w

    from gwd.openapi.importer import DocumentError, import_document, load_document

    functions = {}
    for item in args.function:
        name, _, handler = item.partition("=")
        if not name or not handler:
            print(f"gwd import: --function {item!r}: expected NAME=module:function", file=sys.stderr)
            return EXIT_USAGE
        functions[name] = handler
    try:
        with open(args.document, encoding="utf-8") as f:
            document = load_document(f.read())
    except (OSError, UnicodeDecodeError, DocumentError) as exc:
        print(f"gwd import: {args.document}: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    config, dropped = import_document(document, args.stage, functions, os.path.abspath(args.code_dir), args.api)
    for item in dropped:
        print(f"{args.document}: {'error' if args.strict else 'not imported'}: {item}", file=sys.stderr)
    if dropped and args.strict:
        print(f"gwd import: {_plural(len(dropped), 'thing')} not carried over (--strict); nothing written", file=sys.stderr)
        return EXIT_CONFIG
    header = "# Written by gwd import from an OpenAPI document; check it with: gwd check -c FILE\n\n"
    _write_output(args.output, header + tomli_w.dumps(config, multiline_strings=True))
    return 0


def _export(args: argparse.Namespace) -> int:
    """What the document cannot say is one stderr line each; the export still succeeds."""
    from gwd.openapi.exporter import export_document

    config = _load_or_report(args.config, {}, outcome="")
    if config is None:
        return EXIT_CONFIG
    names = [api.name for api in config.apis]
    if args.api is None and len(names) > 1:
        print(f"gwd export: {config.source} has {len(names)} APIs: name one with --api ({', '.join(names)})", file=sys.stderr)
        return EXIT_USAGE
    if args.api is not None and args.api not in names:
        print(f"gwd export: {config.source} has no API {args.api!r} (APIs: {', '.join(names)})", file=sys.stderr)
        return EXIT_USAGE
    api = config.api(args.api or names[0])
    try:
        document, notes = export_document(api, args.stage, args.format == "swagger", args.aws_extensions, bool(config.domains))
    except ValueError as exc:
        print(f"gwd export: {exc}", file=sys.stderr)
        return EXIT_USAGE
    for note in notes:
        print(f"{api.source}: not exported: {note}", file=sys.stderr)
    _write_output(args.output, json.dumps(document, indent=2) + "\n")
    return 0


def _write_output(path: str | None, text: str) -> None:
    """``text`` into the file ``-o`` named, or to stdout without one."""
    if path:
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
    else:
        sys.stdout.write(text)


def _run(args: argparse.Namespace) -> int:
    overrides: dict[str, Any] = {}
    if args.listen is not None:
        overrides["listen"] = args.listen
    if args.workers is not None:
        overrides["workers"] = args.workers
    if args.admin_listen is not None:
        overrides["admin_listen"] = args.admin_listen or None
    config = _load_or_report(args.config, overrides)
    if config is None:
        return EXIT_CONFIG
    setup_logging(config.log.level)
    _log_warnings(config)
    # Imported here so that `gwd check` stays light.
    from gwd.privileges import PrivilegeError
    from gwd.stores.buckets import BucketTable
    from gwd.stores.health import HealthTable
    from gwd.stores.invocations import InvocationSlots
    from gwd.supervisor import Supervisor
    from gwd.worker import run_worker

    # Created before any fork, so every worker of every generation shares it.
    buckets = BucketTable(config.throttle.table_size)
    invocations = InvocationSlots()
    health = HealthTable()
    events = None
    if config.metrics.enabled:
        from gwd.telemetry.prometheus import SupervisorEvents, prepare_directory

        # Before anything imports prometheus-client: it picks its storage then.
        prepare_directory(os.environ.get("RUNTIME_DIRECTORY", "").split(":")[0] or config.server.state_dir)
        events = SupervisorEvents(__version__)
    try:
        supervisor = Supervisor(
            config,
            lambda: _log_warnings(load_config(args.config, overrides)),
            functools.partial(run_worker, buckets=buckets, invocations=invocations, health=health),
            events,
        )
        if config.admin.listen is not None:
            import orjson

            from gwd.admin import AdminServer
            from gwd.stores.health import upstreams_report
            from gwd.telemetry.prometheus import exposition

            supervisor.add_service(
                AdminServer(
                    config.admin.listen,
                    lambda: supervisor.ready,
                    functools.partial(exposition, buckets=buckets) if config.metrics.enabled else None,
                    lambda: orjson.dumps(upstreams_report(supervisor.config.upstreams, health)),
                )
            )
        if config.server.user is not None:
            # The sockets are bound: now become the configured user, before any worker exists.
            from gwd.privileges import drop_to

            if config.metrics.enabled:
                from gwd.telemetry.prometheus import preload

                preload()
            os.makedirs(config.server.state_dir, mode=0o700, exist_ok=True)
            owned = [config.server.state_dir, os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")]
            if config.log.access.startswith("/"):
                open(config.log.access, "a").close()
                owned.append(config.log.access)
            drop_to(config.server.user, [path for path in owned if path])
    except (OSError, PrivilegeError) as exc:
        print(f"gwd: {exc}", file=sys.stderr)
        return EXIT_RUNTIME
    try:
        return supervisor.run()
    finally:
        if config.metrics.enabled:
            from gwd.telemetry.prometheus import remove_directory

            remove_directory()
