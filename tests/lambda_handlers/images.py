"""A handler answering with binary data, base64-encoded as API Gateway wants it."""

import base64

PIXEL = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000")


def handler(event, context):
    return {
        "statusCode": 200,
        "headers": {"Content-Type": "image/png"},
        "body": base64.b64encode(PIXEL).decode(),
        "isBase64Encoded": True,
    }
