from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from anyon import views

admin.site.site_header = "Anyon Cloud operations"
admin.site.site_title = "Anyon Cloud admin"

urlpatterns = [
    path("", views.home, name="home"),
    path("healthz", views.healthz, name="healthz"),
    path("login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("settings/", include("secrets_app.urls")),
    path("", include("execution.web.urls")),
    path("admin/", admin.site.urls),
]
