"""The PostgreSQL server the shared-study tests start themselves: it answers on its port, holds a database of its
own, and is gone, directory and process, once stopped."""

from __future__ import annotations

import time

from tests.servers.postgres import postgres_server, require_postgres, start_postgres  # noqa: F401


def test_the_session_server_answers_sql_on_its_own_port(postgres_server):  # noqa: F811
    import sqlalchemy

    assert f":{postgres_server.port}/" in postgres_server.url
    assert 0 < postgres_server.startup_seconds < 60
    engine = sqlalchemy.create_engine(postgres_server.url)
    try:
        with engine.connect() as connection:
            assert connection.execute(sqlalchemy.text("SELECT current_database()")).scalar() == "tests"
            assert connection.execute(sqlalchemy.text("SHOW fsync")).scalar() == "off"
    finally:
        engine.dispose()
    fresh = postgres_server.new_database()
    assert fresh != postgres_server.url and fresh.startswith("postgresql+psycopg2://")


def test_a_stopped_server_leaves_no_process_and_no_directory():
    server = start_postgres(require_postgres())
    assert server.running()
    started = time.perf_counter()
    server.stop()
    assert not server.running() and not server.data_dir.exists()
    assert time.perf_counter() - started < 30
