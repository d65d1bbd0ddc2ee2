"""Configuration: TOML in, frozen typed objects out, by role:
``model`` (the value types the runtime reads), ``values`` (the syntaxes of
durations, sizes, addresses, backend URIs and route keys) and ``reader``
(the TOML reader that validates everything and reports every problem as
``FILE: key.path: problem``).

Everything is validated once, before any worker starts: the runtime never
parses or checks config on the request path.  The package imports no
runtime code.
"""
