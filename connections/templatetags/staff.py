from django import template

from connections.models import TrackstarAccount

register = template.Library()


@register.simple_tag
def trackstar_key_incident() -> TrackstarAccount | None:
    """The open "Trackstar refuses our API key" incident, for the banner on admin pages."""
    return TrackstarAccount.objects.filter(pk=1, key_rejected_at__isnull=False).first()
