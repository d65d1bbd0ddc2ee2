"""Reading an integration's mapping keys: request templates, response templates, integration responses.

Templates are compiled here, at load, so a syntax error is a config problem
naming the key (and the template's file, for ``"@file"`` ones) with its
line and column.  A template given as ``"@path"`` is read from that file,
relative to the config's directory.
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING

from gwd.config.model import IntegrationMapping, IntegrationResponse, TemplateSource
from gwd.config.values import HEADER_NAME, TOKEN
from gwd.mapping.vtl import MappingTemplate, TemplateProblem

if TYPE_CHECKING:
    from gwd.config.reader import _Table

PASSTHROUGH = ("when_no_match", "when_no_templates", "never")
MAPPING_KEYS = ("request_templates", "response_templates", "passthrough_behavior", "responses", "content_handling")
CONTENT_HANDLING = ("convert_to_text", "convert_to_binary")
_CONTENT_TYPE = re.compile(r"^[A-Za-z0-9!#$&^_.+-]+/[A-Za-z0-9!#$&^_.+*-]+$")
_HEADER_SOURCE = re.compile(rf"^('[^\r\n]*'|integration\.response\.header\.{TOKEN})$")


def read_mapping(table: _Table, base_dir: str) -> IntegrationMapping | None:
    """The mapping an integration table configures, or None when it sets none of MAPPING_KEYS (a proxy integration)."""
    if not any(table.has(key) for key in MAPPING_KEYS):
        return None
    request_templates = _templates(table, "request_templates", base_dir)
    response_templates = _templates(table, "response_templates", base_dir)
    passthrough = table.string("passthrough_behavior", "when_no_match")
    if passthrough not in PASSTHROUGH:
        table.problem("passthrough_behavior", f"expected one of {', '.join(map(repr, PASSTHROUGH))}, got {passthrough!r}")
    content_handling = _content_handling(table)
    responses = [_response(entry, base_dir) for entry in table.tables("responses")]
    defaults = [entry for entry in responses if entry is not None and entry.selection_pattern is None]
    if len(defaults) > 1:
        table.problem("responses", "more than one entry has no selection_pattern (only the default may lack one)")
    if response_templates:
        if defaults and defaults[0].templates:
            table.problem("response_templates", "the default entry of responses has templates of its own")
        elif defaults:
            entry = defaults[0]
            responses[responses.index(entry)] = IntegrationResponse(None, entry.status, response_templates, entry.headers, entry.content_handling)
        else:
            responses.append(IntegrationResponse(None, None, response_templates, ()))
    return IntegrationMapping(
        request_templates=request_templates,
        passthrough_behavior=passthrough or "when_no_match",
        responses=tuple(entry for entry in responses if entry is not None),
        content_handling=content_handling,
    )


def _content_handling(table: _Table) -> str | None:
    value = table.string("content_handling", None)
    if value is not None and value not in CONTENT_HANDLING:
        table.problem("content_handling", f"expected one of {', '.join(map(repr, CONTENT_HANDLING))}, got {value!r}")
        return None
    return value


def _templates(table: _Table, key: str, base_dir: str) -> tuple[tuple[str, TemplateSource], ...]:
    templates = []
    for content_type, text in table.string_map(key).items():
        where = f"{key}.{content_type}"
        if not _CONTENT_TYPE.match(content_type):
            table.problem(where, "expected a media type such as application/json")
            continue
        source = template_source(table, where, text, base_dir)
        if source is not None:
            templates.append((content_type.lower(), source))
    return tuple(templates)


def template_source(table: _Table, where: str, text: str, base_dir: str) -> TemplateSource | None:
    """The template's text (read from its file for ``"@path"``), compiled once to check it."""
    source = table.key_path(where)
    if text.startswith("@"):
        path = os.path.join(base_dir, os.path.expanduser(text[1:]))
        try:
            with open(path, encoding="utf-8") as file:
                text = file.read()
        except (OSError, UnicodeDecodeError) as exc:
            table.problem(where, f"cannot read the template file {path}: {exc}")
            return None
        source = path
    try:
        MappingTemplate(text, source)
    except TemplateProblem as exc:
        table.problem(where, f"{source}: {exc}" if source != table.key_path(where) else str(exc))
        return None
    return TemplateSource(text, source)


def _response(table: _Table, base_dir: str) -> IntegrationResponse | None:
    pattern = table.string("selection_pattern", None)
    ok = True
    if pattern is not None:
        try:
            re.compile(pattern)
        except re.error as exc:
            table.problem("selection_pattern", f"not a regular expression: {exc}")
            ok = False
    status = table.get("status", int, None, "an integer")
    if status is not None and not 100 <= status <= 599:
        table.problem("status", f"must be between 100 and 599, got {status}")
        ok = False
    templates = _templates(table, "templates", base_dir)
    headers = table.string_map("headers")
    for name, value in headers.items():
        if not HEADER_NAME.match(name):
            table.problem(f"headers.{name}", "not a header name")
            ok = False
        elif not _HEADER_SOURCE.match(value):
            why = "expected a quoted literal (\"'text'\") or integration.response.header.NAME"
            table.problem(f"headers.{name}", why)
            ok = False
    content_handling = _content_handling(table)
    table.finish()
    return IntegrationResponse(pattern, status, templates, tuple(headers.items()), content_handling) if ok else None
