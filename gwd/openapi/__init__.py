"""OpenAPI documents as API Gateway exports them, to and from gwd's config: :mod:`.importer` and :mod:`.exporter`."""
