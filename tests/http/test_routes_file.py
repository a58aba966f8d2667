"""Routes files: good ones load, bad ones give one error naming file, key and problem."""

import pytest

from x402sim.http import RoutesFileError, load_routes

GOOD = """
network = "eip155:31337"
pay_to = "0x1111111111111111111111111111111111111111"

[[routes]]
method = "get"
path = "/weather"
price = 1000
description = "Weather now"

[[routes]]
method = "POST"
path = "/summarise"
price = "25000"
pay_to = "0x2222222222222222222222222222222222222222"
max_timeout_seconds = 120
"""


def test_good_toml_loads(tmp_path):
    path = tmp_path / "routes.toml"
    path.write_text(GOOD)
    config = load_routes(path)
    assert set(config.routes) == {"GET /weather", "POST /summarise"}
    assert config.routes["GET /weather"].price == 1000
    assert config.routes["POST /summarise"].price == 25_000
    assert config.routes["POST /summarise"].max_timeout_seconds == 120
    assert config.network == "eip155:31337" and config.asset is None


def test_json_has_the_same_shape(tmp_path):
    path = tmp_path / "routes.json"
    path.write_text('{"routes": [{"method": "GET", "path": "/a", "price": 5}]}')
    assert load_routes(path).routes["GET /a"].price == 5


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("routes = [", "not valid TOML"),
        ("colour = 'red'\n[[routes]]\nmethod='GET'\npath='/a'\nprice=1", "unknown key 'colour'"),
        ("pay_to = 'bob'\n[[routes]]\nmethod='GET'\npath='/a'\nprice=1", "pay_to: not a 20-byte hex address"),
        ("", "routes: expected a non-empty list"),
        ("[[routes]]\nmethod='GET'\nprice=1", "routes[0]: missing 'path'"),
        ("[[routes]]\nmethod='GET'\npath='/a'\nprice=-1", "routes[0]: price"),
        ("[[routes]]\nmethod='GET'\npath='/a'\nprice=1.5", "routes[0]: price"),
        ("[[routes]]\nmethod='GET'\npath='a'\nprice=1", "routes[0]: route 'GET a'"),
        (
            "[[routes]]\nmethod='GET'\npath='/a'\nprice=1\n[[routes]]\nmethod='GET'\npath='/a'\nprice=2",
            "twice",
        ),
        ("[[routes]]\nmethod='GET'\npath='/a'\nprice=1\nmax_timeout_seconds=0", "max_timeout_seconds"),
    ],
)
def test_bad_files_name_the_problem(tmp_path, text, needle):
    path = tmp_path / "routes.toml"
    path.write_text(text)
    with pytest.raises(RoutesFileError) as caught:
        load_routes(path)
    assert str(caught.value).startswith(str(path)) and needle in str(caught.value)


def test_missing_file(tmp_path):
    with pytest.raises(RoutesFileError, match="cannot read"):
        load_routes(tmp_path / "absent.toml")
