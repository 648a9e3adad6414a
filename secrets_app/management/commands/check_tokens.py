"""``manage.py check_tokens``: the daily token check now (re-validate GitHub tokens, mark expired, notify)."""

from django.core.management.base import BaseCommand

from secrets_app.expiry import check_token_expiry


class Command(BaseCommand):
    help = "Re-validate GitHub tokens, mark expired credentials, warn owners of those expiring within 7 days."

    def handle(self, *args, **options) -> None:
        self.stdout.write(check_token_expiry())
