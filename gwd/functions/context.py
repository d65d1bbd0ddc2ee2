"""The ``context`` a handler is called with: what AWS's Python runtime gives, with gwd's values."""

from __future__ import annotations

import os
import time

from gwd.config.model import FunctionIntegration
from gwd.functions.events import ACCOUNT_ID, REGION

VERSION = "$LATEST"


def function_arn(name: str) -> str:
    return f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{name}"


def function_environment(config: FunctionIntegration, configured: dict[str, str]) -> dict[str, str]:
    """The variables a handler sees: the runtime's own (as AWS sets them), then the configured ones."""
    name = config.name
    return {
        "AWS_LAMBDA_FUNCTION_NAME": name,
        "AWS_LAMBDA_FUNCTION_VERSION": VERSION,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(config.memory_mb),
        "AWS_LAMBDA_FUNCTION_TIMEOUT": f"{config.timeout:g}",
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{name}",
        "AWS_LAMBDA_LOG_STREAM_NAME": log_stream_name(),
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_EXECUTION_ENV": "gwd",
        "LAMBDA_TASK_ROOT": config.code_dir,
        "_HANDLER": config.handler,
        **configured,
    }


def log_stream_name() -> str:
    """AWS's ``YYYY/MM/DD/[$LATEST]ID``, the id this worker process's."""
    return time.strftime("%Y/%m/%d", time.gmtime()) + f"/[{VERSION}]gwd{os.getpid()}"


class CognitoIdentity:
    """``context.identity``: empty, as for every invocation through API Gateway."""

    __slots__ = ("cognito_identity_id", "cognito_identity_pool_id")

    def __init__(self) -> None:
        self.cognito_identity_id = None
        self.cognito_identity_pool_id = None


class LambdaContext:
    """The attributes and method of AWS's Python ``LambdaContext`` (``memory_limit_in_mb`` is a string there too)."""

    __slots__ = (
        "aws_request_id",
        "function_name",
        "function_version",
        "invoked_function_arn",
        "memory_limit_in_mb",
        "log_group_name",
        "log_stream_name",
        "identity",
        "client_context",
        "_deadline",
    )

    def __init__(self, config: FunctionIntegration, request_id: str, arn: str, log_stream: str) -> None:
        self.aws_request_id = request_id
        self.function_name = config.name
        self.function_version = VERSION
        self.invoked_function_arn = arn
        self.memory_limit_in_mb = str(config.memory_mb)
        self.log_group_name = f"/aws/lambda/{config.name}"
        self.log_stream_name = log_stream
        self.identity = CognitoIdentity()
        self.client_context = None
        self._deadline = time.monotonic() + config.timeout

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))

    def __repr__(self) -> str:
        return f"LambdaContext(aws_request_id={self.aws_request_id!r}, function_name={self.function_name!r})"
