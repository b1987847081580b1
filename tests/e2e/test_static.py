"""The demo's files: vendored STOMP clients pinned and unmodified, served by the gateway.

static/vendor/ holds the exact npm files (tests/e2e/vendor.mjs copies them):
@stomp/stompjs 7 as static/vendor/stompjs-<version>/stomp.umd.min.js and the legacy
stompjs 2.3.3 as static/vendor/stompjs-2.3.3/stomp.min.js, each with its licence.
"""

from __future__ import annotations

import json
import re

import httpx
import pytest

from tests.e2e.helpers import E2E_DIR, ROOT

STATIC = ROOT / "static"
PACKAGE = json.loads((E2E_DIR / "package.json").read_text())
LOCK = json.loads((E2E_DIR / "package-lock.json").read_text())
STOMPJS = PACKAGE["devDependencies"]["@stomp/stompjs"]
LEGACY = PACKAGE["devDependencies"]["stompjs"]
VENDORED = {
    # vendored file -> the file in node_modules it must equal
    f"vendor/stompjs-{STOMPJS}/stomp.umd.min.js": "@stomp/stompjs/bundles/stomp.umd.min.js",
    f"vendor/stompjs-{STOMPJS}/LICENSE": "@stomp/stompjs/LICENSE",
    f"vendor/stompjs-{LEGACY}/stomp.min.js": "stompjs/lib/stomp.min.js",
    f"vendor/stompjs-{LEGACY}/LICENSE.txt": "stompjs/LICENSE.txt",
}


def test_npm_versions_are_pinned_and_locked() -> None:
    for name, version in PACKAGE["devDependencies"].items():
        assert re.fullmatch(r"\d+\.\d+\.\d+", version), f"{name} is not pinned: {version}"
        assert LOCK["packages"][f"node_modules/{name}"]["version"] == version
    assert STOMPJS.startswith("7.")
    assert LEGACY == "2.3.3"


def test_vendored_files_are_the_npm_files() -> None:
    for vendored in VENDORED:
        assert (STATIC / vendored).is_file(), f"static/{vendored} is missing: npm run vendor"
    # Only the pinned versions are shipped.
    assert sorted(p.name for p in (STATIC / "vendor").iterdir() if p.is_dir()) == sorted(
        {f"stompjs-{STOMPJS}", f"stompjs-{LEGACY}"}
    )
    modules = E2E_DIR / "node_modules"
    if not (modules / "@stomp" / "stompjs").is_dir():
        pytest.skip(
            "E2E SKIPPED (partly): tests/e2e/node_modules missing, vendored files "
            "not compared with npm's: run scripts/ensure-e2e-deps.sh"
        )
    for vendored, original in VENDORED.items():
        assert (STATIC / vendored).read_bytes() == (modules / original).read_bytes(), (
            f"static/{vendored} differs from node_modules/{original}: "
            "cd tests/e2e && npm run vendor"
        )


def test_pages_load_only_vendored_scripts() -> None:
    index = (STATIC / "index.html").read_text()
    legacy = (STATIC / "legacy.html").read_text()
    assert re.findall(r'<script src="([^"]+)"', index) == [
        f"vendor/stompjs-{STOMPJS}/stomp.umd.min.js",
        "app.js",
    ]
    assert re.findall(r'<script src="([^"]+)"', legacy) == [
        f"vendor/stompjs-{LEGACY}/stomp.min.js",
        "legacy.js",
    ]
    for page in (STATIC / "index.html", STATIC / "legacy.html", STATIC / "style.css"):
        assert "//cdn" not in page.read_text() and "unpkg" not in page.read_text()
    assert f"'{STOMPJS}'" in (STATIC / "app.js").read_text()  # the version the page shows


def static_bytes(name: str) -> bytes:
    return (STATIC / name).read_bytes()


@pytest.mark.parametrize(
    ("path", "content_type", "source"),
    [
        ("/", "text/html; charset=utf-8", "index.html"),
        ("/legacy.html", "text/html; charset=utf-8", "legacy.html"),
        ("/app.js", "text/javascript; charset=utf-8", "app.js"),
        ("/style.css", "text/css; charset=utf-8", "style.css"),
        (
            f"/vendor/stompjs-{STOMPJS}/stomp.umd.min.js",
            "text/javascript; charset=utf-8",
            f"vendor/stompjs-{STOMPJS}/stomp.umd.min.js",
        ),
    ],
)
async def test_gateway_serves_the_demo(
    http_base: str, path: str, content_type: str, source: str
) -> None:
    async with httpx.AsyncClient(base_url=http_base, timeout=5) as client:
        response = await client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"] in (
        content_type,
        content_type.replace("text/javascript", "application/javascript"),
    )
    assert response.content == static_bytes(source)
