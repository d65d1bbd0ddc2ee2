"""A handler for a non-proxy function integration: its event is the request template's output."""


def handler(event, context):
    pet = event["id"]
    if pet == "0":
        raise LookupError(f"NotFound: no pet {pet}")
    if pet == "boom":
        raise ValueError("boom")
    return {"id": pet, "name": f"pet {pet}"}
