"""Running AWS Lambda handlers as gwd's function integrations.

``events`` builds the API Gateway event (payload 1.0 or 2.0) a handler
gets, ``responses`` turns what it returns into a response by AWS's rules,
``python`` runs a Python handler inside the worker, and ``context`` is the
``context`` object AWS's Python runtime passes.  The integration that joins
them to the pipeline is :mod:`gwd.integrations.function`.
"""
