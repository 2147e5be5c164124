"""A real Celery worker process on the real broker (REDIS_URL) and the test database."""

import itertools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

ROOT = Path(__file__).resolve().parents[2]


class WorkerProcess:
    def __init__(self, env: dict[str, str], log_path: Path, name: str | None = None):
        self.env = env
        self.log_path = log_path
        self.name = name or f"test-{os.getpid()}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        from config.celery_app import app

        log = open(self.log_path, "ab")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "config",
                "worker",
                "--loglevel",
                "INFO",
                "--concurrency",
                "2",
                "--pool",
                "prefork",
                "-n",
                f"{self.name}@%h",
                "--without-gossip",
                "--without-mingle",
            ],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            # Its own process group, so kill_group() takes the pool children down too.
            start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Celery worker exited at start:\n{self.log()}")
            replies = app.control.ping(timeout=0.5)
            if any(node.startswith(f"{self.name}@") for reply in replies for node in reply):
                return
        raise RuntimeError(f"Celery worker did not answer a ping in 30 s:\n{self.log()}")

    def stop(self, *, kill: bool = False) -> None:
        if self.proc and self.proc.poll() is None:
            if kill:
                self.proc.kill()
            else:
                self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill_group(self) -> None:
        """SIGKILL the worker and its pool children at once, as a crashed host would."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:]


def _database_url_for(db_settings: dict) -> str:
    url = urlsplit(os.environ["DATABASE_URL"])
    return urlunsplit(url._replace(path="/" + db_settings["NAME"]))


@pytest.fixture(scope="session")
def worker_env(django_db_setup, sandbox_server, tmp_path_factory) -> dict[str, str]:
    """Environment for processes that must share this test run's database and sandbox."""
    from django.conf import settings

    if not os.environ.get("REDIS_URL") or not os.environ.get("DATABASE_URL"):
        pytest.fail("Integration tests need DATABASE_URL and REDIS_URL: run them with `make test`.")
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DATABASE_URL": _database_url_for(settings.DATABASES["default"]),
        "TRACKSTAR_BASE_URL": sandbox_server.base_url,
        "TRACKSTAR_API_KEY": sandbox_server.api_key,
        "TRACKSTAR_WEBHOOK_SECRET": sandbox_server.webhook_secret,
        "DOCKSIDE_VAR_DIR": str(tmp_path_factory.mktemp("var")),
        "PYTHONUNBUFFERED": "1",
    }


@pytest.fixture(scope="session")
def celery_worker_process(worker_env, tmp_path_factory):
    worker = WorkerProcess(worker_env, tmp_path_factory.mktemp("worker") / "worker.log")
    worker.start()
    yield worker
    worker.stop()


_worker_names = itertools.count(1)


@pytest.fixture
def celery_worker_factory(worker_env, tmp_path_factory):
    """Start extra workers with environment overrides: start(CELERY_QUEUE="q", ...).
    Give each test's workers a queue of their own (CELERY_QUEUE) so the session worker
    does not take their tasks. All are killed when the test ends."""
    workers: list[WorkerProcess] = []

    def start(**env_overrides: str) -> WorkerProcess:
        name = f"test-{os.getpid()}-{next(_worker_names)}"
        log_path = tmp_path_factory.mktemp("worker") / f"{name}.log"
        worker = WorkerProcess({**worker_env, **env_overrides}, log_path, name=name)
        workers.append(worker)
        worker.start()
        return worker

    yield start
    for worker in workers:
        worker.kill_group()
