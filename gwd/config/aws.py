"""Reading an ``aws`` integration: the service and action checked against botocore's own service models.

botocore ships every AWS service's model (its protocol, its JSON target
prefix, its API version, its operations), so a misspelt service or action
is a config problem, and the integration learns at load how the service
is spoken to.  Credentials are looked for here too (not kept: the
integration reads them where it runs), so a daemon without them does not
start.
"""

from __future__ import annotations

import difflib
import os
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from gwd.config.model import HTTP_METHODS, AwsCredentials
from gwd.config.values import parse_backend_uri

if TYPE_CHECKING:
    from gwd.config.reader import _Table

DEFAULT_REGION = "us-east-1"
PROTOCOLS = ("json", "query", "rest-json", "rest-xml")
"""What gwd speaks; the EC2 protocol (a dialect of query) is not among them."""


class ServiceModel:
    """What the integration needs of one service's botocore model."""

    __slots__ = ("name", "protocol", "target", "json_version", "signing_name", "endpoint_prefix", "operations")

    def __init__(self, name: str, model: dict[str, Any]) -> None:
        metadata = model["metadata"]
        self.name = name
        self.protocol: str = metadata.get("protocol", "")
        self.target: str = metadata.get("targetPrefix") or metadata.get("apiVersion", "")
        if self.protocol == "query":
            self.target = metadata.get("apiVersion", "")
        self.json_version: str = metadata.get("jsonVersion", "1.0")
        self.signing_name: str = metadata.get("signingName") or metadata.get("endpointPrefix") or name
        self.endpoint_prefix: str = metadata.get("endpointPrefix") or name
        self.operations = frozenset(model["operations"])


@lru_cache(maxsize=64)
def service_model(name: str) -> ServiceModel | str:
    """The service's model, or why there is none."""
    # botocore is imported here, not at the top: a config without aws integrations never loads it (a quarter second).
    from botocore.exceptions import DataNotFoundError, UnknownServiceError
    from botocore.loaders import Loader

    loader = Loader()
    try:
        return ServiceModel(name, loader.load_service_model(name, "service-2"))
    except (UnknownServiceError, DataNotFoundError):
        near = difflib.get_close_matches(name, loader.list_available_services("service-2"), n=1)
        return f"unknown AWS service {name!r}" + (f" (did you mean {near[0]!r}?)" if near else "")


def read_credentials(table: _Table) -> AwsCredentials | None:
    """``credentials = "env" | "profile:NAME" | { access_key_id_env, secret_access_key_env, session_token_env }``."""
    raw = table.get("credentials", (str, dict), "env", 'a string ("env", "profile:NAME") or a table')
    if isinstance(raw, dict):
        sub = table.table("credentials")
        names = {key: sub.string(key, None) for key in ("access_key_id_env", "secret_access_key_env", "session_token_env")}
        sub.finish()
        for key in ("access_key_id_env", "secret_access_key_env"):
            if names[key] is None:
                sub.problem(key, "missing: the name of the environment variable holding it")
                return None
        for key, variable in names.items():
            if variable is not None and not os.environ.get(variable):
                sub.problem(key, f"the environment variable {variable} is not set")
                return None
        return AwsCredentials("variables", None, names["access_key_id_env"], names["secret_access_key_env"], names["session_token_env"])
    if raw == "env":
        missing = [name for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY") if not os.environ.get(name)]
        if missing:
            table.problem("credentials", f'"env" reads {" and ".join(missing)} from the daemon\'s environment: not set')
            return None
        return AwsCredentials("env")
    if raw.startswith("profile:") and raw[8:]:
        from botocore.exceptions import ProfileNotFound
        from botocore.session import Session

        profile = raw[8:]
        try:
            found = Session(profile=profile).get_credentials()
        except ProfileNotFound:
            found = None
        if found is None:
            table.problem("credentials", f"no credentials for the profile {profile!r} (shared credentials and config files)")
            return None
        return AwsCredentials("profile", profile)
    table.problem("credentials", f'expected "env", "profile:NAME" or a table, got {raw!r}')
    return None


def read_target(table: _Table, model: ServiceModel) -> tuple[str | None, str | None, str]:
    """(action, path, method): an action for JSON and query services, a path and method for REST ones (S3)."""
    action = table.string("action", None)
    path = table.string("path", None)
    method = table.string("method", None)
    if method is not None and method not in HTTP_METHODS:
        table.problem("method", f"expected one of {', '.join(sorted(HTTP_METHODS))}, got {method!r}")
        method = None
    if model.protocol in ("json", "query"):
        if path is not None:
            table.problem("path", f"{model.name} is called by action (its protocol is {model.protocol}), not by path")
        if action is None:
            table.problem("action", f"missing: the {model.name} operation to call, such as {min(model.operations)!r}")
        elif action not in model.operations:
            near = difflib.get_close_matches(action, model.operations, n=1)
            table.problem("action", f"{model.name} has no operation {action!r}" + (f" (did you mean {near[0]!r}?)" if near else ""))
            action = None
        return action, None, "POST"
    if action is not None:
        table.problem("action", f"{model.name} is called by path and method (its protocol is {model.protocol}), not by action")
    if path is None:
        table.problem("path", 'missing: the request path, such as "/bucket/{key}"')
    elif not path.startswith("/"):
        table.problem("path", f"must start with /, got {path!r}")
        path = None
    return None, path, method or "GET"


def read_endpoint(table: _Table) -> str:
    """``endpoint``: ``scheme://host[:port]`` with no path; "" for the service's own AWS endpoint."""
    endpoint = table.string("endpoint", None)
    if endpoint is None:
        return ""
    try:
        uri = parse_backend_uri(endpoint)
    except ValueError as exc:
        table.problem("endpoint", str(exc))
        return ""
    if uri.path not in ("", "/") or uri.query:
        table.problem("endpoint", f"expected scheme://host[:port] with no path, got {endpoint!r}")
        return ""
    return endpoint.rstrip("/")


def default_region() -> str:
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or DEFAULT_REGION
