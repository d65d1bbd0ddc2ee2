"""A handler reading cookies, path parameters and the query string, answering with cookies of its own."""

import json


def get_item(event, context):
    cookies = dict(cookie.split("=", 1) for cookie in event.get("cookies", []))
    item = event["pathParameters"]["item"]
    query = event.get("queryStringParameters") or {}
    return {
        "statusCode": 200,
        "headers": {"Content-Type": "application/json", "X-Item": item},
        "cookies": [f"last_item={item}; Path=/", "visits=1; HttpOnly"],
        "body": json.dumps({"item": item, "session": cookies.get("session"), "color": query.get("color")}),
    }
