"""A Python-function authorizer for the tests: allows the token "let-me-in", and says who it is."""

from __future__ import annotations

import time


def decide(event: dict) -> dict:
    token = event["headers"].get("authorization", "")
    return {"isAuthorized": token == "let-me-in", "context": {"tenant": "from-function"}, "principalId": "fn-user"}


def broken(event: dict) -> dict:
    raise RuntimeError("the authorizer has a bug")


async def stuck(event: dict) -> dict:
    """A bug seen in real code: blocking I/O inside a coroutine, which stops the worker's whole event loop."""
    time.sleep(30)
    return {"isAuthorized": True}


def decide_typed(event: dict) -> dict:
    """Allows everyone, with a context of several JSON types (a REST API's event carries them as strings)."""
    return {"isAuthorized": True, "context": {"tenant": "acme", "tier": 3, "admin": True}, "principalId": "typed-user"}
