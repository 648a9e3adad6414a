#!/usr/bin/env python
"""Django's command-line utility for administrative tasks."""

import os
import sys


def main() -> None:
    from anyon.services_env import exec_with_services_env

    exec_with_services_env(sys.argv)  # rotate_secret_key: the services' settings file, before Django reads settings
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "anyon.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
