"""Running a Celery task's body in the test process, as a worker would on its Nth delivery,
and catching the retries it asks for instead of publishing them."""

from typing import Any

from celery.exceptions import Retry


def catch_retries(monkeypatch, task) -> list[float | None]:
    """The countdowns `task` asks to be retried with (the retry is not published)."""
    countdowns: list[float | None] = []

    def retry(*, exc=None, countdown=None, **kwargs):
        countdowns.append(countdown)
        return Retry(exc=exc, when=countdown)

    monkeypatch.setattr(task, "retry", retry)
    return countdowns


def run_as_worker(task, *args: Any, retries: int = 0) -> Any:
    """task's body with request.retries = `retries`, in this process."""
    task.push_request(retries=retries)
    try:
        return task.run(*args)
    finally:
        task.pop_request()
