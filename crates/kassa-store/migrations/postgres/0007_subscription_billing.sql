-- Subscriptions started through the API (seed 003): the client's Idempotency-Key they were
-- started with (a retry finds the same one), their hosted page, and the billing state the
-- provider's reports move with compare-and-set writes on `version`. Kept column-for-column
-- equal with the other backend's file.
ALTER TABLE subscriptions ADD COLUMN client_scope TEXT;
ALTER TABLE subscriptions ADD COLUMN client_key TEXT;
ALTER TABLE subscriptions ADD COLUMN checkout_url TEXT;
ALTER TABLE subscriptions ADD COLUMN checkout_expires_at BIGINT;
ALTER TABLE subscriptions ADD COLUMN unpaid_period_end BIGINT;
ALTER TABLE subscriptions ADD COLUMN version BIGINT NOT NULL DEFAULT 0;
CREATE UNIQUE INDEX subscriptions_client_key ON subscriptions (client_scope, client_key);
CREATE INDEX subscriptions_by_customer ON subscriptions (customer_id, created_at);
-- The order a customer's entries were written in (the customer's version under its lock), so
-- "newest first" holds within one second too.
ALTER TABLE credit_entries ADD COLUMN sequence BIGINT NOT NULL DEFAULT 0;
DROP INDEX credit_entries_by_customer;
CREATE INDEX credit_entries_by_customer ON credit_entries (customer_id, sequence);
