-- Subscriptions and credits (seed 003): plans, Kassa's customers, subscriptions, and the
-- append-only credit ledger. A grant exists once per business key (the paid invoice, the paid
-- credit-pack order): the unique constraint, not a check before the insert, makes it so. Kept
-- column-for-column equal with the other backend's file.
CREATE TABLE plans (
    id                TEXT PRIMARY KEY,
    name              TEXT NOT NULL,
    unit_amount       BIGINT NOT NULL CHECK (unit_amount >= 0),
    currency          TEXT NOT NULL,
    billing_interval  TEXT NOT NULL CHECK (billing_interval IN ('month', 'year')),
    credits           BIGINT NOT NULL CHECK (credits >= 0),
    created_at        BIGINT NOT NULL
);

CREATE TABLE customers (
    id                    TEXT PRIMARY KEY,
    email                 TEXT NOT NULL,
    provider_customer_id  TEXT,
    version               BIGINT NOT NULL DEFAULT 0,
    created_at            BIGINT NOT NULL,
    CONSTRAINT customers_email UNIQUE (email),
    CONSTRAINT customers_provider_id UNIQUE (provider_customer_id)
);

CREATE TABLE subscriptions (
    id                            TEXT PRIMARY KEY,
    customer_id                   TEXT NOT NULL REFERENCES customers (id),
    plan_id                       TEXT NOT NULL REFERENCES plans (id),
    status                        TEXT NOT NULL,
    provider_subscription_id      TEXT,
    provider_checkout_session_id  TEXT,
    current_period_end            BIGINT,
    cancel_at_period_end          BIGINT NOT NULL DEFAULT 0,
    created_at                    BIGINT NOT NULL,
    updated_at                    BIGINT NOT NULL,
    CONSTRAINT subscriptions_provider_id UNIQUE (provider_subscription_id),
    CONSTRAINT subscriptions_provider_session UNIQUE (provider_checkout_session_id)
);

CREATE TABLE credit_entries (
    id            TEXT PRIMARY KEY,
    customer_id   TEXT NOT NULL REFERENCES customers (id),
    amount        BIGINT NOT NULL CHECK (amount <> 0),
    kind          TEXT NOT NULL CHECK (kind IN ('grant', 'debit', 'clawback')),
    business_key  TEXT NOT NULL,
    reason        TEXT,
    created_at    BIGINT NOT NULL,
    CONSTRAINT credit_entries_business_key UNIQUE (business_key)
);
CREATE INDEX credit_entries_by_customer ON credit_entries (customer_id, created_at);
