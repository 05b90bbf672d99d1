"""The web pages: served with a strict Content-Security-Policy, no inline script or style in any of them."""

import re
from html.parser import HTMLParser

import pytest

from service.routes.pages import WEB_DIR

PAGES = ["/", "/annotate/1", "/annotate/some-name", "/projects/1"]


@pytest.mark.parametrize("path", PAGES)
def test_pages_are_html_with_a_strict_csp(client, path):
    r = client.get(path)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp and "unsafe-inline" not in csp
    assert r.headers["x-content-type-options"] == "nosniff"


def test_static_modules_and_css(client):
    js = client.get("/web/annotate.js")
    assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
    assert "content-security-policy" in js.headers
    assert client.get("/web/style.css").headers["content-type"].startswith("text/css")


@pytest.mark.parametrize("path", ["/web/../service/settings.py", "/web/%2e%2e/pyproject.toml", "/web/nope.js",
                                  "/web/", "/projects/not-a-number"])
def test_no_escape_and_404s(client, path):
    assert client.get(path).status_code in (404, 422)


class _Inline(HTMLParser):
    def __init__(self):
        super().__init__()
        self.problems: list[str] = []

    def handle_starttag(self, tag, attrs):
        names = {k for k, _ in attrs}
        if tag == "script" and "src" not in names:
            self.problems.append("inline <script>")
        if tag == "style":
            self.problems.append("<style> element")
        self.problems += [f"{tag} {k}=" for k in names if k == "style" or k.startswith("on")]


@pytest.mark.parametrize("page", sorted(p.name for p in WEB_DIR.glob("*.html")))
def test_html_has_nothing_inline(page):
    parser = _Inline()
    parser.feed((WEB_DIR / page).read_text())
    assert parser.problems == []


@pytest.mark.parametrize("module", sorted(p.relative_to(WEB_DIR).as_posix() for p in WEB_DIR.rglob("*.js")))
def test_scripts_never_write_html(module):
    source = (WEB_DIR / module).read_text()
    assert not re.search(r"\.(innerHTML|outerHTML)\s*=|insertAdjacentHTML|document\.write", source)
