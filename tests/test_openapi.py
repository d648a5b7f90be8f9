"""The query port's OpenAPI 3.1 description, checked against the real server by schemathesis: a live local cluster
with two apps (numbers and strings), every generated request (valid and invalid) sent over HTTP, and every response
must be one the description names, with the body it describes. No 5xx, ever."""

import json
import subprocess
import sys
import urllib.request

import pytest

from clipper_deploy_core.deployers.python import create_endpoint
from clipper_deploy_core.testing import local_cluster

CHECKS = ["not_a_server_error", "status_code_conformance", "content_type_conformance", "response_schema_conformance"]


@pytest.fixture(scope="module")
def conn(tmp_path_factory):
    with local_cluster("openapi", tmp_path_factory.mktemp("openapi")) as c:
        create_endpoint(c, "sum", "doubles", lambda xs: [str(sum(x)) for x in xs])
        create_endpoint(c, "shout", "strings", lambda xs: [x.upper() for x in xs])
        yield c


def test_every_response_conforms_to_the_description(conn, tmp_path):
    """schemathesis's own runner (its pytest plugin does not load under this pytest), seeded, with valid and
    invalid requests for every operation."""
    out = subprocess.run(
        [sys.executable, "-m", "schemathesis.cli", "run", f"http://{conn.get_query_addr()}/openapi.json",
         "--checks", ",".join(CHECKS), "--max-examples", "50", "--seed", "7", "--report-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert out.returncode == 0, out.stdout[-6000:] + out.stderr[-2000:]


def test_each_apps_body_schema_is_exact_for_its_input_type(conn):
    spec = json.loads(urllib.request.urlopen(f"http://{conn.get_query_addr()}/openapi.json").read())
    assert spec["openapi"] == "3.1.0"
    single = spec["paths"]["/sum/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]["oneOf"][0]
    assert single["properties"]["input"] == {"type": "array", "minItems": 1, "items": {"type": "number"}}
    single = spec["paths"]["/shout/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]["oneOf"][0]
    assert single["properties"]["input"] == {"type": "string"}
    assert {"400", "404", "408", "413", "414", "431", "503"} <= set(spec["paths"]["/sum/predict"]["post"]["responses"])
    assert spec["paths"]["/v2/models/{app}/infer"]["post"]["parameters"][0]["schema"]["enum"] == ["shout", "sum"]
