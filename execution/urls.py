from django.urls import path

from execution import views

urlpatterns = [
    path("tasks/", views.task_list, name="task-list"),
    path("tasks/new/", views.task_create, name="task-create"),
    path("tasks/<int:task_id>/", views.task_detail, name="task-detail"),
    path("tasks/<int:task_id>/attempts/", views.attempt_start, name="attempt-start"),
    path("attempts/<int:attempt_id>/", views.attempt_detail, name="attempt-detail"),
    path("attempts/<int:attempt_id>/cancel/", views.attempt_cancel, name="attempt-cancel"),
]
