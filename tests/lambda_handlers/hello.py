"""An HTTP API "hello world" handler, as serverless examples write it."""

import json


def lambda_handler(event, context):
    return {
        "statusCode": 200,
        "body": json.dumps({"message": "hello world", "input": event}),
    }
