"""VTL mapping templates, case by case: every variable and directive AWS defines, with the output AWS gives."""

from __future__ import annotations

import orjson
import pytest

from gwd.mapping import vtl
from gwd.mapping.variables import UTIL, Input, Params, escape_javascript

BODY = orjson.dumps(
    {
        "pokemonName": "friesmeat",
        "age": "3",
        "tags": ["a", "b", "c"],
        "owner": {"name": "Ash", "city": "Pallet"},
        "csv": "x,y,z",
        "count": 7,
        "ok": True,
        "nothing": None,
        "quote": "it's \"here\"",
        "Items": [
            {"itemId": {"S": "1"}, "pokemonName": {"S": "pika"}, "age": {"S": "2"}},
            {"itemId": {"S": "2"}, "pokemonName": {"S": "eevee"}, "age": {"S": "5"}},
        ],
    }
).decode()

PARAMS = Params(
    path={"name": "friesmeat", "both": "from-path"},
    querystring={"q": "search", "both": "from-query", "empty": ""},
    header={"X-Tenant": "acme", "q": "from-header"},
)


def variables(body: str = BODY) -> dict:
    return {
        "input": Input(body, PARAMS),
        "util": UTIL,
        "stageVariables": {"table": "Items", "region": "us-east-1"},
        "context": {
            "requestId": "req-1",
            "httpMethod": "POST",
            "stage": "prod",
            "resourcePath": "/item/{name}",
            "requestTime": "03/Dec/2026:16:00:00 +0000",
            "requestTimeEpoch": 1796313600000,
            "identity": {"sourceIp": "127.0.0.1", "userAgent": "curl/8", "apiKey": None},
            "authorizer": {"principalId": "user-7", "claims": {"sub": "user-7"}},
            "responseOverride": {"status": None, "header": {}},
            "requestOverride": {"header": {}, "querystring": {}, "path": {}},
        },
    }


def render(text: str, body: str = BODY) -> str:
    return vtl.MappingTemplate(text, "case").render(variables(body))


CASES = [
    # $input.body, $input.json, $input.path
    ("body whole", "$input.body", BODY),
    ("path of a string", "$input.path('$.pokemonName')", "friesmeat"),
    ("path of a number", "$input.path('$.count')", "7"),
    ("path of a boolean", "$input.path('$.ok')", "true"),
    ("path of JSON null renders empty", "[$input.path('$.nothing')]", "[]"),
    ("path to nothing renders empty", "[$input.path('$.missing')]", "[]"),
    ("path of a nested field", "$input.path('$.owner.city')", "Pallet"),
    ("path .size() of a list", "$input.path('$.tags').size()", "3"),
    ("path [i] of a list", "$input.path('$.tags')[1]", "b"),
    ("path of a list element", "$input.path('$.tags[2]')", "c"),
    ("path .split()", "#foreach($p in $input.path('$.csv').split(','))<$p>#end", "<x><y><z>"),
    ("path wildcard gives a list", "$input.path('$.Items[*].pokemonName.S').size()", "2"),
    ("json of an object", "$input.json('$.owner')", '{"name":"Ash","city":"Pallet"}'),
    ("json of a string is quoted", "$input.json('$.pokemonName')", '"friesmeat"'),
    ("json of the root", "$input.json('$.tags')", '["a","b","c"]'),
    ("json of nothing is null", "$input.json('$.missing')", "null"),
    # $input.params
    ("params(name) from the path first", "$input.params('both')", "from-path"),
    ("params(name) from the query string", "$input.params('q')", "search"),
    ("params(name) from a header, case-blind", "$input.params('x-tenant')", "acme"),
    ("params(name) absent is empty", "[$input.params('nope')]", "[]"),
    ("params(name) present but empty", "[$input.params('empty')]", "[]"),
    ("params() by kind", "$input.params().path.name $input.params().querystring.q $input.params().header.get('X-Tenant')",
     "friesmeat search acme"),
    ("params() keys", "#foreach($kind in $input.params().keySet())$kind #end", "path querystring header "),
    # $context and $stageVariables
    ("context.requestId", "$context.requestId", "req-1"),
    ("context.httpMethod and stage", "$context.httpMethod $context.stage", "POST prod"),
    ("context.resourcePath", "$context.resourcePath", "/item/{name}"),
    ("context.identity.sourceIp", "$context.identity.sourceIp", "127.0.0.1"),
    ("context.identity null field", "[$context.identity.apiKey]", "[]"),
    ("context.authorizer", "$context.authorizer.principalId $context.authorizer.claims.sub", "user-7 user-7"),
    ("context.requestTime and epoch", "$context.requestTime|$context.requestTimeEpoch", "03/Dec/2026:16:00:00 +0000|1796313600000"),
    ("stageVariables", "$stageVariables.table in ${stageVariables.region}", "Items in us-east-1"),
    ("stageVariables missing", "[$stageVariables.nope]", "[]"),
    # $util
    ("util.escapeJavaScript quotes", "$util.escapeJavaScript($input.path('$.quote'))", "it\\'s \\\"here\\\""),
    ("util.escapeJavaScript controls and unicode", "$util.escapeJavaScript(\"a/b\n\té\")", "a\\/b\\n\\t\\u00E9"),
    ("util.parseJson", "#set($o = $util.parseJson('{\"a\": [1, 2]}'))$o.a.size()", "2"),
    ("util.urlEncode", "$util.urlEncode('a b&c=d/é')", "a+b%26c%3Dd%2F%C3%A9"),
    ("util.urlDecode", "$util.urlDecode('a+b%26c')", "a b&c"),
    ("util.base64Encode", "$util.base64Encode('hello')", "aGVsbG8="),
    ("util.base64Decode", "$util.base64Decode('aGVsbG8=')", "hello"),
    # directives
    ("#set and use", "#set($x = 'v')$x", "v"),
    ("#set from $input.path", "#set($root = $input.path('$'))$root.owner.name", "Ash"),
    ("#if true", "#if($input.path('$.ok'))yes#end", "yes"),
    ("#if on an empty string is false", "#if($input.params('empty'))yes#{else}no#end", "no"),
    ("#if / #elseif / #else", "#set($n = 5)#if($n < 3)low#elseif($n < 10)mid#else high#end", "mid"),
    ("#else", "#if($input.path('$.count') > 10)yes#{else}no#end", "no"),
    ("#if on equality", "#if($context.httpMethod == 'POST')post#end", "post"),
    ("#foreach with $foreach.hasNext", "#foreach($t in $input.path('$.tags'))$t#if($foreach.hasNext),#end#end", "a,b,c"),
    ("#foreach $foreach.count and index", "#foreach($t in ['x', 'y'])$foreach.index:$foreach.count #end", "0:1 1:2 "),
    ("#foreach over a map's keys", "#foreach($k in $input.path('$.owner').keySet())$k;#end", "name;city;"),
    ("#foreach over nothing", "[#foreach($t in $input.path('$.missing'))$t#end]", "[]"),
    ("#foreach capped at 1,000", "#set($n = 0)#foreach($i in [1..1500])#set($n = $n + 1)#end$n", "1000"),
    ("#define", "#define($greet)hello $context.stage#end$greet $greet", "hello prod hello prod"),
    ("## comment", "a## gone\nb", "ab"),
    ("#* block comment *#", "a#* gone\nand gone *#b", "ab"),
    ("null reference renders empty", "[$nothing][$!nothing][${nothing}]", "[][][]"),
    ("null method result renders empty", "[$input.path('$.owner').get('zip')]", "[]"),
    ("map methods", "$input.path('$.owner').size() $input.path('$.owner').containsKey('name')", "2 true"),
    ("string methods", "$input.path('$.pokemonName').toUpperCase() $input.path('$.pokemonName').length()", "FRIESMEAT 9"),
    # overrides
    ("responseOverride.status", "#set($context.responseOverride.status = 201)$context.responseOverride.status", "201"),
    ("responseOverride.header", "#set($context.responseOverride.header.X-Trace = 'abc')$context.responseOverride.header.X-Trace", "abc"),
    ("requestOverride.querystring", "#set($context.requestOverride.querystring.page = '2')$context.requestOverride.querystring.page", "2"),
]


@pytest.mark.parametrize("text,expected", [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_template_renders_as_aws_does(text: str, expected: str) -> None:
    assert render(text) == expected


def test_a_body_that_is_not_json_is_one_string() -> None:
    assert render("$input.path('$')", "plain text") == "plain text"
    assert render("$input.body", "plain text") == "plain text"


def test_the_walkthrough_templates() -> None:
    put = (
        '{ "TableName": "Items", "Item": { "itemId": { "S": "$context.requestId" },\n'
        '  "pokemonName": { "S": "$input.path(\'$.pokemonName\')" }, "age": { "S": "$input.path(\'$.age\')" } } }'
    )
    assert orjson.loads(render(put)) == {
        "TableName": "Items",
        "Item": {"itemId": {"S": "req-1"}, "pokemonName": {"S": "friesmeat"}, "age": {"S": "3"}},
    }
    listing = (
        "#set($inputRoot = $input.path('$'))\n"
        '{ "pokemons": [\n'
        '#foreach($elem in $inputRoot.Items) { "itemId": "$elem.itemId.S", "pokemonName": "$elem.pokemonName.S", '
        '"age": "$elem.age.S" }#if($foreach.hasNext),#end\n'
        "#end\n"
        "] }"
    )
    assert orjson.loads(render(listing)) == {
        "pokemons": [
            {"itemId": "1", "pokemonName": "pika", "age": "2"},
            {"itemId": "2", "pokemonName": "eevee", "age": "5"},
        ]
    }


def test_case_count() -> None:
    assert len(CASES) >= 40


@pytest.mark.parametrize(
    "text,where",
    [("#if($a)\nx", "line"), ("line one\n#foreach($x in)\n#end", "line 2"), ("#set($x = )", "line 1")],
)
def test_a_syntax_error_says_where(text: str, where: str) -> None:
    with pytest.raises(vtl.TemplateProblem, match=where):
        vtl.MappingTemplate(text, "routes[0].integration.request_templates")


def test_output_past_the_limit_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vtl, "MAX_OUTPUT", 1000)
    with pytest.raises(vtl.RenderError, match="output passed"):
        render("#foreach($i in [1..999])$input.path('$.pokemonName')#end")


def test_a_render_past_its_time_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vtl, "RENDER_TIMEOUT", 0.05)
    nested = "#foreach($a in [1..1000])#foreach($b in [1..1000])#set($x = $b)#end#end"
    with pytest.raises(vtl.RenderError, match="longer than"):
        render(nested)


def test_an_error_inside_a_template_is_a_render_error() -> None:
    with pytest.raises(vtl.RenderError):
        render("$util.parseJson('{not json')")


def test_escape_javascript_matches_java() -> None:
    assert escape_javascript("plain") == "plain"
    assert escape_javascript("\x01\x7f\u20ac\U0001F600") == "\\u0001\x7f\\u20AC\\uD83D\\uDE00"
    assert escape_javascript("\\") == "\\\\"


@pytest.mark.parametrize("text", [case[1] for case in CASES], ids=[case[0] for case in CASES])
def test_a_plain_template_renders_as_the_engine_does(text: str) -> None:
    template = vtl.MappingTemplate(text, "case")
    assert template.render(variables()) == template.render_with_engine(variables())


def test_plain_templates_are_recognised() -> None:
    plain = [case[0] for case in CASES if vtl.MappingTemplate(case[1], "case").plain]
    assert len(plain) >= 20, plain
    assert vtl.MappingTemplate("a $input.path('$.x') ${context.stage}.", "t").plain
    for text in ("#set($a = 1)", "$input.path('$.x').size()", "$util.base64Encode('a')", "$context.keys", "a\\$b"):
        assert not vtl.MappingTemplate(text, "t").plain, text
