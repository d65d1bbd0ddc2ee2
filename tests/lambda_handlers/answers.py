"""Returns the answer a test names: what a handler may return, well-formed or not."""

import asyncio
import json
import logging
import os
import time

logger = logging.getLogger()
logger.setLevel(logging.INFO)

ANSWERS = {
    "not-an-object": "just a string",
    "no-status": {"body": "x"},
    "string-status": {"statusCode": "200", "body": "x"},
    "status-out-of-range": {"statusCode": 99, "body": "x"},
    "body-not-string": {"statusCode": 200, "body": {"a": 1}},
    "unknown-field": {"statusCode": 200, "body": "x", "cookies": ["a=1"]},
    "headers-not-object": {"statusCode": 200, "headers": ["a"], "body": "x"},
    "multi-not-list": {"statusCode": 200, "multiValueHeaders": {"X-A": "a"}, "body": "x"},
    "bad-base64": {"statusCode": 200, "body": "***", "isBase64Encoded": True},
    "bad-header-value": {"statusCode": 200, "headers": {"X-A": "a\r\nX-Injected: 1"}, "body": "x"},
    "string": "hello",
    "number": 42,
    "array": [1, "two"],
    "object": {"message": "no statusCode here"},
    "null": None,
    "cookies": {"statusCode": 200, "cookies": ["a=1; Path=/", "b=2"], "body": "ok"},
    "merged": {
        "statusCode": 200,
        "headers": {"X-One": "1", "X-Both": "same"},
        "multiValueHeaders": {"X-Both": ["same", "other"], "X-Many": ["a", "b"]},
        "body": "ok",
    },
    "well-formed": {"statusCode": 202, "headers": {"Content-Type": "text/plain"}, "body": "accepted"},
}


def handler(event, context):
    return ANSWERS[event["pathParameters"]["case"]]


def raises(event, context):
    print("about to fail")
    raise ValueError("the handler broke")


def chatty(event, context):
    print("printed line one\nprinted line two")
    logger.info("logged by the handler")
    return {"statusCode": 200, "body": "ok"}


def sleeps(event, context):
    """Sleeps the query's ``seconds`` (a plain handler: it blocks its thread), noting when it ran."""
    seconds = float((event.get("queryStringParameters") or {}).get("seconds", "0"))
    started = time.time()
    time.sleep(seconds)
    with open(os.environ["RUN_LOG"], "a") as log:
        log.write(json.dumps({"pid": os.getpid(), "start": started, "end": time.time()}) + "\n")
    return {"statusCode": 200, "body": "slept"}


async def sleeps_async(event, context):
    seconds = float((event.get("queryStringParameters") or {}).get("seconds", "0"))
    await asyncio.sleep(seconds)
    return {"statusCode": 200, "body": "slept"}
