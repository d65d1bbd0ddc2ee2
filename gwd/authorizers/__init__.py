"""The authorizers a route can name, which the authorization stage (:mod:`gwd.stages.authorization`) asks:
``jwtauth`` (bearer tokens checked against an issuer's keys) and
``requestauth`` (an HTTP endpoint or a Python function that says allow or
deny).  One verifier or client per worker and authorizer, shared by the
routes that name it."""
