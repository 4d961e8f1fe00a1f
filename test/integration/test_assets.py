"""The files sessiond serves from its own binary (web/, linked in by worker/assets.c):
the bytes served are the files' bytes, with an ETag that revalidates to 304."""
import gzip
import os

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")


def web(name):
    with open(os.path.join(ROOT, "web", name), "rb") as f:
        return f.read()


def test_served_bytes_are_the_web_files(server):
    for path, name, ctype in (("/dashboard", "dashboard.html", "text/html"),
                              ("/client.js", "client.js", "text/javascript")):
        status, headers, data = server.request("GET", path)
        assert status == 200, path
        assert headers["Content-Type"].startswith(ctype)
        assert data == web(name), f"{path} is not web/{name} as built"
        assert headers["X-Content-Type-Options"] == "nosniff"


def test_etag_revalidates_to_304_and_changes_with_the_bytes(server):
    _, headers, _ = server.request("GET", "/client.js")
    tag = headers["ETag"]
    assert tag.startswith('"') and tag.endswith('"')
    status, h304, data = server.request("GET", "/client.js", headers={"If-None-Match": tag})
    assert status == 304 and data == b"" and h304["ETag"] == tag
    status, _, _ = server.request("GET", "/client.js",
                                  headers={"If-None-Match": f'"x", W/{tag}'})
    assert status == 304
    status, _, data = server.request("GET", "/client.js", headers={"If-None-Match": '"0"'})
    assert status == 200 and data == web("client.js")
    _, other, _ = server.request("GET", "/dashboard")
    assert other["ETag"] != tag  # a tag per file


def test_client_js_may_be_imported_from_another_origin(server):
    _, headers, _ = server.request("GET", "/client.js")
    assert headers["Access-Control-Allow-Origin"] == "*"


def test_dashboard_is_locked_down_and_can_be_turned_off(server_factory):
    s = server_factory(workers=1)
    _, headers, _ = s.request("GET", "/dashboard")
    csp = headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "connect-src 'self'" in csp
    assert headers["X-Frame-Options"] == "DENY"
    status, _, data = s.request("HEAD", "/dashboard")
    assert status == 200 and data == b""
    off = server_factory(conf="dashboard off", workers=1)
    status, _, _ = off.request("GET", "/dashboard")
    assert status == 404
    status, _, _ = off.request("GET", "/client.js")
    assert status == 200  # the client library is not part of the dashboard


def test_large_assets_are_gzipped_for_clients_that_ask(server):
    body = web("dashboard.html")
    assert len(body) > 1024  # over the gzip threshold, or this checks nothing
    status, headers, data = server.request("GET", "/dashboard",
                                           headers={"Accept-Encoding": "gzip"})
    assert status == 200 and headers.get("Content-Encoding") == "gzip"
    assert gzip.decompress(data) == body
