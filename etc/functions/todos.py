"""A small todo API as Lambda handlers: the same file runs on AWS Lambda and behind gwd."""

import json

TODOS = {"1": {"id": "1", "title": "try gwd", "done": False}}


def list_todos(event, context):
    return {"statusCode": 200, "headers": {"Content-Type": "application/json"}, "body": json.dumps(list(TODOS.values()))}


def get_todo(event, context):
    todo = TODOS.get(event["pathParameters"]["id"])
    if todo is None:
        return {"statusCode": 404, "body": json.dumps({"message": "no such todo"})}
    return todo  # payload 2.0: an object without statusCode is a 200 JSON answer


async def whoami(event, context):
    """A REST-style (payload 1.0) handler; async def handlers run on the worker's event loop."""
    return {
        "statusCode": 200,
        "body": json.dumps({"method": event["requestContext"]["httpMethod"], "ip": event["requestContext"]["identity"]["sourceIp"]}),
    }
