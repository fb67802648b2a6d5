"""The servers the fleet's tests start are real: a PostgreSQL and a Redis that answer."""

from __future__ import annotations

import time


def test_postgres_is_real(postgres_url: str) -> None:
    import psycopg

    with psycopg.connect(postgres_url) as conn:
        version = conn.execute("SHOW server_version").fetchone()
        schema = conn.execute("SELECT current_schema()").fetchone()
    assert version is not None and int(str(version[0]).split(".")[0]) >= 12
    assert schema is not None and str(schema[0]).startswith("t_")


def test_redis_is_real(redis_url: str) -> None:
    import redis

    client = redis.Redis.from_url(redis_url)
    assert client.ping()
    assert "redis_version" in client.info("server")
    client.set("probe", "1", px=50)
    time.sleep(0.1)
    assert client.get("probe") is None  # a real server expires keys on its own clock
    client.close()
