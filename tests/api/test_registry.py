"""The registry of query methods: every method module found once, with everything it must declare."""

from __future__ import annotations

import pytest

from tradetape.api.errors import QueryError
from tradetape.api.registry import api_schema, method, methods
from tradetape.cli.renderers import renderer


def test_every_method_module_is_registered_with_models_handler_and_rendering() -> None:
    found = methods()
    assert {"volume_profile", "liquidity_vacuums", "coverage"} <= set(found)
    for name, spec in found.items():
        assert spec.name == name and spec.summary
        assert callable(spec.handler) and callable(renderer(name))
        assert "last" in spec.request.model_fields


def test_schema_lists_each_method_with_its_summary() -> None:
    schema = api_schema()
    assert set(schema["methods"]) == set(methods())
    assert schema["methods"]["coverage"]["summary"] == methods()["coverage"].summary
    assert "error" in schema["error"]["properties"]


def test_parse_request_names_each_failing_field() -> None:
    with pytest.raises(QueryError) as caught:
        method("volume_profile").parse_request({"rows": 0, "row_size": "x"})
    assert caught.value.code == "invalid_request"
    fields = {problem["field"] for problem in caught.value.details["errors"]}
    assert fields == {"rows", "row_size"}
    assert "rows:" in caught.value.message and "Value error" not in caught.value.message


def test_unknown_method_lists_the_known_ones() -> None:
    with pytest.raises(KeyError, match="coverage"):
        method("vwap_typo")
