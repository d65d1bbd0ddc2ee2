"""The benchmark's handlers: a 100-byte JSON body, as a plain and as an async handler."""

BODY = '{"message": "hello from a function", "items": [1, 2, 3], "padding": "' + "x" * 29 + '"}'  # 100 bytes
ANSWER = {"statusCode": 200, "headers": {"Content-Type": "application/json"}, "body": BODY}


def handler(event, context):
    return ANSWER


async def async_handler(event, context):
    return ANSWER
