"""A real Celery worker process on the real broker (REDIS_URL) and the test database."""

import os
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

ROOT = Path(__file__).resolve().parents[2]


class WorkerProcess:
    def __init__(self, env: dict[str, str], log_path: Path):
        self.env = env
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        from config.celery_app import app

        log = open(self.log_path, "ab")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "config", "worker", "--loglevel", "INFO",
             "--concurrency", "2", "--pool", "prefork", "-n", f"test-{os.getpid()}@%h",
             "--without-gossip", "--without-mingle"],
            cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Celery worker exited at start:\n{self.log()}")
            if app.control.ping(timeout=0.5):
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
