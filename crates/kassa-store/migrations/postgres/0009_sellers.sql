-- Marketplace sellers (seed 001): each with a connected account at the provider, whose
-- readiness Kassa keeps from account.updated events (the newest observation wins). A product
-- may belong to a seller; an order line keeps the seller it was sold for, as it keeps its
-- price. Kept column-for-column equal with the other backend's file.
CREATE TABLE sellers (
    id                     TEXT PRIMARY KEY,
    name                   TEXT NOT NULL,
    email                  TEXT NOT NULL,
    country                TEXT NOT NULL,
    account_id             TEXT,
    charges_enabled        BIGINT NOT NULL DEFAULT 0,
    payouts_enabled        BIGINT NOT NULL DEFAULT 0,
    readiness_observed_at  BIGINT,
    client_scope           TEXT,
    client_key             TEXT,
    created_at             BIGINT NOT NULL,
    updated_at             BIGINT NOT NULL,
    CONSTRAINT sellers_account UNIQUE (account_id)
);
CREATE UNIQUE INDEX sellers_client_key ON sellers (client_scope, client_key);
ALTER TABLE products ADD COLUMN seller_id TEXT REFERENCES sellers (id);
ALTER TABLE order_lines ADD COLUMN seller_id TEXT;
