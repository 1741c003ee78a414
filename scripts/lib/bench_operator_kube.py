"""A small Kubernetes REST client for scripts/bench-operator (standard library only).

One persistent HTTPS connection per thread, client-certificate or bearer-token auth, JSON
bodies; a watch helper that records when each event arrived. Nothing here is specific to
Palisade.
"""

import http.client
import json
import ssl
import threading
import time
import urllib.parse


class ApiError(Exception):
    def __init__(self, status, body, what):
        super().__init__(f"{what}: HTTP {status}: {body[:300]!r}")
        self.status = status
        self.body = body


class Kube:
    """A client for one API server: `server` is https://host:port, `ca` a CA file; either a
    client certificate (`cert`, `key` files) or a bearer `token`."""

    def __init__(self, server, ca, cert=None, key=None, token=None):
        url = urllib.parse.urlparse(server)
        self.host, self.port = url.hostname, url.port or 443
        self.ssl = ssl.create_default_context(cafile=ca)
        self.token = token
        if cert:
            self.ssl.load_cert_chain(cert, key)
        self._local = threading.local()

    def _conn(self, fresh=False, timeout=60):
        c = getattr(self._local, "conn", None)
        if c is None or fresh:
            if c is not None:
                c.close()
            c = http.client.HTTPSConnection(self.host, self.port, context=self.ssl, timeout=timeout)
            self._local.conn = c
        return c

    def _headers(self, content_type="application/json"):
        h = {"Accept": "application/json", "Content-Type": content_type,
             "User-Agent": "palisade-bench-operator"}
        if self.token:
            h["Authorization"] = f"Bearer {self.token}"
        return h

    def request(self, method, path, body=None, content_type="application/json", ok=(200, 201),
                retries=8):
        data = None if body is None else (body if isinstance(body, (bytes, str)) else json.dumps(body))
        delay = 0.05
        for attempt in range(retries):
            try:
                c = self._conn(fresh=attempt > 0)
                c.request(method, path, body=data, headers=self._headers(content_type))
                r = c.getresponse()
                raw = r.read()
            except (OSError, http.client.HTTPException):
                if attempt == retries - 1:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 2)
                continue
            if r.status in ok:
                return json.loads(raw) if raw and raw[:1] in (b"{", b"[") else raw.decode()
            if r.status in (429, 500, 503, 504) and attempt < retries - 1:
                time.sleep(delay)
                delay = min(delay * 2, 2)
                continue
            raise ApiError(r.status, raw.decode(errors="replace"), f"{method} {path}")
        raise AssertionError("unreachable")

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def create(self, path, obj):
        """POST; an object that already exists counts as created (re-runs are idempotent)."""
        return self.request("POST", path, obj, ok=(200, 201, 409))

    def list_all(self, path, limit=500):
        """All items of a list, following `continue` tokens."""
        items, cont = [], None
        while True:
            q = {"limit": str(limit)}
            if cont:
                q["continue"] = cont
            sep = "&" if "?" in path else "?"
            page = self.get(path + sep + urllib.parse.urlencode(q))
            items.extend(page.get("items", []))
            cont = page.get("metadata", {}).get("continue")
            if not cont:
                return items

    def watch(self, path, on_event, stop, resource_version=None):
        """Streams watch events of `path` to on_event(type, obj, arrival_monotonic) until `stop`
        is set; re-lists nothing (callers list first and pass the resourceVersion), re-watches
        from the last seen resourceVersion when the server ends the stream."""
        rv = resource_version
        while not stop.is_set():
            q = {"watch": "1", "allowWatchBookmarks": "true", "timeoutSeconds": "300"}
            if rv:
                q["resourceVersion"] = rv
            sep = "&" if "?" in path else "?"
            conn = http.client.HTTPSConnection(self.host, self.port, context=self.ssl, timeout=5)
            try:
                conn.request("GET", path + sep + urllib.parse.urlencode(q), headers=self._headers())
                r = conn.getresponse()
                if r.status != 200:
                    raise ApiError(r.status, r.read().decode(errors="replace"), f"WATCH {path}")
                buf = b""
                while not stop.is_set():
                    try:
                        chunk = r.read1(65536)
                    except TimeoutError:
                        continue
                    except OSError:
                        break
                    if not chunk:
                        break
                    buf += chunk
                    while b"\n" in buf:
                        line, buf = buf.split(b"\n", 1)
                        if not line.strip():
                            continue
                        now = time.monotonic()
                        ev = json.loads(line)
                        obj = ev.get("object", {})
                        if ev.get("type") == "ERROR":
                            rv = None  # expired: start from now
                            break
                        rv = obj.get("metadata", {}).get("resourceVersion", rv)
                        if ev.get("type") != "BOOKMARK":
                            on_event(ev["type"], obj, now)
            except (OSError, http.client.HTTPException):
                time.sleep(0.2)
            finally:
                conn.close()
