"""The shared route helpers: a task handed to the workers answers 202, a refused one 503."""

import json

import pytest
from fastapi import HTTPException

from service.routes.deps import RETRY_SECONDS, ask_a_worker


def test_a_sent_task_answers_202_with_its_body_and_a_retry_after():
    sent = []
    response = ask_a_worker(lambda: sent.append(1), "the export", {"status": "exporting"})
    assert sent == [1] and response.status_code == 202
    assert json.loads(response.body) == {"status": "exporting"}
    assert response.headers["Retry-After"] == str(RETRY_SECONDS)


def test_a_broker_that_refuses_the_task_is_a_503_naming_what_was_not_sent():
    def refuse():
        raise ConnectionError("broker down")

    with pytest.raises(HTTPException) as err:
        ask_a_worker(refuse, "the prediction", {})
    assert err.value.status_code == 503
    assert err.value.detail == "the prediction could not be sent to a worker: broker down"
