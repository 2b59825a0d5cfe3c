#!/usr/bin/env python3
"""A client generated from the API's own OpenAPI document must parse every answer.

Generates a Python client with openapi-python-client (a common generator, strict about `oneOf`),
then drives the running API through it as an integrator would: create a customer and a plan,
change the seats, read a refusal of each error type the API can produce here (400, 401, 403,
404, 409, an idempotency error) through the generated parser, check that the generated error
model accepts every documented error type (the 500 and 503 included), and page the events feed.

Usage: check_generated_client.py BASE_URL WRITE_TOKEN READ_TOKEN OPENAPI_JSON WORK_DIR
Ends with 'generated client: N passed, N failed'; exit 1 on a failure.
"""

import importlib
import json
import os
import subprocess
import sys

base, write_token, read_token, doc_path, work = sys.argv[1:6]
bin_dir = os.path.dirname(sys.executable)
config = os.path.join(work, "client-config.yaml")
with open(config, "w") as f:
    f.write("post_hooks: []\npackage_name_override: pi_client\nproject_name_override: pi_client\n")
out = os.path.join(work, "pi_client")
subprocess.run(
    [os.path.join(bin_dir, "openapi-python-client"), "generate", "--path", doc_path,
     "--config", config, "--output-path", out, "--meta", "none", "--overwrite"],
    check=True,
)
sys.path.insert(0, work)
client_mod = importlib.import_module("pi_client.client")
models = importlib.import_module("pi_client.models")
api = lambda name: importlib.import_module(f"pi_client.api.default.{name}")  # noqa: E731

write = client_mod.AuthenticatedClient(base_url=base, token=write_token)
read = client_mod.AuthenticatedClient(base_url=base, token=read_token)
nobody = client_mod.AuthenticatedClient(base_url=base, token="pit_1_nope")
passed, failed = 0, []


def check(what, ok, detail=""):
    global passed
    if ok:
        passed += 1
    else:
        failed.append(f"{what}: {detail}")
        print(f"FAILED {what}: {detail}", flush=True)


def error_type(response):
    """The parsed error's type, through the generated model (None if it is not an Error)."""
    parsed = response.parsed
    if isinstance(parsed, models.Error):
        return str(parsed.error.type_)
    return None


# A customer and a plan, then seats, through the generated request and response models.
ref = f"gen-{os.getpid()}"
r = api("create_customer").sync_detailed(
    client=write, body=models.CreateCustomerBody.from_dict({"name": "Generated", "external_ref": ref})
)
check("create a customer", r.status_code == 200 and r.parsed is not None, r.content)
customer = r.parsed.id if r.parsed is not None else 0
r = api("create_plan").sync_detailed(
    client=write,
    body=models.CreatePlanBody.from_dict({
        "customer": customer, "tier": "cloud_standard", "schedule": "monthly",
        "licenses": 10, "automanage_licenses": True,
    }),
)
check("create a plan", r.status_code == 200 and r.parsed is not None, r.content)
plan = r.parsed.id if r.parsed is not None else 0
r = api("plan_seats").sync_detailed(
    id=plan, client=write, body=models.PlanSeatsBody.from_dict({"count": 14})
)
check("change the seats", r.status_code == 200 and r.parsed is not None, r.content)

# A refusal of each kind, parsed by the generated client.
refusals = [
    ("400", "invalid_request_error", lambda: api("plan_seats").sync_detailed(
        id=plan, client=write, body=models.PlanSeatsBody.from_dict({"count": -1}))),
    ("401", "authentication_error", lambda: api("status").sync_detailed(client=nobody)),
    ("403", "permission_error", lambda: api("create_customer").sync_detailed(
        client=read, body=models.CreateCustomerBody.from_dict({"name": "x"}))),
    ("404", "invalid_request_error", lambda: api("show_plan").sync_detailed(id=999999, client=read)),
    ("409", "conflict_error", lambda: api("create_customer").sync_detailed(
        client=write, body=models.CreateCustomerBody.from_dict({"name": "Again", "external_ref": ref}))),
]
for status, kind, call in refusals:
    try:
        r = call()
        got = error_type(r)
        check(f"a {status} is parsed", r.status_code == int(status) and got == kind,
              f"{r.status_code} {got} {r.content!r}")
    except Exception as e:  # the generated parser raised
        check(f"a {status} is parsed", False, repr(e))

# An idempotency key reused with another request (400 idempotency_error).
key = f"gen-key-{os.getpid()}"
with client_mod.AuthenticatedClient(base_url=base, token=write_token, headers={"Idempotency-Key": key}) as keyed:
    first = api("create_customer").sync_detailed(
        client=keyed, body=models.CreateCustomerBody.from_dict({"name": "Keyed"}))
    other = api("create_customer").sync_detailed(
        client=keyed, body=models.CreateCustomerBody.from_dict({"name": "Other body"}))
check("an idempotency error is parsed",
      first.status_code == 200 and error_type(other) == "idempotency_error", other.content)

# Every documented error type parses, the ones this run cannot provoke (500, 503) included.
types = json.load(open(doc_path))["components"]["schemas"]["ErrorType"]["enum"]
for t in types:
    try:
        e = models.Error.from_dict({"error": {"type": t, "message": "m", "param": None}})
        check(f"error type {t}", str(e.error.type_) == t)
    except Exception as e:
        check(f"error type {t}", False, repr(e))

# The events feed, paged with its cursor.
after, seen, pages = 0, 0, 0
while pages < 50:
    r = api("list_events").sync_detailed(client=read, after=after, limit=2)
    if r.status_code != 200 or r.parsed is None:
        check("page the events feed", False, r.content)
        break
    seen += len(r.parsed.data)
    pages += 1
    if not r.parsed.has_more:
        break
    after = r.parsed.data[-1].id
check("page the events feed", seen >= 1 and pages >= 1, f"{seen} events in {pages} pages")

print(f"generated client: {passed} passed, {len(failed)} failed")
sys.exit(1 if failed else 0)
