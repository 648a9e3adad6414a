from django.urls import path

from secrets_app import views

urlpatterns = [
    path("", views.settings_page, name="settings"),
    path("cards/<str:provider>/", views.card, name="settings-card"),
    path("github/pat/", views.github_pat, name="github-pat"),
    path("github/device/", views.github_device_start, name="github-device-start"),
    path("github/device/<int:flow_id>/poll/", views.github_device_poll, name="github-device-poll"),
    path("github/device/<int:flow_id>/cancel/", views.github_device_cancel, name="github-device-cancel"),
    path("secrets/<int:secret_id>/check/", views.secret_check, name="secret-check"),
    path("secrets/<int:secret_id>/revoke/", views.secret_revoke, name="secret-revoke"),
]
