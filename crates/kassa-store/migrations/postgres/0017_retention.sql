-- Retention (risk D2): the janitor prunes webhook events the inbox finished with and merchant
-- notifications delivered or dead, oldest first in bounded batches, by these times (checkout
-- idempotency keys by the existing (recovery_point, updated_at) index). Nothing that records
-- money or who did what is ever pruned. Kept column-for-column equal with the other backend's
-- file.
CREATE INDEX webhook_events_by_received ON webhook_events (received_at);
CREATE INDEX outbox_by_created ON outbox (created_at);
-- Credits for every paid period (risk W6): what the customer paid for a granted period (a
-- coupon, a customer balance or tax makes it differ from the plan's price), beside the grant;
-- and why a subscription waits for a person (an invoice paid for a price Kassa does not know,
-- or reported paid with money still owed): a reason code and the invoice, NULL when none.
ALTER TABLE credit_entries ADD COLUMN paid_amount BIGINT;
ALTER TABLE credit_entries ADD COLUMN paid_currency TEXT;
ALTER TABLE subscriptions ADD COLUMN needs_attention TEXT;
