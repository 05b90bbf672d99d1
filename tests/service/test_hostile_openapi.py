"""Generated API calls from the app's own OpenAPI document (Schemathesis): no input may cause a 5xx.

Bounded and deterministic: a fixed number of examples, `derandomize=True` (the seed comes from the test
itself), no example database. Positive cases (valid by the schema) aim at real rows of a seeded project,
so they reach past the 404s into the handlers; negative cases (schema-violating bodies, paths, queries
and headers) aim at the validation layer. Both run with an admin token, on SQLite and PostgreSQL.
"""

import collections

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.python import asgi

from service.auth import create_token
from tests.service.queue_helpers import seed_queue

EXAMPLES = {GenerationMode.POSITIVE: 100, GenerationMode.NEGATIVE: 60}


@pytest.fixture
def seeded_ids(session, settings):
    seeded = seed_queue(session, settings, regions=4, images=2, prelabel=True)
    create_token(session, "someone-else", "annotator")  # token 2: a revocable id
    return {"project_id": seeded.project_id, "image_id": seeded.image_ids[0],
            "region_id": seeded.region_ids[0], "cycle_id": seeded.cycle_id, "token_id": 2}


def _run(schema, client, auth, mode, path_parameters, seen):
    strategy = schema.as_strategy(generation_mode=mode, path_parameters=path_parameters)

    @settings(max_examples=EXAMPLES[mode], derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck), phases=[Phase.generate])
    @given(strategy)
    def call(case):
        response = case.call(session=client, headers=auth)
        seen[mode][response.status_code // 100 * 100] += 1
        if response.status_code >= 500:
            seen["server errors"].append(f"{case.method} {case.formatted_path} -> {response.status_code}: "
                                         f"{response.text[:200]}")

    call()


def test_generated_calls_never_get_a_server_error(app, admin_token, seeded_ids, capsys):
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    auth = {"Authorization": f"Bearer {admin_token}"}
    seen = {GenerationMode.POSITIVE: collections.Counter(), GenerationMode.NEGATIVE: collections.Counter(),
            "server errors": []}
    with asgi.get_client(app) as client:
        _run(schema, client, auth, GenerationMode.POSITIVE, seeded_ids, seen)
        _run(schema, client, auth, GenerationMode.NEGATIVE, None, seen)
    with capsys.disabled():
        print(f"\nschemathesis: positive {dict(seen[GenerationMode.POSITIVE])}, "
              f"negative {dict(seen[GenerationMode.NEGATIVE])}")
    assert seen["server errors"] == []
    assert sum(seen[GenerationMode.POSITIVE].values()) >= 80
    assert seen[GenerationMode.POSITIVE][200] > 0  # the positive cases do reach the handlers
