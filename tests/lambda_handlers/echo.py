"""Answers with the event it got and what its context and environment said, for tests that check them."""

import json
import os

IMPORTED_WITH = os.environ.get("GREETING")


def handler(event, context):
    seen = {
        "event": event,
        "context": {
            "aws_request_id": context.aws_request_id,
            "function_name": context.function_name,
            "function_version": context.function_version,
            "invoked_function_arn": context.invoked_function_arn,
            "memory_limit_in_mb": context.memory_limit_in_mb,
            "log_group_name": context.log_group_name,
            "log_stream_name": context.log_stream_name,
            "remaining_ms": context.get_remaining_time_in_millis(),
            "identity": context.identity.cognito_identity_id,
            "client_context": context.client_context,
        },
        "environ": {name: os.environ.get(name) for name in ("GREETING", "TABLE", "AWS_LAMBDA_FUNCTION_NAME",
                                                             "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "_HANDLER", "_X_AMZN_TRACE_ID")},
        "imported_with": IMPORTED_WITH,
    }
    return {"statusCode": 200, "headers": {"Content-Type": "application/json"}, "body": json.dumps(seen)}
