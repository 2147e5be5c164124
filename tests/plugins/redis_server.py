"""A Redis server of one test's own, for tests that stop, hang or empty it.

`private_redis` starts a redis-server on a free port (as scripts/services.sh does) and points
this process at it: the cache, the rate limiters and Celery's broker (the live server runs
in this process, so it follows). `private_redis_worker()` starts a real worker on it. The
session's Redis, its worker and the other tests are not touched."""

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import redis

from tests.plugins.worker import WorkerProcess


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        """Start it (again, on the same port: empty, as a restart without persistence)."""
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if self.client().ping():
                    return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.proc = None

    def pause(self) -> None:
        """Hung: the port still accepts connections, nothing answers (SIGSTOP)."""
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.proc.pid, signal.SIGCONT)

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_timeout=2, socket_connect_timeout=2)

    def flushall(self) -> None:
        self.client().flushall()


def _point_celery_at(url: str) -> None:
    from config.celery_app import app

    app.conf.broker_url = url
    app.conf.broker_write_url = None
    app.conf.broker_read_url = None
    app._after_fork()  # drop the pooled connections to the broker before


@pytest.fixture
def private_redis(settings, tmp_path):
    from config.celery_app import app
    from connections import degrade

    server = RedisServer(tmp_path)
    server.start()
    broker_before = app.conf.broker_url
    names = ("REDIS_URL", "CELERY_BROKER_URL", "CACHES")
    before = {name: getattr(settings, name) for name in names}
    settings.REDIS_URL = server.url
    settings.CELERY_BROKER_URL = server.url
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": server.url,
            "OPTIONS": settings.REDIS_CACHE_OPTIONS,
        }
    }
    _point_celery_at(server.url)
    degrade.reset()
    yield server
    # Back to the session's Redis now, not when `settings` ends: the teardowns of fixtures
    # set up before this one (the sandbox's clears the cache) run in between.
    for name, value in before.items():
        setattr(settings, name, value)
    _point_celery_at(broker_before)
    degrade.reset()
    if server.proc is not None and server.proc.poll() is None:
        server.resume()  # a paused server cannot be terminated
    server.stop()


@pytest.fixture
def private_redis_worker(private_redis, worker_env, tmp_path_factory):
    """start(**env) → a worker on the private Redis, consuming every queue; killed (with its
    pool) when the test ends, so nothing it started outlives the test."""
    workers: list[WorkerProcess] = []

    def start(**env_overrides: str) -> WorkerProcess:
        env = {
            **worker_env,
            "REDIS_URL": private_redis.url,
            "CELERY_BROKER_URL": private_redis.url,
            "CELERY_RESULT_BACKEND": private_redis.url,
            **env_overrides,
        }
        env.pop("CELERY_QUEUE_PREFIX", None)  # this Redis is the test's: no prefix needed
        name = f"redis-{os.getpid()}-{len(workers) + 1}"
        worker = WorkerProcess(env, tmp_path_factory.mktemp("worker") / f"{name}.log", name=name)
        workers.append(worker)
        worker.start()
        return worker

    yield start
    for worker in workers:
        worker.kill_group()
