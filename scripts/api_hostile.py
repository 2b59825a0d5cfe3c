#!/usr/bin/env python3
"""Hostile inputs for every operation of the API, from its own OpenAPI document.

schemathesis generates values that fit the schema (and some that do not); this script sends the
classes that broke the service before and that a generator rarely reaches: integers at and past
the 32- and 64-bit limits, far-future and far-past instants (and ones RFC 3339 cannot write),
control characters, text that is not UTF-8, and path segments that do not decode. For every
operation, every parameter and every body field gets every value of its class, with the other
fields plain and valid.

Each answer must be: not a 5xx; JSON, and for an error the one documented shape
({"error": {"type": <one of the documented types>, "message", "param"}}); and the connection must
stay usable: the next request on the same keep-alive connection is answered, unless the answer
said `Connection: close`. A last request checks that the service still reads and writes.

Usage: api_hostile.py BASE_URL TOKEN OPENAPI_JSON
Prints one line per finding and ends with 'hostile: N passed, N failed'; exit 1 on a finding.
"""

import http.client
import json
import sys
import urllib.parse

INTEGERS = [
    -1, 0, 2**31 - 1, 2**31, -(2**31) - 1, 2**32, 2**53 + 1, 2**63 - 1, 2**63, -(2**63),
    -(2**63) - 1, 2**64, 10**30, 1.5, 1e308,
]
INSTANTS = [
    "9999-12-31T23:59:59Z", "+10000-01-01T00:00:00Z", "0001-01-01T00:00:00Z",
    "-0001-01-01T00:00:00Z", "1969-12-31T23:59:59Z", "2199-12-31T23:59:59Z",
    "2262-04-11T23:47:16Z", "99999-01-01T00:00:00Z", "2012-02-30T00:00:00Z",
]
TEXTS = [
    "\u0000", "a\u0000b", "\u001b[31mred", "line\nbreak", "\r\nX-Injected: 1", "\u007f",
    "\u0085", "\ud800", "\ufeff", " ", "x" * 5000, "<script>alert(1)</script>",
]
PATH_SEGMENTS = [
    "%FF", "%00", "%C0%AF", "%E2%82", "99999999999999999999", "-1", "0", "1%20", "..%2F..",
    "9223372036854775808", "1e3", "%0D%0A",
]
RAW_BODIES = [
    b'{"name": "\xff\xfe"}', b"\xff\xfe\xfd", b'{"count": 1', b"[]", b"null",
    b'{"count": 1e999}', b'{"count": 99999999999999999999999999}', b'"\\ud800"',
]


class Checker:
    def __init__(self, base, token, doc):
        url = urllib.parse.urlsplit(base)
        self.host, self.port = url.hostname, url.port
        self.token = token
        self.doc = doc
        self.types = set(doc["components"]["schemas"]["ErrorType"]["enum"])
        self.conn = None
        self.passed = 0
        self.failed = []
        self.statuses = {}

    def connect(self):
        if self.conn is not None:
            self.conn.close()
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=30)

    def send(self, method, path, body=None, headers=None):
        """One request on the kept connection; reconnects only when the server said so."""
        h = {"Authorization": f"Bearer {self.token}"}
        if body is not None:
            h["Content-Type"] = "application/json"
        h.update(headers or {})
        if self.conn is None:
            self.connect()
        try:
            self.conn.request(method, path, body=body, headers=h)
            r = self.conn.getresponse()
            data = r.read()
        except (http.client.HTTPException, OSError) as e:
            self.connect()
            return None, {}, repr(e)
        headers = {k.lower(): v for k, v in r.getheaders()}
        if headers.get("connection", "").lower() == "close":
            self.connect()
        return r.status, headers, data

    def check(self, what, method, path, body=None, headers=None):
        status, h, data = self.send(method, path, body, headers)
        self.statuses[status] = self.statuses.get(status, 0) + 1
        problem = None
        if status is None:
            problem = f"no answer ({data}): the connection was dropped"
        elif status >= 500:
            problem = f"answered {status}: {data[:200]!r}"
        elif not h.get("content-type", "").startswith("application/json"):
            problem = f"answered {status} as {h.get('content-type')!r}: {data[:200]!r}"
        else:
            try:
                doc = json.loads(data)
            except ValueError:
                doc = None
            if status >= 400:
                err = doc.get("error") if isinstance(doc, dict) else None
                if not (
                    isinstance(err, dict)
                    and err.get("type") in self.types
                    and isinstance(err.get("message"), str)
                    and "param" in err
                ):
                    problem = f"answered {status} outside the error shape: {data[:200]!r}"
        # The connection is still usable: a plain read on it is answered.
        if problem is None:
            s2, _, d2 = self.send("GET", "/v1/status")
            if s2 != 200:
                problem = f"the next request on the connection failed ({s2}: {d2!r:.200})"
        if problem:
            self.failed.append(f"{what}: {method} {path}: {problem}")
            print(f"FINDING {what}: {method} {path}: {problem}", flush=True)
        else:
            self.passed += 1


def resolve(doc, schema):
    if isinstance(schema, dict) and "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return doc["components"]["schemas"][name]
    return schema


def kind_of(schema):
    """integer, number, boolean, instant or text, from a (possibly nullable) schema."""
    t = schema.get("type")
    types = t if isinstance(t, list) else [t]
    types = [x for x in types if x != "null"]
    for alt in schema.get("anyOf", []) + schema.get("oneOf", []):
        at = alt.get("type")
        if at and at != "null":
            types.append(at)
            if alt.get("format") == "date-time":
                return "instant"
    if schema.get("format") == "date-time":
        return "instant"
    for k in ("integer", "number", "boolean", "string"):
        if k in types:
            return {"string": "text"}.get(k, k)
    return "text"


def plain(kind, name):
    if kind in ("integer", "number"):
        return 1
    if kind == "boolean":
        return False
    if kind == "instant":
        return "2012-01-02T03:04:05Z"
    if name == "tier":
        return "cloud_standard"
    if name == "schedule":
        return "monthly"
    return "x"


def hostile(kind):
    if kind in ("integer", "number"):
        return INTEGERS + ["1", None]
    if kind == "instant":
        return INSTANTS + TEXTS[:3]
    if kind == "boolean":
        return ["true", 2**64]
    return TEXTS + INSTANTS[:2] + [2**63]


def main():
    base, token, doc_path = sys.argv[1:4]
    doc = json.load(open(doc_path))
    c = Checker(base, token, doc)
    for path, item in sorted(doc["paths"].items()):
        for method, op in sorted(item.items()):
            if path == "/v1/stripe/webhook":
                continue  # signed by Stripe: refused before any field is read (tested in Rust)
            m = method.upper()
            concrete = path.replace("{id}", "1")
            # Path segments that do not decode or do not fit.
            if "{id}" in path:
                for seg in PATH_SEGMENTS:
                    c.check("path id", m, path.replace("{id}", seg), "{}" if m == "POST" else None)
            # Query parameters.
            for p in op.get("parameters", []):
                if p["in"] != "query":
                    continue
                kind = kind_of(p["schema"])
                for v in hostile(kind):
                    text = json.dumps(v) if not isinstance(v, str) else v
                    q = p["name"] + "=" + urllib.parse.quote(
                        text.encode("utf-8", "surrogatepass"), safe=""
                    )
                    c.check(f"query {p['name']}", m, f"{concrete}?{q}")
                for raw in ["%FF", "%00", "%C0%AF"]:
                    c.check(f"query {p['name']}", m, f"{concrete}?{p['name']}={raw}")
            # Body fields.
            body = op.get("requestBody")
            if body is None:
                continue
            schema = resolve(doc, body["content"]["application/json"]["schema"])
            props = schema.get("properties", {})
            required = schema.get("required", [])
            base_body = {
                k: plain(kind_of(resolve(doc, props[k])), k) for k in required if k in props
            }
            for name, s in props.items():
                kind = kind_of(resolve(doc, s))
                for v in hostile(kind):
                    b = dict(base_body)
                    b[name] = v
                    c.check(f"field {name}", m, concrete, json.dumps(b))
            for raw in RAW_BODIES:
                c.check("raw body", m, concrete, raw)
            c.check("idempotency key", m, concrete, json.dumps(base_body),
                    {"Idempotency-Key": "k\u00ff\u00fe".encode("latin-1").decode("latin-1")})
    # The service still reads and writes after all of it.
    status, _, data = c.send("POST", "/v1/customers", json.dumps({"name": "After the storm"}))
    if status != 200:
        c.failed.append(f"a plain write after the run answered {status}: {data!r:.200}")
    else:
        c.passed += 1
    counts = ", ".join(f"{k}: {v}" for k, v in sorted(c.statuses.items(), key=str))
    print(f"answers by status: {counts}")
    print(f"hostile: {c.passed} passed, {len(c.failed)} failed")
    sys.exit(1 if c.failed else 0)


if __name__ == "__main__":
    main()
