"""Real Celery worker processes on the real broker (REDIS_URL) and the test database.

celery_worker_process (session): one worker on all four queues (interactive, webhooks, sync,
default), as `make demo` and a small deployment would run. celery_worker_factory
(function): more workers for one test, on queues of that test's own (a CELERY_QUEUE_PREFIX),
each on all queues or on the ones named: factory(queues=["sync"], concurrency=2, **env)."""

import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

ROOT = Path(__file__).resolve().parents[2]


class WorkerProcess:
    def __init__(
        self,
        env: dict[str, str],
        log_path: Path,
        name: str | None = None,
        *,
        queues: Sequence[str] | None = None,
        concurrency: int = 2,
        beat: bool = False,
    ):
        """queues: names without the prefix (the env's CELERY_QUEUE_PREFIX is put before
        each); None consumes all four. beat: run beat in the worker too (-B), as the one
        beat of a deployment: the sweeps, the dispatcher, the resume of dead workers' syncs."""
        self.env = env
        self.log_path = log_path
        self.name = name or f"test-{os.getpid()}"
        self.queues = list(queues) if queues is not None else None
        self.concurrency = concurrency
        self.beat = beat
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
                str(self.concurrency),
                "--pool",
                "prefork",
                "-n",
                f"{self.name}@%h",
                "--without-gossip",
                "--without-mingle",
                *self._queue_args(),
                *self._beat_args(),
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

    def _beat_args(self) -> list[str]:
        if not self.beat:
            return []
        # A schedule file of its own: no last-run times left by another test's beat.
        return ["--beat", "--schedule", str(self.log_path.with_suffix(".beat"))]

    def _queue_args(self) -> list[str]:
        if self.queues is None:
            return []  # the worker takes every queue of CELERY_TASK_QUEUES
        prefix = self.env.get("CELERY_QUEUE_PREFIX", "")
        return ["-Q", ",".join(prefix + queue for queue in self.queues)]

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
_test_prefixes = itertools.count(1)


class WorkerFactory:
    """Workers for one test, all on this test's own queues (`prefix` before each name), so
    the session worker takes none of their tasks and they none of its. A task the worker
    enqueues itself (a sync's next part, the syncs after an exchange) stays on them; for the
    tasks this test process enqueues, `route_here()` or apply_async(queue=factory.queue(..))."""

    def __init__(self, worker_env: dict[str, str], tmp_path_factory) -> None:
        self.worker_env = worker_env
        self.tmp_path_factory = tmp_path_factory
        self.prefix = f"t{os.getpid()}-{next(_test_prefixes)}-"
        self.workers: list[WorkerProcess] = []
        self._routes_before: dict | None = None

    def __call__(
        self,
        *,
        queues: Sequence[str] | None = None,
        concurrency: int = 2,
        beat: bool = False,
        **env_overrides: str,
    ) -> WorkerProcess:
        if "CELERY_QUEUE" in env_overrides:
            raise TypeError(
                "CELERY_QUEUE is gone: the factory's workers have queues of their own already;"
                " enqueue with apply_async(queue=factory.queue('sync')) or factory.route_here()"
            )
        name = f"test-{os.getpid()}-{next(_worker_names)}"
        log_path = self.tmp_path_factory.mktemp("worker") / f"{name}.log"
        env = {**self.worker_env, "CELERY_QUEUE_PREFIX": self.prefix, **env_overrides}
        worker = WorkerProcess(
            env, log_path, name=name, queues=queues, concurrency=concurrency, beat=beat
        )
        self.workers.append(worker)
        worker.start()
        return worker

    def queue(self, name: str) -> str:
        """The name of this test's queue `name` (interactive, webhooks, sync, default)."""
        return self.prefix + name

    def route_here(self) -> None:
        """Until the test ends, tasks this process enqueues (a service's .delay()) go to this
        test's queues, by the same routes as settings.CELERY_TASK_ROUTES."""
        from django.conf import settings

        from config.celery_app import app

        ours = settings.CELERY_QUEUE_PREFIX
        routes = {
            task: {**route, "queue": self.prefix + route["queue"].removeprefix(ours)}
            for task, route in settings.CELERY_TASK_ROUTES.items()
        }
        if self._routes_before is None:
            self._routes_before = {
                "task_routes": app.conf.task_routes,
                "task_default_queue": app.conf.task_default_queue,
            }
        # conf.update tells Celery's router to rebuild (a plain assignment would not).
        app.conf.update(task_routes=routes, task_default_queue=self.queue("default"))

    def close(self) -> None:
        from config.celery_app import app

        if self._routes_before is not None:
            app.conf.update(**self._routes_before)
        for worker in self.workers:
            worker.kill_group()


@pytest.fixture
def celery_worker_factory(worker_env, tmp_path_factory):
    """Start workers for this test: factory(queues=["interactive", "webhooks"],
    concurrency=2, beat=False, **env_overrides). All are killed when the test ends."""
    factory = WorkerFactory(worker_env, tmp_path_factory)
    yield factory
    factory.close()
