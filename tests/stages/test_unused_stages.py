"""A route that uses no mapping and no validator is not wrapped by those stages: it pays nothing for them."""

from __future__ import annotations

from gwd.config.reader import load_config
from gwd.mapping.binary import BinaryTypes
from gwd.stages import mapping, validation


def test_a_plain_route_is_handed_back_unwrapped(tmp_path):
    path = tmp_path / "gwd.toml"
    path.write_text(
        f'[server]\nstate_dir = "{tmp_path}"\n\n'
        '[[routes]]\nroute = "GET /plain"\nintegration = { type = "http", uri = "http://127.0.0.1:9/" }\n\n'
        '[[routes]]\nroute = "POST /mapped"\nrequest_validator = "params"\nrequired_parameters = ["querystring.q"]\n'
        'integration = { type = "http", uri = "http://127.0.0.1:9/", request_templates = { "application/json" = "{}" } }\n'
    )
    config = load_config(str(path))
    plain, mapped = config.apis[0].routes
    stage = config.apis[0].stages[0]

    def integration(exchange):
        return None

    for build in (mapping.build, validation.build):
        assert build(plain, stage, None, integration) is integration
        assert build(mapped, stage, _Resources(), integration) is not integration


class _Resources:
    """What the two builders read of Resources."""

    max_body = 1024
    trusted_proxies = ()
    binary_types = BinaryTypes(())

    def authorizer_kind(self, route):
        return None
