from celery import shared_task

from connections import services


@shared_task(name="connections.magic_links_expire")
def magic_links_expire() -> int:
    return services.magic_links_expire()
