"""EdgeClient / AsyncEdgeClient against the real router on loopback (faults injected on the wire): typed
errors, retries, idempotency, deadlines."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from client_edge import errors
from client_edge._base_client import RequestOptions, new_request_id
from client_edge.client import EdgeClient
from client_edge.protocol import CreateSessionRequest, PrefixRef, SyncRequest, token_prefix_hash
from client_edge.retry import RetryPolicy
from tests.client_edge.router_cloud import FAST_RETRY, RouterCloud


def _create(client: EdgeClient, cloud: RouterCloud, prompt: list[int], **kw: object) -> str:
    body = CreateSessionRequest(
        request_id=new_request_id(), tokenizer_fingerprint=cloud.fingerprint, prompt_token_ids=prompt, **kw
    )
    return client.create_session(body).state.session_id


def _sync(prompt: list[int], new: list[int], rid: str | None = None) -> SyncRequest:
    return SyncRequest(
        request_id=rid or new_request_id(),
        new_token_ids=new,
        base=PrefixRef(length=len(prompt), hash=token_prefix_hash(prompt)),
    )


def test_create_get_sync_roundtrip(client: EdgeClient, cloud: RouterCloud) -> None:
    sid = _create(client, cloud, [1, 2, 3])
    resp = client.sync(sid, _sync([1, 2, 3], [4, 5]))
    assert resp.state.committed.length == 5
    assert resp.state.committed.hash == token_prefix_hash([1, 2, 3, 4, 5])
    assert client.get_session(sid).state.committed.length == 5
    assert client.stats.round_trips == 3 and client.stats.bytes_sent > 0 and client.stats.bytes_received > 0


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, errors.BadRequestError),
        (404, errors.NotFoundError),
        (409, errors.ConflictError),
        (413, errors.RequestTooLargeError),
        (422, errors.UnprocessableEntityError),
    ],
)
def test_non_retryable_status_raises_typed_error_once(
    client: EdgeClient, cloud: RouterCloud, status: int, cls: type[errors.APIStatusError]
) -> None:
    cloud.faults.queue = [status]
    with pytest.raises(cls) as info:
        client.info()
    assert info.value.status_code == status
    assert info.value.code is not None  # the protocol's ErrorInfo was parsed
    assert len(cloud.faults.calls) == 1  # no retry


def test_unknown_session_is_not_found_with_code(client: EdgeClient) -> None:
    with pytest.raises(errors.NotFoundError) as info:
        client.get_session("nope")
    assert info.value.code == "unknown_session"


def test_fingerprint_mismatch_is_bad_request(client: EdgeClient) -> None:
    body = CreateSessionRequest(request_id=new_request_id(), tokenizer_fingerprint="v1:1:other")
    with pytest.raises(errors.BadRequestError) as info:
        client.create_session(body)
    assert info.value.code == "fingerprint_mismatch"


def test_503_then_success_retries_with_same_request_id(client: EdgeClient, cloud: RouterCloud) -> None:
    sid = _create(client, cloud, [1, 2, 3])
    cloud.faults.queue = [503]
    client.sync(sid, _sync([1, 2, 3], [9], rid="rid-1"))
    assert [c[2] for c in cloud.faults.calls[-2:]] == ["rid-1", "rid-1"]
    assert client.stats.retries == 1
    assert cloud.state(sid)["token_ids"] == [1, 2, 3, 9]


def test_lost_answer_retry_is_idempotent(client: EdgeClient, cloud: RouterCloud) -> None:
    """The first attempt is applied but its answer lost; the retry must not apply it twice."""
    sid = _create(client, cloud, [1, 2, 3])
    cloud.faults.queue = ["commit_then_timeout"]
    resp = client.sync(sid, _sync([1, 2, 3], [7, 8]))
    assert resp.state.committed.length == 5
    assert cloud.state(sid)["token_ids"] == [1, 2, 3, 7, 8]


def test_timeouts_exhaust_retries_then_raise_timeout_error(client: EdgeClient, cloud: RouterCloud) -> None:
    cloud.faults.queue = ["timeout"] * 3
    with pytest.raises(errors.APITimeoutError):
        client.info()
    assert len(cloud.faults.calls) == 1 + FAST_RETRY.max_retries


def test_connection_refused_is_connection_error(client: EdgeClient, cloud: RouterCloud) -> None:
    cloud.faults.down = True
    with pytest.raises(errors.APIConnectionError) as info:
        client.info(RequestOptions(max_retries=0))
    assert not isinstance(info.value, errors.APITimeoutError)
    assert len(cloud.faults.calls) == 1


def test_deadline_stops_retries_before_a_long_backoff(cloud: RouterCloud) -> None:
    slow = RetryPolicy(max_retries=5, initial_delay_s=30.0, max_delay_s=60.0)
    c = cloud.client(retry=slow)
    cloud.faults.queue = [503] * 6
    t0 = time.monotonic()
    with pytest.raises(errors.InternalServerError):
        c.info(RequestOptions(deadline_s=0.5))
    assert time.monotonic() - t0 < 0.5
    assert len(cloud.faults.calls) == 1


def test_response_that_breaks_the_protocol_is_a_validation_error() -> None:
    c = EdgeClient(
        "http://cloud",
        http_client=httpx.Client(
            transport=httpx.MockTransport(lambda r: httpx.Response(200, json={"unexpected": True}))
        ),
    )
    with pytest.raises(errors.APIResponseValidationError):
        c.info()


def test_async_client_retries_and_parses(cloud: RouterCloud) -> None:
    async def main() -> int:
        async with cloud.async_client() as c:
            cloud.faults.queue = [502]
            info = await c.info()
            assert info.model == "fake-lm" and info.tokenizer_fingerprint == cloud.fingerprint
            with pytest.raises(errors.NotFoundError):
                await c.get_session("missing")
            return c.stats.retries

    assert asyncio.run(main()) == 1


def test_sync_and_async_clients_send_the_same_requests(cloud: RouterCloud) -> None:
    """One implementation serves both: the same call gives the same request and the same answer."""
    body = CreateSessionRequest(request_id="same-1", tokenizer_fingerprint=cloud.fingerprint, prompt_token_ids=[1, 2])
    with cloud.client() as c:
        sync_state = c.create_session(body).state

    async def main() -> str:
        async with cloud.async_client() as c:
            return (await c.create_session(body)).state.session_id

    async_sid = asyncio.run(main())  # the router answers the retried request_id from its record
    assert async_sid == sync_state.session_id
    assert cloud.faults.calls == [("POST", "/v1/sessions", "same-1")] * 2
