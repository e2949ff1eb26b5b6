"""The official stripe Python client against the Kassa emulator: create, confirm, capture,
cancel, refund payment intents and list events. Exits non-zero on the first disagreement.

Usage: STRIPE_API_BASE=http://127.0.0.1:PORT STRIPE_SECRET_KEY=sk_... python stripe_client_check.py
"""
import os
import sys

import stripe

base = os.environ["STRIPE_API_BASE"]
client = stripe.StripeClient(os.environ["STRIPE_SECRET_KEY"], base_addresses={"api": base}, max_network_retries=0)


def check(condition, message):
    if not condition:
        print("FAILED:", message, file=sys.stderr)
        sys.exit(1)


# Automatic capture: create, confirm, refund in two parts.
intent = client.payment_intents.create(params={"amount": 2000, "currency": "eur", "metadata": {"order": "o1"}})
check(intent.status == "requires_payment_method", f"created status {intent.status}")
check(intent.metadata["order"] == "o1", "metadata round trip")
intent = client.payment_intents.confirm(intent.id, params={"payment_method": "pm_card_visa"})
check(intent.status == "succeeded", f"confirmed status {intent.status}")
check(intent.amount_received == 2000, "amount received")
refund = client.refunds.create(params={"payment_intent": intent.id, "amount": 500})
check(refund.status == "succeeded" and refund.amount == 500, "partial refund")
refund = client.refunds.create(params={"payment_intent": intent.id})
check(refund.amount == 1500, f"rest refunded, got {refund.amount}")
try:
    client.refunds.create(params={"payment_intent": intent.id, "amount": 1})
    check(False, "over-refund must fail")
except stripe.InvalidRequestError as error:
    check(error.code == "charge_already_refunded", f"over-refund code {error.code}")

# Manual capture: authorize, capture part.
intent = client.payment_intents.create(params={"amount": 3000, "currency": "usd", "capture_method": "manual"})
intent = client.payment_intents.confirm(intent.id, params={"payment_method": "pm_card_visa"})
check(intent.status == "requires_capture", f"authorized status {intent.status}")
intent = client.payment_intents.capture(intent.id, params={"amount_to_capture": 2500})
check(intent.status == "succeeded" and intent.amount_received == 2500, "partial capture")

# Cancel, and a declined card.
intent = client.payment_intents.create(params={"amount": 1000, "currency": "jpy"})
intent = client.payment_intents.cancel(intent.id)
check(intent.status == "canceled", f"canceled status {intent.status}")
intent = client.payment_intents.create(params={"amount": 1000, "currency": "gbp"})
try:
    client.payment_intents.confirm(intent.id, params={"payment_method": "pm_card_chargeDeclined"})
    check(False, "declined card must fail")
except stripe.CardError as error:
    check(error.code == "card_declined", f"decline code {error.code}")
check(client.payment_intents.retrieve(intent.id).status == "requires_payment_method", "payable again")

# Events, newest first, filtered by type.
events = client.events.list(params={"limit": 100})
check(len(events.data) > 5, "events were recorded")
succeeded = client.events.list(params={"type": "payment_intent.succeeded"})
check(all(e.type == "payment_intent.succeeded" for e in succeeded.data), "type filter")
check(len(succeeded.data) == 2, f"two succeeded events, got {len(succeeded.data)}")
check(client.events.retrieve(events.data[0].id).id == events.data[0].id, "retrieve event")
print("official stripe client: all checks passed")
