"""The daemon-wide keys are declared once (gwd/config/keys.py): the reader's defaults and the README's tables come from it."""

from __future__ import annotations

import pytest
from support import ROOT

from gwd.config.keys import BY_TABLE, KEYS, reference_table
from gwd.config.reader import load_config

README = (ROOT / "README.md").read_text()


@pytest.mark.parametrize(
    "tables, qualified", [(("server",), False), (("log",), False), (("throttle",), False), (("cache",), False), (("admin", "metrics"), True)]
)
def test_the_readme_reference_table_is_the_declarations(tables, qualified):
    table = reference_table(tables, qualified)
    assert table in README, f"README.md should hold this table as it is:\n{table}"


def test_a_config_that_sets_nothing_gets_every_declared_default(tmp_path):
    path = tmp_path / "gwd.toml"
    path.write_text(f'[server]\nstate_dir = "{tmp_path}"\n\n[[routes]]\nroute = "GET /x"\nintegration = {{ type = "mock" }}\n')
    config = load_config(str(path))
    sections = {"server": config.server, "log": config.log, "throttle": config.throttle, "cache": config.cache,
                "metrics": config.metrics, "admin": config.admin}
    checked = 0
    for key in KEYS:
        if key.kind == "custom" and key.default is None:
            continue  # computed where it is read (state_dir) or absent unless set (tls, user)
        value = getattr(sections[key.table], key.name)
        if key.table == "server" and key.name == "workers":
            assert key.default == 0 and value >= 1  # 0 means one per usable CPU
        else:
            assert value == key.default, key
        checked += 1
    assert checked == len(KEYS) - 3


@pytest.mark.parametrize("key", [key for key in KEYS if key.kind in ("integer", "duration")], ids=lambda key: f"{key.table}.{key.name}")
def test_the_reader_refuses_a_value_past_a_declared_range(tmp_path, key):
    too_big = f'"{key.high * 2:g}s"' if key.kind == "duration" else str(int(key.high) + 1)
    path = tmp_path / "gwd.toml"
    path.write_text(f'[{key.table}]\n{key.name} = {too_big}\n\n[[routes]]\nroute = "GET /x"\nintegration = {{ type = "mock" }}\n')
    with pytest.raises(Exception) as raised:
        load_config(str(path))
    assert f"{key.table}.{key.name}" in str(raised.value)


def test_every_table_with_declared_keys_is_listed():
    assert set(BY_TABLE) == {"server", "log", "throttle", "cache", "admin", "metrics"}
