"""The Origin / Host matrix (``bench/origin_matrix.py``): every request a browser page can make the
browser send (Chrome, Firefox, Safari header sets; same-origin, same-site, cross-site, ``Origin: null``,
``Sec-Fetch-Site`` without Origin, origin-bypass strings, loopback aliases, DNS rebinding, duplicate
Host headers) to every state-changing operation of the OpenAPI document, with and without the token,
is refused by the guard; a local program's request with the token passes it."""

from __future__ import annotations

import json

import pytest

from bench.origin_matrix import PROFILES, markdown, run_matrix
from tests.service_server import ServerProcess

pytestmark = pytest.mark.service


def test_browsers_are_refused_and_local_programs_accepted(tmp_path):
    server = ServerProcess(tmp_path / "data")
    try:
        _, _, data = server.client.request("GET", "/openapi.json")
        document = json.loads(data)
        table, wrong = run_matrix(server.port, server.client.token, document)
    finally:
        server.stop()
    print("\n" + markdown(table))
    assert not wrong, "\n".join(wrong[:40])
    operations = sum(m in ("post", "put", "patch", "delete") for methods in document["paths"].values() for m in methods)
    assert operations >= 10  # uploads, import, fit, cancel, render, nf2vec jobs, deletes
    for profile in PROFILES:
        tried, refused = table[profile]
        assert tried == refused and tried >= 80 * operations * 2, (profile, tried, refused)
