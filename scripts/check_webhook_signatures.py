#!/usr/bin/env python3
"""Checks that the webhook deliveries the Stripe emulator made in the tests are signed exactly as
Stripe signs them, with Stripe's own Python library (stripe.Webhook.construct_event), so that the
scheme is Stripe's and not only our verifier checking our signer. A changed body must fail.

Usage: check_webhook_signatures.py SAMPLES.json   (written by tests/it/payments.rs)
"""
import json
import sys

import stripe


def main(path):
    samples = json.load(open(path))
    if not samples:
        print(f"no webhook deliveries in {path}: nothing was checked", file=sys.stderr)
        return 1
    for s in samples:
        # The samples were signed during the test run, minutes ago: the timestamp is checked by
        # the tests themselves; here the signature scheme is.
        event = stripe.Webhook.construct_event(s["body"], s["header"], s["secret"], tolerance=None)
        assert event["id"] == json.loads(s["body"])["id"]
        try:
            stripe.Webhook.construct_event(s["body"] + " ", s["header"], s["secret"], tolerance=None)
        except stripe.SignatureVerificationError:
            pass
        else:
            print("a changed body was accepted", file=sys.stderr)
            return 1
    print(f"stripe {stripe.VERSION}: {len(samples)} webhook deliveries verified with stripe.Webhook.construct_event")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
