-- An order of several sellers' products is one charge (its transfer group is the order) and a
-- transfer to each seller after capture. Each transfer, and each reversal a refund takes back
-- from one, is a durable job: planned once (the primary keys), sent with a key derived from
-- it, done when the provider's id is recorded, or refused with the provider's reason.
-- Kept column-for-column equal with the other backend's file.
ALTER TABLE payments ADD COLUMN transfer_group TEXT;
CREATE TABLE seller_transfers (
    order_id              TEXT NOT NULL REFERENCES orders (id),
    seller_id             TEXT NOT NULL REFERENCES sellers (id),
    account_id            TEXT NOT NULL,
    currency              TEXT NOT NULL,
    gross_amount          INTEGER NOT NULL CHECK (gross_amount >= 0),
    fee_amount            INTEGER NOT NULL CHECK (fee_amount >= 0),
    amount                INTEGER NOT NULL CHECK (amount >= 0),
    source_charge         TEXT,
    provider_key          TEXT NOT NULL,
    provider_transfer_id  TEXT,
    refusal               TEXT,
    created_at            INTEGER NOT NULL,
    updated_at            INTEGER NOT NULL,
    PRIMARY KEY (order_id, seller_id),
    CONSTRAINT seller_transfers_key UNIQUE (provider_key),
    CONSTRAINT seller_transfers_share CHECK (amount + fee_amount = gross_amount)
);
CREATE INDEX seller_transfers_by_seller ON seller_transfers (seller_id);
CREATE TABLE transfer_reversals (
    refund_id             TEXT NOT NULL REFERENCES refunds (id),
    seller_id             TEXT NOT NULL,
    order_id              TEXT NOT NULL,
    amount                INTEGER NOT NULL CHECK (amount > 0),
    provider_key          TEXT NOT NULL,
    provider_reversal_id  TEXT,
    refusal               TEXT,
    created_at            INTEGER NOT NULL,
    updated_at            INTEGER NOT NULL,
    PRIMARY KEY (refund_id, seller_id),
    FOREIGN KEY (order_id, seller_id) REFERENCES seller_transfers (order_id, seller_id),
    CONSTRAINT transfer_reversals_key UNIQUE (provider_key)
);
-- Which succeeded refunds of a transfer group's order have had their reversals planned.
ALTER TABLE refunds ADD COLUMN reversals_planned INTEGER NOT NULL DEFAULT 0;
