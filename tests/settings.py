"""Settings module of the test suite: test-environment defaults, then the real settings.

Only environment defaults are set here (CI or a developer can override any of them); live server and worker
subprocesses inherit this environment and use ``anyon.settings`` itself.
"""

import os
import tempfile

os.environ.setdefault("ANYON_SECRET_KEY", "test-secret-key-" + "k" * 40)
os.environ.setdefault("ANYON_SECURE_COOKIES", "false")
os.environ.setdefault("ANYON_TEMP_DIR", tempfile.mkdtemp(prefix="anyon-test-"))
os.environ.setdefault("ANYON_DATA_DIR", tempfile.mkdtemp(prefix="anyon-test-data-"))
# Containers and volumes of this test session carry this label; the session removes them at the end.
# Never this machine's own services' settings file (/etc/anyon/env): a test that wants one names its own.
os.environ.setdefault("ANYON_ENV_FILE", os.path.join(tempfile.gettempdir(), f"anyon-test-no-env-file-{os.getpid()}"))
os.environ.setdefault("ANYON_INSTANCE", f"test-{os.getpid()}")
# Most runner tests exercise mounted mode (and reach the fakes over the host network); the sealed tests switch to the
# production default, sealed, with a real egress proxy process (tests/execution/runner/test_sealed_docker.py).
os.environ.setdefault("ANYON_CREDENTIAL_MODE", "mounted")
# Tests reach only 127.0.0.1: the release check asks a closed local port unless a test serves a fake registry.
os.environ.setdefault("ANYON_NPM_REGISTRY_URL", "http://127.0.0.1:9")

from anyon.settings import *  # noqa: F403

# Fast password hashing: the suite creates many users; production keeps Django's default PBKDF2.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# Every admin page rendered in the suite (here or in a live server) is kept for the end-of-session leak check.
MIDDLEWARE = [*MIDDLEWARE, "tests.fixtures.leaks.AdminPageRecorder"]  # noqa: F405
