"""A REST API (payload 1.0) handler answering with a whole PNG image, base64-encoded as Lambda proxy answers must be."""

import base64
import json
from pathlib import Path

PIXEL = (Path(__file__).parent / "pixel.png").read_bytes()


def logo(event, context):
    return {
        "statusCode": 200,
        "headers": {"Content-Type": "image/png"},
        "body": base64.b64encode(PIXEL).decode(),
        "isBase64Encoded": True,
    }


def upload(event, context):
    """What arrived: the body field as given and whether it was base64."""
    return {"statusCode": 200, "body": json.dumps({"body": event["body"], "isBase64Encoded": event["isBase64Encoded"]})}
