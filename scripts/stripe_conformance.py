#!/usr/bin/env python3
"""Check every request plan-invoicer sent to the Stripe emulator against Stripe's own API
definitions: the typed parameter definitions shipped in the official `stripe` Python package
(16.x speaks API version 2026-10-28). Every parameter must exist for its endpoint with a
compatible type; every write must carry a plan-invoicer idempotency key.

Usage: stripe_conformance.py RECORD.jsonl   (the emulator's --record file)
"""
import decimal
import json
import sys
import types
import typing
from collections import defaultdict

import stripe
from stripe._request_options import RequestOptions
from stripe import params as P

ENDPOINTS = {
    ("POST", "/v1/customers"): P.CustomerCreateParams,
    ("GET", "/v1/customers/{customer}"): P.CustomerRetrieveParams,
    ("POST", "/v1/invoices"): P.InvoiceCreateParams,
    ("GET", "/v1/invoices"): P.InvoiceListParams,
    ("GET", "/v1/invoices/{invoice}"): P.InvoiceRetrieveParams,
    ("POST", "/v1/invoices/{invoice}/finalize"): P.InvoiceFinalizeInvoiceParams,
    ("POST", "/v1/invoices/{invoice}/add_lines"): P.InvoiceAddLinesParams,
    ("POST", "/v1/products"): P.ProductCreateParams,
    ("GET", "/v1/events"): P.EventListParams,
    # Sent by versions before add_lines, and by the emulator's own tests.
    ("POST", "/v1/invoiceitems"): P.InvoiceItemCreateParams,
    ("GET", "/v1/invoiceitems"): P.InvoiceItemListParams,
    # Sent by the tests as an operator would (behind the worker's back), never by the worker.
    ("POST", "/v1/invoices/{invoice}/void"): P.InvoiceVoidInvoiceParams,
    ("POST", "/v1/invoices/{invoice}/mark_uncollectible"): P.InvoiceMarkUncollectibleParams,
    ("DELETE", "/v1/invoices/{invoice}"): P.InvoiceDeleteParams,
}
OPERATOR_ENDPOINTS = {
    ("POST", "/v1/invoices/{invoice}/void"),
    ("POST", "/v1/invoices/{invoice}/mark_uncollectible"),
    ("DELETE", "/v1/invoices/{invoice}"),
}
CLIENT_OPTIONS = set(RequestOptions.__annotations__)
ANY = object()  # a type this check could not evaluate: any value is accepted, the name is still checked


def is_typeddict(t):
    return isinstance(t, type) and issubclass(t, dict) and hasattr(t, "__total__")


def alternatives(t):
    origin = typing.get_origin(t)
    if origin is typing.Union or origin is types.UnionType:
        out = []
        for a in typing.get_args(t):
            out.extend(alternatives(a))
        return out
    return [t]


def namespace_of(cls):
    """The names a TypedDict's annotations may refer to: typing's and its own module's."""
    module = sys.modules.get(cls.__module__)
    namespace = dict(vars(typing))
    namespace.update(vars(module) if module else {})
    return namespace


def resolve(t, namespace):
    """A forward reference (a string, or one left inside List[...]) evaluated; ANY if it cannot be."""
    if isinstance(t, typing.ForwardRef):
        t = t.__forward_arg__
    if isinstance(t, str):
        try:
            return eval(t, namespace)
        except Exception:
            return ANY
    return t


def hints(cls):
    """The fields of a TypedDict with their evaluated types (NotRequired stripped)."""
    namespace = namespace_of(cls)
    out = {}
    for name, ann in cls.__annotations__.items():
        if name in CLIENT_OPTIONS:
            continue
        if isinstance(ann, typing.ForwardRef):
            ann = ann.__forward_arg__
        try:
            t = eval(ann, namespace) if isinstance(ann, str) else ann
        except Exception:
            out[name] = ANY
            continue
        while typing.get_origin(t) in (typing.NotRequired, typing.Required):
            t = typing.get_args(t)[0]
        if isinstance(t, typing.ForwardRef):
            t = t.__forward_arg__
        if isinstance(t, str):
            try:
                t = eval(t, namespace)
            except Exception:
                t = ANY
        out[name] = t
    return out


def value_fits(t, value):
    """Whether the form value `value` is acceptable for the scalar type `t`."""
    if t is ANY:
        return True
    for alt in alternatives(t):
        origin = typing.get_origin(alt)
        if origin is typing.Literal:
            if value in [str(a) for a in typing.get_args(alt)]:
                return True
        elif alt is bool:
            if value in ("true", "false"):
                return True
        elif alt is int:
            try:
                int(value)
                return True
            except ValueError:
                pass
        elif alt is decimal.Decimal or alt is float:
            try:
                decimal.Decimal(value)
                return True
            except decimal.InvalidOperation:
                pass
        elif alt is str:
            return True
    return False


def check(endpoint_cls, key, value):
    """Return None if `key=value` conforms, else a reason."""
    parts = key.replace("]", "").split("[")
    t = None
    fields = hints(endpoint_cls)
    # The namespace of the TypedDict that declared `t`: a list's element type (`List["Line"]`)
    # stays a forward reference to a name of that module.
    namespace = namespace_of(endpoint_cls)
    for i, part in enumerate(parts):
        if t is None:
            if part not in fields:
                return f"unknown parameter {part!r}"
            t = fields[part]
            continue
        matched = None
        for alt in alternatives(t):
            origin = typing.get_origin(alt)
            if is_typeddict(alt):
                sub = hints(alt)
                if part in sub:
                    matched = sub[part]
                    namespace = namespace_of(alt)
                    break
            elif origin in (dict, typing.Dict) or getattr(alt, "__name__", "") == "UntypedStripeObject" or getattr(origin, "__name__", "") == "UntypedStripeObject":
                args = typing.get_args(alt)
                matched = args[-1] if args else str
                break
            elif origin in (list, typing.List) and (part == "" or part.isdigit()):
                matched = resolve(typing.get_args(alt)[0], namespace)
                break
        if matched is None:
            path = parts[0] + "".join(f"[{p}]" for p in parts[1:i])
            return f"{part!r} is not a field of {path!r}"
        t = matched
    if not value_fits(t, value):
        return f"value {value!r} does not fit {t!r}"
    return None


def main(path):
    seen = defaultdict(set)
    problems = []
    count = 0
    with open(path) as f:
        for line in f:
            if not line.strip():
                continue
            req = json.loads(line)
            count += 1
            endpoint = (req["method"], req["endpoint"])
            cls = ENDPOINTS.get(endpoint)
            if cls is None:
                problems.append(f"{endpoint}: an endpoint this check does not know")
                continue
            if req["method"] == "POST" and endpoint not in OPERATOR_ENDPOINTS and not (req.get("idempotency_key") or "").startswith("plan-invoicer:"):
                problems.append(f"{endpoint}: a write without a plan-invoicer idempotency key")
            for key, value in req["params"].items():
                reason = check(cls, key, value)
                seen[endpoint].add(key)
                if reason:
                    problems.append(f"{' '.join(endpoint)} {key}: {reason}")
    if count == 0:
        print(f"no requests recorded in {path}: nothing was checked", file=sys.stderr)
        return 1
    print(f"stripe {stripe.VERSION} (API {stripe.api_version}): {count} requests checked")
    for endpoint, keys in sorted(seen.items()):
        print(f"  {' '.join(endpoint)}: {', '.join(sorted(keys))}")
    for p in sorted(set(problems)):
        print(f"NONCONFORMING: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
