"""`/v1/openapi.json`: a valid OpenAPI 3 description of every /v1 operation, built from the
models the gateway validates with, whose error schemas describe the errors it really sends."""

import jsonschema
import pytest
from openapi_spec_validator import validate
from starlette.testclient import TestClient

from server.app import create_app
from server.gateway import errors
from server.gateway.messages import MessagesRequest
from server.gateway.protocol import ChatCompletionRequest
from server.gateway.responses import ResponsesRequest
from server.gateway.routes import described, v1
from server.settings import Settings

OPERATIONS = {
    ("post", "/v1/chat/completions"),
    ("post", "/v1/completions"),
    ("post", "/v1/responses"),
    ("post", "/v1/messages"),
    ("post", "/v1/messages/count_tokens"),
    ("get", "/v1/models"),
    ("get", "/v1/models/{model_id}"),
    ("get", "/v1/openapi.json"),
}


@pytest.fixture(scope="module")
def document(tmp_path_factory):
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("openapi"),
        profile="external",
        upstream="http://127.0.0.1:9",
    )
    # No lifespan: the description needs neither the engine nor a key.
    response = TestClient(create_app(settings)).get("/v1/openapi.json")
    assert response.status_code == 200
    return response.json()


def test_it_is_valid_openapi_and_lists_every_v1_operation(document):
    validate(document)
    assert document["openapi"].startswith("3.")
    listed = {(method, path) for path, ops in document["paths"].items() for method in ops}
    assert listed == OPERATIONS
    # Every route of the /v1 router is described, except the catch-alls for unknown paths.
    served = {
        r.path.replace(":path", "") for r in described.routes + v1.routes if r.include_in_schema
    }
    assert served == {path for _, path in OPERATIONS}


def test_bodies_are_the_models_the_gateway_validates_with(document):
    schemas = document["components"]["schemas"]
    for path, model in (
        ("/v1/chat/completions", ChatCompletionRequest),
        ("/v1/responses", ResponsesRequest),
        ("/v1/messages", MessagesRequest),
    ):
        body = document["paths"][path]["post"]["requestBody"]["content"]["application/json"]
        name = body["schema"]["$ref"].rsplit("/", 1)[-1]
        assert name == model.__name__
        expected = model.model_json_schema()
        assert schemas[name]["required"] == expected["required"]
        assert set(schemas[name]["properties"]) == set(expected["properties"])


def test_errors_are_described_in_each_protocols_shape(document):
    schemas = document["components"]["schemas"]
    resolver = {"components": document["components"]}

    def check(instance, ref):
        schema = {**schemas[ref.rsplit("/", 1)[-1]], **resolver}
        jsonschema.validate(instance, schema)

    for method, path in OPERATIONS - {("get", "/v1/openapi.json")}:
        responses = document["paths"][path][method]["responses"]
        assert {"200", "400", "401", "404", "429", "500", "503"} <= set(responses), path
        dialect = errors.dialect_of(path)
        error_ref = responses["401"]["content"]["application/json"]["schema"]["$ref"]
        # The body the gateway really sends for a wrong key fits the documented schema.
        check(errors.invalid_api_key().body(dialect), error_ref)
        check(errors.service_unavailable().body(dialect), error_ref)
        assert "Retry-After" in responses["429"]["headers"]
        if dialect == "anthropic":
            assert "anthropic-ratelimit-requests-remaining" in responses["429"]["headers"]
    assert document["paths"]["/v1/openapi.json"]["get"]["security"] == []
