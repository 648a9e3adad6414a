from django.urls import path

from execution.web import environments, snapshots, views

urlpatterns = [
    path("tasks/", views.task_list, name="task-list"),
    path("tasks/new/", views.task_create, name="task-create"),
    path("tasks/repositories/", views.task_repositories, name="task-repositories"),
    path("tasks/<int:task_id>/", views.task_detail, name="task-detail"),
    path("tasks/<int:task_id>/attempts/", views.attempt_start, name="attempt-start"),
    path("attempts/<int:attempt_id>/", views.attempt_detail, name="attempt-detail"),
    path("attempts/<int:attempt_id>/cancel/", views.attempt_cancel, name="attempt-cancel"),
    path("attempts/<int:attempt_id>/follow-up/", views.attempt_follow_up, name="attempt-follow-up"),
    path("attempts/<int:attempt_id>/pull-request/", views.attempt_pull_request, name="attempt-pull-request"),
    path("attempts/<int:attempt_id>/jobs/<int:job_id>/cancel/", views.job_cancel, name="job-cancel"),
    path("attempts/<int:attempt_id>/runs/<int:run_id>/outputs/<int:number>/", views.tool_output, name="tool-output"),
    path("attempts/<int:attempt_id>/network/allow/", views.attempt_allow_host, name="attempt-allow-host"),
    path("attempts/<int:attempt_id>/delete/", views.attempt_delete, name="attempt-delete"),
    path("environments/", environments.environment_list, name="environment-list"),
    path("environments/<str:owner>/<str:name>/", environments.environment_detail, name="environment-detail"),
    path(
        "environments/<str:owner>/<str:name>/proposal/accept/",
        environments.accept_proposed_policy,
        name="environment-accept-proposal",
    ),
    path("environments/<str:owner>/<str:name>/delete/", environments.environment_delete, name="environment-delete"),
    path("environments/<str:owner>/<str:name>/secrets/", environments.setup_secret_save, name="setup-secret-save"),
    path(
        "environments/<str:owner>/<str:name>/secrets/<int:setup_secret_id>/delete/",
        environments.setup_secret_delete,
        name="setup-secret-delete",
    ),
    path("snapshots/", snapshots.snapshot_list, name="snapshot-list"),
    path("snapshots/<int:snapshot_id>/drop/", snapshots.snapshot_drop, name="snapshot-drop"),
]
