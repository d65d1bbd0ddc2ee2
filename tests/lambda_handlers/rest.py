"""A REST API (payload 1.0) handler that answers by the method it was called with."""

import json


def handler(event, context):
    method = event["requestContext"]["httpMethod"]
    if method == "GET":
        return {"statusCode": 200, "headers": {"Content-Type": "application/json"}, "body": json.dumps({"read": event["path"]})}
    if method == "POST":
        return {
            "statusCode": 201,
            "multiValueHeaders": {"X-Seen": ["a", "b"]},
            "headers": {"X-Seen": "a", "Content-Type": "application/json"},
            "body": event["body"],
        }
    return {"statusCode": 405, "body": json.dumps({"message": f"{method} not allowed"})}
