"""django-q2's schedule admin, for superusers only: a schedule names any importable function (``os.system``) and
runs it in the worker, which controls Docker, that is root on the host. Staff see the schedules read-only."""

from __future__ import annotations

from django.contrib import admin
from django_q.admin import ScheduleAdmin
from django_q.models import Schedule


class SuperuserScheduleAdmin(ScheduleAdmin):
    def has_add_permission(self, request) -> bool:
        return request.user.is_superuser

    def has_change_permission(self, request, obj=None) -> bool:
        return request.user.is_superuser

    def has_delete_permission(self, request, obj=None) -> bool:
        return request.user.is_superuser

    def has_view_permission(self, request, obj=None) -> bool:
        return request.user.is_active and request.user.is_staff


admin.site.unregister(Schedule)
admin.site.register(Schedule, SuperuserScheduleAdmin)
