"""The session-store contract on both stores (in-memory, and Redis on a real redis-server), plus what only
a shared store has to get right: optimistic locking between two router processes, expiry, outages."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator

import pytest

from client_edge.protocol import EscalateResponse, PrefixRef, SamplingSettings, SessionResponse, Usage
from router.errors import RouterError
from router.sessions.content import TextContent, TokenContent
from router.sessions.store import MemorySessionStore, Session, SessionStore, open_store
from tests.fakes.redis_server import RedisServer, redis_or_skip


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = redis_or_skip(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


def _store(kind: str, redis_server: RedisServer | None, **kw: float) -> SessionStore:
    opts = {"max_sessions": 100, "ttl_s": 60.0, "records": 3, **kw}
    if kind == "memory":
        return MemorySessionStore(**opts)  # type: ignore[arg-type]
    assert redis_server is not None
    return open_store(redis_server.url, **opts)  # type: ignore[arg-type]


@pytest.fixture(params=["memory", "redis"])
def make_store(request: pytest.FixtureRequest):  # noqa: ANN201 - a store factory
    server = request.getfixturevalue("redis_server") if request.param == "redis" else None
    if server is not None:
        import redis

        redis.Redis.from_url(server.url).flushdb()
    return lambda **kw: _store(request.param, server, **kw)


def _session(store: SessionStore, tenant: str = "t1", ids: tuple[int, ...] = (1, 2, 3)) -> Session:
    return Session(
        id=store.new_id(), tenant=tenant, mode="token", sampling=SamplingSettings(temperature=0.7, seed=5),
        replica=0, content=TokenContent.of(ids), max_model_len=512,
    )  # fmt: skip


def _reply(session: Session, n: int) -> EscalateResponse:
    return EscalateResponse(
        state=session.state(), tokens=[], text=f"reply {n}", agreed=None, agreed_prefix=0, finish_reason="length",
        usage=Usage(),
    )


def test_add_get_remove_and_tenant_isolation(make_store) -> None:
    async def run() -> None:
        store = make_store()
        s = _session(store)
        await store.add(s)
        got = await store.get(s.id, "t1")
        assert got.content.ref() == s.content.ref() and got.sampling == s.sampling and got.version == 0
        assert got.state(include_content=True).token_ids == [1, 2, 3]
        with pytest.raises(RouterError) as other:
            await store.get(s.id, "t2")
        with pytest.raises(RouterError) as missing:
            await store.get("s_nope", "t1")
        # another tenant's session reads exactly like a missing one
        assert other.value.code == missing.value.code == "unknown_session"
        with pytest.raises(RouterError):
            await store.remove(s.id, "t2")
        await store.get(s.id, "t1")  # still there
        await store.remove(s.id, "t1")
        with pytest.raises(RouterError, match="no session"):
            await store.get(s.id, "t1")
        await store.aclose()

    asyncio.run(run())


def test_commit_replay_conflict_and_record_limit(make_store) -> None:
    async def run() -> None:
        store = make_store()
        s = _session(store)
        await store.add(s)
        s = await store.get(s.id, "t1")
        new = s.content.append([4, 5])  # type: ignore[union-attr]
        assert await store.commit(s, new, "r1", "d1", _reply(s, 1))
        fresh = await store.get(s.id, "t1")
        assert fresh.content.ref() == new.ref() and fresh.version == 1
        again = await store.replay(fresh, "r1", "d1")
        assert isinstance(again, EscalateResponse) and again.text == "reply 1"
        with pytest.raises(RouterError) as conflict:
            await store.replay(fresh, "r1", "other-digest")
        assert conflict.value.code == "idempotency_conflict"
        assert await store.replay(fresh, "r-new", "d") is None
        for n in range(2, 6):  # records=3: r1 and r2 fall out
            assert await store.commit(fresh, fresh.content, f"r{n}", "d", _reply(fresh, n))
        assert await store.replay(fresh, "r1", "d1") is None and await store.replay(fresh, "r2", "d") is None
        assert (await store.replay(fresh, "r5", "d")).text == "reply 5"  # type: ignore[union-attr]
        await store.aclose()

    asyncio.run(run())


def test_replies_kept_within_a_byte_budget_newest_always_kept(make_store) -> None:
    async def run() -> None:
        s0 = _session(MemorySessionStore(max_sessions=1, ttl_s=1, records=1))
        size = len(_reply(s0, 1).model_dump_json())
        store = make_store(records=10, reply_bytes=int(2.5 * (size + 40)))  # room for two replies, not three
        s = _session(store)
        await store.add(s)
        s = await store.get(s.id, "t1")
        for n in range(1, 5):
            assert await store.commit(s, s.content, f"r{n}", "d", _reply(s, n))
        kept = [n for n in range(1, 5) if await store.replay(s, f"r{n}", "d") is not None]
        assert kept == [3, 4]
        tiny = make_store(records=10, reply_bytes=1024)
        await tiny.add(t := _session(tiny))
        t = await tiny.get(t.id, "t1")
        big = _reply(t, 0).model_copy(update={"text": "x" * 5000})
        assert await tiny.commit(t, t.content, "big", "d", big)
        assert (await tiny.replay(t, "big", "d")).text == "x" * 5000  # type: ignore[union-attr]
        await store.aclose()
        await tiny.aclose()

    asyncio.run(run())


def test_text_content_round_trips(make_store) -> None:
    async def run() -> None:
        store = make_store()
        s = _session(store)
        s.mode = "text"
        s.content = TextContent(text="héllo wörld 🙂", ids=(0, 7, 9), ends=(0, 3, 5), holdback=2, n_start=1)
        await store.add(s)
        got = await store.get(s.id, "t1")
        assert got.content == s.content and got.mode == "text"
        await store.aclose()

    asyncio.run(run())


def test_session_cap_and_create_records(make_store) -> None:
    async def run() -> None:
        store = make_store(max_sessions=2)
        a, b = _session(store), _session(store)
        await store.add(a)
        await store.add(b)
        with pytest.raises(RouterError) as full:
            await store.add(_session(store))
        assert full.value.code == "rate_limited"
        reply = SessionResponse(state=a.state())
        assert await store.create_replay("t1", "c1", "d") is None
        assert await store.create_record("t1", "c1", "d", reply) == reply
        assert await store.create_replay("t1", "c1", "d") == reply
        assert await store.create_replay("t2", "c1", "d") is None  # per tenant
        with pytest.raises(RouterError, match="different body"):
            await store.create_replay("t1", "c1", "other")
        await store.aclose()

    asyncio.run(run())


def test_ttl_expires_sessions_and_frees_the_cap(make_store) -> None:
    async def run() -> None:
        store = make_store(ttl_s=0.3, max_sessions=1)
        s = _session(store)
        await store.add(s)
        await store.get(s.id, "t1")
        del s  # drop this process's copy: an in-memory session is not expired while in use
        time.sleep(0.6)
        with pytest.raises(RouterError, match="no session"):
            await store.get(store.new_id(), "t1")
        await store.add(_session(store))  # the expired one no longer counts
        await store.aclose()

    asyncio.run(run())


def test_two_routers_never_lose_an_update(redis_server: RedisServer) -> None:
    """Two store clients (two router processes) append to one session concurrently with the optimistic
    loop the service runs: every append lands exactly once."""

    async def run() -> None:
        a, b = _store("redis", redis_server), _store("redis", redis_server, records=100)
        s = _session(a, ids=(0,))
        await a.add(s)
        conflicts = 0

        async def append(store: SessionStore, token: int) -> None:
            nonlocal conflicts
            mine = await store.get(s.id, "t1")
            while True:
                await store.refresh(mine)
                await asyncio.sleep(0)  # let the other router interleave
                new = mine.content.append([token])  # type: ignore[union-attr]
                if await store.commit(mine, new, f"r{token}", "d", _reply(mine, token)):
                    return
                conflicts += 1

        await asyncio.gather(*(append(a if t % 2 else b, t) for t in range(1, 41)))
        final = await a.get(s.id, "t1")
        ids = final.content.ids  # type: ignore[union-attr]
        assert sorted(ids) == list(range(41)) and final.version == 40
        assert conflicts > 0  # the interleaving did race (else this test proves nothing)
        await a.aclose()
        await b.aclose()

    asyncio.run(run())


def test_duplicate_create_on_two_routers_keeps_one_session(redis_server: RedisServer) -> None:
    async def run() -> None:
        a, b = _store("redis", redis_server), _store("redis", redis_server)
        sa, sb = _session(a), _session(b)
        await a.add(sa)
        await b.add(sb)
        won = await a.create_record("t1", "dup", "d", SessionResponse(state=sa.state()))
        lost = await b.create_record("t1", "dup", "d", SessionResponse(state=sb.state()))
        assert won.state.session_id == lost.state.session_id == sa.id  # type: ignore[attr-defined]
        with pytest.raises(RouterError, match="no session"):
            await b.get(sb.id, "t1")  # the loser's session is gone
        await a.aclose()
        await b.aclose()

    asyncio.run(run())


def test_store_outage_is_a_clear_503_and_changes_nothing(tmp_path) -> None:
    """A frozen Redis (SIGSTOP: answers nothing) and a dead one (connection refused): store_unavailable
    within seconds, and once it is back the session is exactly as before."""
    server = redis_or_skip(tmp_path)
    try:

        async def run() -> None:
            store = _store("redis", server)
            s = _session(store)
            await store.add(s)
            s = await store.get(s.id, "t1")
            assert server.proc is not None
            os.kill(server.proc.pid, signal.SIGSTOP)
            try:
                t0 = time.monotonic()
                with pytest.raises(RouterError) as frozen:
                    await store.commit(s, s.content.append([9]), "r1", "d", _reply(s, 1))  # type: ignore[union-attr]
                took = time.monotonic() - t0
            finally:
                os.kill(server.proc.pid, signal.SIGCONT)
            assert frozen.value.code == "store_unavailable" and frozen.value.status == 503
            assert "redis://" not in frozen.value.message  # no internal address in the answer
            assert took < 10, took
            got = await store.get(s.id, "t1")
            assert got.version == 0 and got.content.ref() == PrefixRef(length=3, hash=s.content.hash)
            assert await store.replay(got, "r1", "d") is None
            await store.aclose()

            dead = _store("redis", server)
            server.stop()
            with pytest.raises(RouterError) as refused:
                await dead.get(s.id, "t1")
            assert refused.value.code == "store_unavailable"
            assert await dead.ping() is False
            await dead.aclose()

        asyncio.run(run())
    finally:
        server.stop()
