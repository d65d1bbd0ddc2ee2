"""Mapping between the client's request and response and the integration's: VTL templates and what they see."""
