"""Create the first admin account once (``make run`` calls this on every start; it is a no-op afterwards)."""

from __future__ import annotations

import os
import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Create the admin account if no superuser exists (password from ANYON_ADMIN_PASSWORD or generated)."

    def handle(self, *args, **options) -> None:
        user_model = get_user_model()
        if user_model.objects.filter(is_superuser=True).exists():
            return
        password = os.environ.get("ANYON_ADMIN_PASSWORD") or ""
        generated = not password
        if generated:
            password = secrets.token_urlsafe(18)
        user_model.objects.create_superuser(
            username=settings.ANYON_ADMIN_USERNAME, email=settings.ANYON_ADMIN_EMAIL, password=password
        )
        self.stdout.write(self.style.SUCCESS(f"Created admin account '{settings.ANYON_ADMIN_USERNAME}'."))
        if generated:
            # Printed exactly once: it is not stored anywhere in plaintext.
            self.stdout.write(self.style.WARNING(f"Its generated password (shown only now): {password}"))
