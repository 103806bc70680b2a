"""Origin / Host matrix: the header sets real browsers send (Chrome, Firefox, Safari) against every
state-changing operation of the service's own OpenAPI document, with and without the token; prints a
markdown table of cases tried / refused per browser profile.

    .venv/bin/python bench/origin_matrix.py

A real ``neural-shapes serve`` (``tests/service_server.py``) on a temporary data folder. Every case from a
browser (an ``Origin``, ``null`` included, or a ``Sec-Fetch-Site`` other than ``none``) or with a Host that
is not exactly one loopback name must be refused by the guard (400 or 403 with the guard's own message,
or 400 from the HTTP parser); the control, a local program's request (no Origin, the token, a loopback
Host), must pass the guard. ``tests/test_origin_matrix.py`` asserts both.
"""

from __future__ import annotations

import http.client
import json
import secrets
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backend.service.api.guard import GUARD_MESSAGES  # noqa: E402

PROFILES = {
    "Chrome 126": {
        "User-Agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36",
        "sec-ch-ua": '"Not/A)Brand";v="8", "Chromium";v="126", "Google Chrome";v="126"',
        "sec-ch-ua-mobile": "?0",
        "sec-ch-ua-platform": '"Linux"',
        "Accept": "*/*",
        "Accept-Language": "en-GB,en;q=0.9",
        "Accept-Encoding": "gzip, deflate, br, zstd",
        "Sec-Fetch-Mode": "cors",
        "Sec-Fetch-Dest": "empty",
    },
    "Firefox 128": {
        "User-Agent": "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
        "Accept": "*/*",
        "Accept-Language": "en-GB,en;q=0.5",
        "Accept-Encoding": "gzip, deflate, br, zstd",
        "Sec-Fetch-Mode": "cors",
        "Sec-Fetch-Dest": "empty",
        "Connection": "keep-alive",
    },
    "Safari 17": {
        "User-Agent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
        "Accept": "*/*",
        "Accept-Language": "en-GB,en;q=0.9",
        "Accept-Encoding": "gzip, deflate, br",
        "Sec-Fetch-Mode": "cors",
        "Sec-Fetch-Dest": "empty",
    },
}
# Host names a page could reach the service by (aliases of loopback, DNS rebinding), none of them exactly
# 127.0.0.1 / localhost / [::1]: the guard refuses them all, loopback or not.
HOST_ALIASES = (
    "localhost.",
    "127.1",
    "0.0.0.0",
    "[::ffff:127.0.0.1]",
    "127.0.0.2",
    "2130706433",
    "0x7f.0.0.1",
    "localhost.localdomain",
    "127.0.0.1.nip.io",
    "evil.example",
    "rebind.evil.example",
    "[::]",
    "LOCALHOST.",
    "127.0.0.1\t.evil.example",
)
ORIGIN_BYPASSES = (
    "http://127.0.0.1.evil.example",
    "http://localhost@evil.example",
    "http://127.0.0.1:{port}.evil.example",
    "http://evil.example#@127.0.0.1:{port}",
    "http://127.0.0.1%2e.evil.example",
    "http://[::1]:{port}",
    "HTTP://LOCALHOST:{port}",
    " http://127.0.0.1:{port}",
    "http://127.0.0.1:{port} ",
    "file://",
    "null",
    "http://localhost:{port}",
    "https://127.0.0.1:{port}",
)


@dataclass(frozen=True)
class Case:
    """One request: a browser scenario's headers (``hosts``: the Host header line(s) sent)."""

    scenario: str
    headers: tuple[tuple[str, str], ...]
    hosts: tuple[str, ...]


def browser_cases(port: int) -> Iterator[Case]:
    """What a page can make a browser send to the service, one scenario each."""
    here = f"127.0.0.1:{port}"
    sites = {
        "same-origin": ("http://" + here, "same-origin"),
        "same-site (other port)": ("http://localhost:3000", "same-site"),
        "cross-site": ("https://evil.example", "cross-site"),
        "null origin (sandbox, file)": ("null", "cross-site"),
    }
    for name, (origin, site) in sites.items():
        yield Case(name, (("Origin", origin), ("Sec-Fetch-Site", site)), (here,))
        yield Case(
            f"{name}, form post",
            (
                ("Origin", origin),
                ("Sec-Fetch-Site", site),
                ("Sec-Fetch-Mode", "navigate"),
                ("Content-Type", "application/x-www-form-urlencoded"),
            ),
            (here,),
        )
    for site in (
        "cross-site",
        "same-site",
        "same-origin",
        " CROSS-SITE ",
        "Cross-Site",
    ):  # Origin stripped (extensions, old engines)
        yield Case(f"Sec-Fetch-Site {site.strip()!r} without Origin", (("Sec-Fetch-Site", site),), (here,))
    for origin in ORIGIN_BYPASSES:
        yield Case(f"Origin {origin.format(port=port)!r}", (("Origin", origin.format(port=port)),), (here,))
    yield Case("ORIGIN in capitals", (("ORIGIN", "https://evil.example"),), (here,))
    yield Case("two Origin headers", (("Origin", "http://" + here), ("Origin", "https://evil.example")), (here,))
    for alias in HOST_ALIASES:
        for host in (alias, f"{alias}:{port}"):
            yield Case(
                f"Host {host!r} (rebinding)", (("Origin", f"http://{host}"), ("Sec-Fetch-Site", "same-origin")), (host,)
            )
            yield Case(f"Host {host!r}, no Origin", (), (host,))
    yield Case("two Host headers (loopback first)", (), (here, "evil.example"))
    yield Case("two Host headers (loopback second)", (), ("evil.example", here))
    yield Case("two Host headers (both loopback)", (), (here, f"localhost:{port}"))


def state_changing_operations(document: dict) -> list[tuple[str, str]]:
    """(METHOD, path with ids filled in) for every POST / PUT / PATCH / DELETE of an OpenAPI document."""
    operations = []
    for template, methods in document["paths"].items():
        for method in methods:
            if method in ("post", "put", "patch", "delete"):
                path = template
                while "{" in path:
                    start, end = path.index("{"), path.index("}")
                    path = path[:start] + secrets.token_hex(16) + path[end + 1 :]
                operations.append((method.upper(), path))
    return operations


def send(port: int, method: str, path: str, headers: list[tuple[str, str]], body: bytes) -> tuple[int, str]:
    """One request with exactly these header lines; returns the status and the ``detail`` (or raw body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        for key, value in headers:
            conn.putheader(key, value)
        conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        response = conn.getresponse()
        data = response.read()
        try:
            return response.status, json.loads(data)["detail"]
        except (ValueError, KeyError, TypeError):
            return response.status, data.decode("latin-1")
    finally:
        conn.close()


def body_for(method: str, path: str, binary_paths: tuple[str, ...]) -> tuple[str, bytes]:
    if path in binary_paths:
        return "application/octet-stream", b"\0" * 36
    return "application/json", b"{}" if method != "DELETE" else b""


def refused_by_guard(status: int, detail: str) -> bool:
    """The guard's 400 / 403 (or the HTTP parser's 400, which never reaches the app)."""
    return status in (400, 403) and (
        detail in GUARD_MESSAGES or not detail.startswith("{") and "Invalid HTTP" in detail
    )


def run_matrix(port: int, token: str, document: dict) -> tuple[dict[str, list[int]], list[str]]:
    """Every browser case x operation x (token, no token); the control per operation and loopback Host.
    Returns {row: [tried, refused or accepted]} and one line per case that went the wrong way."""
    from backend.service.api import BINARY_PATHS

    operations = state_changing_operations(document)
    table: dict[str, list[int]] = {}
    wrong: list[str] = []
    for profile, profile_headers in PROFILES.items():
        row = table.setdefault(profile, [0, 0])
        for case in browser_cases(port):
            for method, path in operations:
                content_type, body = body_for(method, path, BINARY_PATHS)
                for with_token in (False, True):
                    headers = [("Host", host) for host in case.hosts] + list(profile_headers.items())
                    headers += [("Content-Type", content_type), *case.headers]
                    if with_token:
                        headers.append(("Authorization", f"Bearer {token}"))
                    status, detail = send(port, method, path, headers, body)
                    row[0] += 1
                    if refused_by_guard(status, detail):
                        row[1] += 1
                    else:
                        wrong.append(
                            f"{profile}: {case.scenario}, {method} {path}, token={with_token}: {status} {detail[:80]}"
                        )
    control = table.setdefault("local program (no Origin, token): accepted", [0, 0])
    hosts = (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}", "127.0.0.1", f"LOCALHOST:{port}")
    for host, extra in [(host, []) for host in hosts] + [(f"127.0.0.1:{port}", [("Sec-Fetch-Site", "none")])]:
        for method, path in operations:
            content_type, body = body_for(method, path, BINARY_PATHS)
            headers = [("Host", host), ("Authorization", f"Bearer {token}"), ("Content-Type", content_type), *extra]
            status, detail = send(port, method, path, headers, body)
            control[0] += 1
            if status not in (401, 403) and detail not in GUARD_MESSAGES:
                control[1] += 1
            else:
                wrong.append(f"control: {method} {path} Host {host} {extra}: {status} {detail[:80]}")
    return table, wrong


def markdown(table: dict[str, list[int]]) -> str:
    lines = ["| profile | cases tried | refused |", "|---|---:|---:|"]
    for name, (tried, counted) in table.items():
        lines.append(f"| {name} | {tried:,} | {counted:,} |")
    return "\n".join(lines)


def main() -> None:
    from tests.service_server import ServerProcess

    with tempfile.TemporaryDirectory() as folder:
        server = ServerProcess(Path(folder) / "data")
        try:
            _, _, data = server.client.request("GET", "/openapi.json")
            table, wrong = run_matrix(server.port, server.client.token, json.loads(data))
        finally:
            server.stop()
    print(markdown(table))
    for line in wrong:
        print("WRONG:", line)


if __name__ == "__main__":
    main()
