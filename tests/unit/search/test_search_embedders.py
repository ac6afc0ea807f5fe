"""Embedders: Bedrock (Titan, Cohere) and SageMaker against botocore Stubbers; the deterministic one."""

from __future__ import annotations

import io
import json
import math

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import EndpointConnectionError
from botocore.response import StreamingBody
from botocore.stub import Stubber
from mlops_runtime.adapters.embedders import (
    BedrockEmbedder,
    DeterministicEmbedder,
    EmbedderError,
    EmbedderThrottled,
    EmbedderUnavailable,
    EmbeddingDimensionError,
    SageMakerEmbedder,
    embedder_for,
)
from search_fixtures import REGION, index_settings

NO_RETRIES = Config(retries={"mode": "standard", "total_max_attempts": 1})


class Sleeps(list):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def stream(payload) -> StreamingBody:
    data = json.dumps(payload).encode("utf-8")
    return StreamingBody(io.BytesIO(data), len(data))


def bedrock(model_id: str, dimension: int, **options):
    client = boto3.client("bedrock-runtime", region_name=REGION, config=NO_RETRIES)
    sleeps = Sleeps()
    embedder = BedrockEmbedder(model_id, dimension, client=client, sleep=sleeps, jitter=lambda: 1.0, **options)
    return embedder, Stubber(client), sleeps


def sagemaker(dimension: int, **options):
    client = boto3.client("sagemaker-runtime", region_name=REGION, config=NO_RETRIES)
    sleeps = Sleeps()
    embedder = SageMakerEmbedder("embedder-ep", dimension, client=client, sleep=sleeps, jitter=lambda: 1.0, **options)
    return embedder, Stubber(client), sleeps


def bedrock_request(model_id: str, body: dict) -> dict:
    return {"modelId": model_id, "body": json.dumps(body).encode("utf-8"), "contentType": "application/json",
            "accept": "application/json"}


def vec(seed: float, dimension: int) -> list[float]:
    return [seed + i / 1000 for i in range(dimension)]


# --- Bedrock ------------------------------------------------------------------------------------


def test_titan_v2_one_text_per_call_with_dimensions_and_normalize():
    model = "amazon.titan-embed-text-v2:0"
    embedder, stubber, _ = bedrock(model, 4, batch_size=16)
    for i, text in enumerate(["alpha", "beta", "gamma"]):
        stubber.add_response(
            "invoke_model",
            {"body": stream({"embedding": vec(i, 4), "inputTextTokenCount": 1}), "contentType": "application/json"},
            bedrock_request(model, {"inputText": text, "dimensions": 4, "normalize": True}),
        )
    with stubber:
        assert embedder.embed(["alpha", "beta", "gamma"]) == [vec(0, 4), vec(1, 4), vec(2, 4)]
    stubber.assert_no_pending_responses()


def test_titan_v1_sends_only_the_text():
    model = "amazon.titan-embed-text-v1"
    embedder, stubber, _ = bedrock(model, 3)
    stubber.add_response("invoke_model", {"body": stream({"embedding": [1, 2, 3]}), "contentType": "application/json"},
                         bedrock_request(model, {"inputText": "hi"}))
    with stubber:
        assert embedder.embed(["hi"]) == [[1.0, 2.0, 3.0]]


def test_cohere_v3_batches_texts_with_the_input_type():
    model = "cohere.embed-english-v3"
    embedder, stubber, _ = bedrock(model, 3, batch_size=2, input_type="search_document")
    texts = ["a", "b", "c", "d", "e"]
    for start in range(0, 5, 2):
        batch = texts[start : start + 2]
        stubber.add_response(
            "invoke_model",
            {"body": stream({"embeddings": [vec(start + i, 3) for i in range(len(batch))], "id": "x",
                             "response_type": "embeddings_floats", "texts": batch}),
             "contentType": "application/json"},
            bedrock_request(model, {"texts": batch, "input_type": "search_document", "truncate": "END"}),
        )
    with stubber:
        assert embedder.embed(texts) == [vec(i, 3) for i in range(5)]
    stubber.assert_no_pending_responses()


def test_cohere_query_input_type_and_v4_response_by_type():
    model = "eu.cohere.embed-v4:0"
    embedder, stubber, _ = bedrock(model, 2, input_type="search_query")
    stubber.add_response(
        "invoke_model",
        {"body": stream({"embeddings": {"float": [[0.5, 0.5]]}, "response_type": "embeddings_by_type"}),
         "contentType": "application/json"},
        bedrock_request(model, {"texts": ["where?"], "input_type": "search_query", "truncate": "END",
                                "output_dimension": 2, "embedding_types": ["float"]}),
    )
    with stubber:
        assert embedder.embed(["where?"]) == [[0.5, 0.5]]


def test_cohere_batches_are_capped_at_96_texts():
    embedder, _, _ = bedrock("cohere.embed-multilingual-v3", 3, batch_size=200)
    assert embedder.batch_size == 96


@pytest.mark.parametrize("code", ["ThrottlingException", "ModelNotReadyException"])
def test_throttling_is_retried_with_back_off(code):
    model = "amazon.titan-embed-text-v2:0"
    embedder, stubber, sleeps = bedrock(model, 256, base_delay=0.2, max_delay=5.0)
    stubber.add_client_error("invoke_model", service_error_code=code, http_status_code=429)
    stubber.add_client_error("invoke_model", service_error_code=code, http_status_code=429)
    stubber.add_response("invoke_model", {"body": stream({"embedding": vec(0, 256)}),
                                          "contentType": "application/json"}, None)
    with stubber:
        assert embedder.embed(["x"]) == [vec(0, 256)]
    assert sleeps == [0.2, 0.4]  # full jitter with jitter() == 1: the cap of each attempt


def test_a_bare_429_is_throttling_and_exhaustion_raises_throttled():
    embedder, stubber, sleeps = bedrock("amazon.titan-embed-text-v2:0", 256, max_attempts=3)
    for _ in range(3):
        stubber.add_client_error("invoke_model", service_error_code="SomethingNew", http_status_code=429)
    with stubber, pytest.raises(EmbedderThrottled) as caught:
        embedder.embed(["x"])
    assert len(sleeps) == 2 and caught.value.code == "SomethingNew"
    stubber.assert_no_pending_responses()


def test_service_errors_are_retried_then_unavailable():
    embedder, stubber, sleeps = bedrock("amazon.titan-embed-text-v2:0", 256, max_attempts=2)
    stubber.add_client_error("invoke_model", service_error_code="ServiceUnavailableException",
                             http_status_code=503)
    stubber.add_client_error("invoke_model", service_error_code="InternalServerException", http_status_code=500)
    with stubber, pytest.raises(EmbedderUnavailable):
        embedder.embed(["x"])
    assert len(sleeps) == 1


def test_client_errors_are_not_retried():
    embedder, stubber, sleeps = bedrock("amazon.titan-embed-text-v2:0", 256)
    stubber.add_client_error("invoke_model", service_error_code="ValidationException", http_status_code=400,
                             service_message="Malformed input request")
    with stubber, pytest.raises(EmbedderError) as caught:
        embedder.embed(["x"])
    assert type(caught.value) is EmbedderError
    assert caught.value.code == "ValidationException" and "Malformed input" in caught.value.message
    assert sleeps == []


def test_connection_errors_are_retried():
    class FlakyClient:
        calls = 0

        def invoke_model(self, **_):
            self.calls += 1
            if self.calls == 1:
                raise EndpointConnectionError(endpoint_url="https://bedrock-runtime.eu-west-1.amazonaws.com")
            return {"body": stream({"embedding": [1.0, 0.0]})}

    client = FlakyClient()
    sleeps = Sleeps()
    embedder = BedrockEmbedder("amazon.titan-embed-text-v1", 2, client=client, sleep=sleeps, jitter=lambda: 0.5)
    assert embedder.embed(["x"]) == [[1.0, 0.0]]
    assert client.calls == 2 and len(sleeps) == 1


def test_a_budget_stops_the_retries():
    class NoTime:
        def allows(self, _delay):
            return False

    embedder, stubber, sleeps = bedrock("amazon.titan-embed-text-v2:0", 256, budget=NoTime())
    stubber.add_client_error("invoke_model", service_error_code="ThrottlingException", http_status_code=429)
    with stubber, pytest.raises(EmbedderThrottled):
        embedder.embed(["x"])
    assert sleeps == []


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        ({"embedding": [1.0, 2.0]}, EmbeddingDimensionError),  # 2 of 3
        ({"embedding": [1.0, 2.0, "x"]}, EmbedderError),
        ({"embedding": None}, EmbedderError),
        ({}, EmbedderError),
    ],
)
def test_bad_titan_answers(answer, error):
    embedder, stubber, _ = bedrock("amazon.titan-embed-text-v1", 3)
    stubber.add_response("invoke_model", {"body": stream(answer), "contentType": "application/json"}, None)
    with stubber, pytest.raises(error):
        embedder.embed(["x"])


def test_cohere_wrong_count_and_dimension():
    embedder, stubber, _ = bedrock("cohere.embed-english-v3", 2)
    stubber.add_response("invoke_model", {"body": stream({"embeddings": [[1.0, 2.0]]}),
                                          "contentType": "application/json"}, None)
    stubber.add_response("invoke_model", {"body": stream({"embeddings": [[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]]}),
                                          "contentType": "application/json"}, None)
    with stubber:
        with pytest.raises(EmbedderError, match="1 vectors for 2 texts"):
            embedder.embed(["a", "b"])
        with pytest.raises(EmbeddingDimensionError, match="3 dimensions; the index has 2"):
            embedder.embed(["a", "b"])


def test_non_finite_values_are_refused():
    embedder, stubber, _ = bedrock("amazon.titan-embed-text-v1", 2)
    body = b'{"embedding": [NaN, 1.0]}'
    stubber.add_response("invoke_model", {"body": StreamingBody(io.BytesIO(body), len(body)),
                                          "contentType": "application/json"}, None)
    with stubber, pytest.raises(EmbedderError, match="non-finite"):
        embedder.embed(["x"])


def test_unknown_model_and_input_type_are_refused():
    with pytest.raises(ValueError):
        BedrockEmbedder("amazon.nova-lite", 8)
    with pytest.raises(ValueError):
        BedrockEmbedder("cohere.embed-english-v3", 8, input_type="clustering")


# --- SageMaker ----------------------------------------------------------------------------------


def sagemaker_request(texts: list[str]) -> dict:
    return {"EndpointName": "embedder-ep", "ContentType": "application/json", "Accept": "application/json",
            "Body": json.dumps({"inputs": texts}).encode("utf-8")}


@pytest.mark.parametrize("shape", ["list", "embeddings", "vectors"])
def test_sagemaker_batches_and_answer_shapes(shape):
    embedder, stubber, _ = sagemaker(2, batch_size=2)
    texts = ["a", "b", "c"]
    for start in (0, 2):
        batch = texts[start : start + 2]
        vectors = [[float(start + i), 1.0] for i in range(len(batch))]
        answer = vectors if shape == "list" else {shape: vectors}
        stubber.add_response("invoke_endpoint", {"Body": stream(answer), "ContentType": "application/json"},
                             sagemaker_request(batch))
    with stubber:
        assert embedder.embed(texts) == [[0.0, 1.0], [1.0, 1.0], [2.0, 1.0]]
    stubber.assert_no_pending_responses()


def test_sagemaker_throttling_model_errors_and_bad_answers():
    embedder, stubber, sleeps = sagemaker(2, max_attempts=3)
    stubber.add_client_error("invoke_endpoint", service_error_code="ThrottlingException", http_status_code=400)
    stubber.add_response("invoke_endpoint", {"Body": stream([[1, 2]])}, None)
    stubber.add_client_error("invoke_endpoint", service_error_code="ModelError", http_status_code=424,
                             service_message="the container crashed")
    stubber.add_response("invoke_endpoint", {"Body": stream({"predictions": []})}, None)
    stubber.add_response("invoke_endpoint", {"Body": stream([[1, 2, 3]])}, None)
    with stubber:
        assert embedder.embed(["a"]) == [[1.0, 2.0]]
        assert len(sleeps) == 1
        with pytest.raises(EmbedderError, match="crashed"):
            embedder.embed(["a"])
        with pytest.raises(EmbedderError, match="without a list"):
            embedder.embed(["a"])
        with pytest.raises(EmbeddingDimensionError):
            embedder.embed(["a"])


def test_sagemaker_non_json_answer():
    embedder, stubber, _ = sagemaker(2)
    stubber.add_response("invoke_endpoint", {"Body": StreamingBody(io.BytesIO(b"<html>"), 6)}, None)
    with stubber, pytest.raises(EmbedderError, match="other than JSON"):
        embedder.embed(["a"])


# --- deterministic ------------------------------------------------------------------------------


def cosine(a, b):
    return sum(x * y for x, y in zip(a, b))


def test_deterministic_vectors_are_unit_stable_and_similarity_preserving():
    embedder = DeterministicEmbedder(128)
    a, b, c, again = embedder.embed(
        ["The cat sat on the mat", "A cat sat on a mat today", "Interest rates and mortgage loans",
         "The cat sat on the mat"])
    assert a == again and len(a) == 128
    assert math.isclose(math.sqrt(sum(v * v for v in a)), 1.0)
    assert cosine(a, b) > cosine(a, c) + 0.3
    assert DeterministicEmbedder(128).embed(["The cat sat on the mat"])[0] == a  # another instance, same vector
    assert embedder.embed(["THE CAT, sat on the mat!"])[0] == a  # case and punctuation do not matter


def test_deterministic_vectors_are_never_zero():
    embedder = DeterministicEmbedder(8)
    for text in ["!!!", "", "  ", "a a"]:
        (vector,) = embedder.embed([text])
        assert math.isclose(math.sqrt(sum(v * v for v in vector)), 1.0)


def test_deterministic_is_the_same_across_processes():
    import subprocess
    import sys

    code = ("import sys, json; sys.path.insert(0, 'lambda');"
            "from mlops_runtime.adapters.embedders import DeterministicEmbedder;"
            "print(json.dumps(DeterministicEmbedder(16).embed(['semantic search works'])[0]))")
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            env={"PYTHONHASHSEED": "123", "PATH": ""})
    assert json.loads(output.stdout) == DeterministicEmbedder(16).embed(["semantic search works"])[0]


# --- from settings ------------------------------------------------------------------------------


def test_embedder_for_settings():
    deterministic = embedder_for(index_settings())
    assert isinstance(deterministic, DeterministicEmbedder) and deterministic.dimension == 64
    titan = embedder_for(index_settings(dimension=512, embedder={"kind": "bedrock", "model_id":
                                                                  "amazon.titan-embed-text-v2:0", "batch_size": 4}),
                         input_type="search_query", max_attempts=2)
    assert isinstance(titan, BedrockEmbedder)
    assert (titan.dimension, titan.batch_size, titan.input_type, titan._max_attempts) == (512, 4, "search_query", 2)
    endpoint = embedder_for(index_settings(embedder={"kind": "sagemaker", "endpoint": "ep-1", "batch_size": 8}))
    assert isinstance(endpoint, SageMakerEmbedder) and (endpoint.endpoint, endpoint.batch_size) == ("ep-1", 8)
