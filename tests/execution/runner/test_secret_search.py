"""Which paths the setup-secret search reads, and the forms it looks for (execution/runner/secret_search.py); the
search itself runs on the real engine in tests/execution/environments/test_setup_docker.py."""

from __future__ import annotations

import base64
import io
import tarfile

from execution.runner.secret_search import _search_archive, needles, paths_to_search


def test_the_volumes_and_the_top_of_each_added_tree_are_searched():
    changes = [
        {"Path": "/var", "Kind": 0},
        {"Path": "/var/tmp", "Kind": 0},
        {"Path": "/var/tmp/a", "Kind": 1},
        {"Path": "/var/tmp/d", "Kind": 1},
        {"Path": "/var/tmp/d/e", "Kind": 1},
        {"Path": "/var/tmp/d/e/f", "Kind": 1},
        {"Path": "/etc", "Kind": 0},
        {"Path": "/etc/hosts", "Kind": 0},
        {"Path": "/usr/share/doc", "Kind": 0},
        {"Path": "/usr/share/doc/gone", "Kind": 2},
        {"Path": "/usr", "Kind": 0},
        {"Path": "/usr/share", "Kind": 0},
        {"Path": "/run/anyon-secrets", "Kind": 1},
        {"Path": "/tmp/x", "Kind": 1},
    ]
    assert paths_to_search(changes) == [
        "/workspace",
        "/home/anyon",
        "/etc/hosts",
        "/usr/share/doc",
        "/var/tmp/a",
        "/var/tmp/d",
    ]


def archive(files: dict[str, bytes]) -> list[bytes]:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0
            tar.addfile(info, io.BytesIO(data))
    raw = buffer.getvalue()
    return [raw[i : i + 1000] for i in range(0, len(raw), 1000)]  # as the engine streams it, in pieces


def test_a_value_is_found_as_it_is_encoded_and_across_read_chunks():
    value = "s3cret/value+with=signs"
    padding = b"x" * (1024 * 1024 - 5)  # the value straddles the first read chunk's end
    files = {
        "d/plain": padding + value.encode(),
        "d/b64": b"blob:" + base64.b64encode(b"prefix " + value.encode()),
        "d/hex": value.encode().hex().upper().encode(),
        "d/url": b"v=s3cret%2Fvalue%2Bwith%3Dsigns",
        "d/clean": b"nothing here",
    }
    found: dict[str, list[str]] = {}
    _search_archive(iter(archive(files)), "/var/tmp", {"TOKEN": needles(value)}, found)
    assert sorted(found["TOKEN"]) == ["/var/tmp/d/b64", "/var/tmp/d/hex", "/var/tmp/d/plain", "/var/tmp/d/url"]
