-- Kassa schema, PostgreSQL flavour. Kept column-for-column equal to ../sqlite/0001_schema.sql:
-- the same SQL runs against both. Every *_at column is Unix seconds; every amount is BIGINT
-- minor units with a lowercase ISO 4217 currency beside it. Integers are BIGINT everywhere so
-- one decoder (i64) reads both backends; flags are 0/1 BIGINTs for the same reason.

CREATE TABLE products (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);

-- Variants are never deleted while referenced (foreign keys below); `active = 0` retires one.
CREATE TABLE variants (
    sku          TEXT PRIMARY KEY,
    product_id   TEXT NOT NULL REFERENCES products (id),
    unit_amount  BIGINT NOT NULL CHECK (unit_amount >= 0),
    currency     TEXT NOT NULL,
    attributes   TEXT NOT NULL DEFAULT '{}',
    active       BIGINT NOT NULL DEFAULT 1 CHECK (active IN (0, 1)),
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
);

-- on_hand = available + reserved + committed; the CHECKs make overselling impossible even if
-- a caller forgets a conditional update.
CREATE TABLE inventory_levels (
    sku         TEXT NOT NULL REFERENCES variants (sku),
    location    TEXT NOT NULL,
    on_hand     BIGINT NOT NULL CHECK (on_hand >= 0),
    reserved    BIGINT NOT NULL DEFAULT 0 CHECK (reserved >= 0),
    committed   BIGINT NOT NULL DEFAULT 0 CHECK (committed >= 0),
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (sku, location),
    CONSTRAINT inventory_not_oversold CHECK (reserved + committed <= on_hand)
);

CREATE TABLE carts (
    id          TEXT PRIMARY KEY,
    currency    TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);

-- One line per SKU per cart: a line is a variant, so changing one line never touches another
-- line of the same product (risk U1).
CREATE TABLE cart_lines (
    id          TEXT PRIMARY KEY,
    cart_id     TEXT NOT NULL REFERENCES carts (id),
    sku         TEXT NOT NULL REFERENCES variants (sku),
    quantity    BIGINT NOT NULL CHECK (quantity > 0 AND quantity <= 1000),
    position    BIGINT NOT NULL,
    created_at  BIGINT NOT NULL,
    CONSTRAINT cart_lines_one_per_sku UNIQUE (cart_id, sku)
);
CREATE INDEX cart_lines_by_cart ON cart_lines (cart_id);

-- The total is frozen at checkout. UNIQUE (cart_id): one cart yields at most one order.
CREATE TABLE orders (
    id                     TEXT PRIMARY KEY,
    cart_id                TEXT NOT NULL REFERENCES carts (id),
    status                 TEXT NOT NULL,
    currency               TEXT NOT NULL,
    subtotal               BIGINT NOT NULL CHECK (subtotal >= 0),
    total                  BIGINT NOT NULL CHECK (total >= 0),
    captured_amount        BIGINT NOT NULL DEFAULT 0 CHECK (captured_amount >= 0),
    refunded_amount        BIGINT NOT NULL DEFAULT 0 CHECK (refunded_amount >= 0),
    capture_method         TEXT NOT NULL,
    email                  TEXT NOT NULL,
    shipping_name          TEXT NOT NULL,
    shipping_line1         TEXT NOT NULL,
    shipping_city          TEXT NOT NULL,
    shipping_postal_code   TEXT NOT NULL,
    shipping_country       TEXT NOT NULL,
    needs_attention        TEXT,
    status_before_dispute  TEXT,
    version                BIGINT NOT NULL DEFAULT 0,
    created_at             BIGINT NOT NULL,
    updated_at             BIGINT NOT NULL,
    CONSTRAINT orders_one_per_cart UNIQUE (cart_id),
    CONSTRAINT orders_refund_within_capture CHECK (refunded_amount <= captured_amount),
    CONSTRAINT orders_capture_within_total CHECK (captured_amount <= total)
);
CREATE INDEX orders_by_status ON orders (status, updated_at);

-- Price snapshot: later catalog changes never reach a placed order (risk P8).
CREATE TABLE order_lines (
    order_id      TEXT NOT NULL REFERENCES orders (id),
    line_no       BIGINT NOT NULL,
    sku           TEXT NOT NULL REFERENCES variants (sku),
    product_name  TEXT NOT NULL,
    quantity      BIGINT NOT NULL CHECK (quantity > 0),
    unit_amount   BIGINT NOT NULL CHECK (unit_amount >= 0),
    amount        BIGINT NOT NULL CHECK (amount >= 0),
    PRIMARY KEY (order_id, line_no)
);

CREATE TABLE reservations (
    id          TEXT PRIMARY KEY,
    order_id    TEXT NOT NULL REFERENCES orders (id),
    sku         TEXT NOT NULL,
    location    TEXT NOT NULL,
    quantity    BIGINT NOT NULL CHECK (quantity > 0),
    status      TEXT NOT NULL,
    expires_at  BIGINT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    FOREIGN KEY (sku, location) REFERENCES inventory_levels (sku, location),
    CONSTRAINT reservations_one_per_order_sku_location UNIQUE (order_id, sku, location)
);
CREATE INDEX reservations_by_status_expiry ON reservations (status, expires_at);

-- A payment attempt. The row (with its deterministic provider idempotency key) is committed
-- before the PaymentIntent is created (risk P1); at most one live attempt per order.
CREATE TABLE payments (
    id                          TEXT PRIMARY KEY,
    order_id                    TEXT NOT NULL REFERENCES orders (id),
    attempt                     BIGINT NOT NULL,
    status                      TEXT NOT NULL,
    amount                      BIGINT NOT NULL CHECK (amount >= 0),
    currency                    TEXT NOT NULL,
    capture_method              TEXT NOT NULL,
    provider_idempotency_key    TEXT NOT NULL,
    provider_payment_intent_id  TEXT,
    client_secret               TEXT,
    amount_capturable           BIGINT NOT NULL DEFAULT 0,
    amount_received             BIGINT NOT NULL DEFAULT 0,
    last_error                  TEXT,
    version                     BIGINT NOT NULL DEFAULT 0,
    created_at                  BIGINT NOT NULL,
    updated_at                  BIGINT NOT NULL,
    CONSTRAINT payments_attempt_per_order UNIQUE (order_id, attempt),
    CONSTRAINT payments_provider_key UNIQUE (provider_idempotency_key),
    CONSTRAINT payments_provider_intent UNIQUE (provider_payment_intent_id)
);
CREATE UNIQUE INDEX payments_one_live_per_order ON payments (order_id)
    WHERE status NOT IN ('canceled', 'failed');
CREATE INDEX payments_by_status ON payments (status, updated_at);

CREATE TABLE refunds (
    id                        TEXT PRIMARY KEY,
    order_id                  TEXT NOT NULL REFERENCES orders (id),
    payment_id                TEXT NOT NULL REFERENCES payments (id),
    amount                    BIGINT NOT NULL CHECK (amount > 0),
    currency                  TEXT NOT NULL,
    status                    TEXT NOT NULL,
    reason                    TEXT,
    provider_idempotency_key  TEXT NOT NULL,
    provider_refund_id        TEXT,
    created_at                BIGINT NOT NULL,
    updated_at                BIGINT NOT NULL,
    CONSTRAINT refunds_provider_key UNIQUE (provider_idempotency_key),
    CONSTRAINT refunds_provider_refund UNIQUE (provider_refund_id)
);

-- Client idempotency keys with Stripe-style recovery points. `scope` is the API key's
-- fingerprint, so two merchants' keys never collide.
CREATE TABLE idempotency_keys (
    scope            TEXT NOT NULL,
    idempotency_key  TEXT NOT NULL,
    request_method   TEXT NOT NULL,
    request_path     TEXT NOT NULL,
    request_hash     TEXT NOT NULL,
    recovery_point   TEXT NOT NULL,
    locked_until     BIGINT,
    order_id         TEXT,
    response_status  BIGINT,
    response_body    TEXT,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    PRIMARY KEY (scope, idempotency_key)
);
CREATE INDEX idempotency_keys_unfinished ON idempotency_keys (recovery_point, updated_at);

-- Inbox of provider events. The primary key is the provider's event id, so a duplicate
-- delivery can never be recorded twice; effects commit with the `processed` mark.
CREATE TABLE webhook_events (
    id               TEXT PRIMARY KEY,
    event_type       TEXT NOT NULL,
    payload          TEXT NOT NULL,
    status           TEXT NOT NULL,
    attempts         BIGINT NOT NULL DEFAULT 0,
    next_attempt_at  BIGINT NOT NULL,
    locked_until     BIGINT,
    last_error       TEXT,
    received_at      BIGINT NOT NULL,
    processed_at     BIGINT
);
CREATE INDEX webhook_events_due ON webhook_events (status, next_attempt_at);

-- Transactional outbox. `business_key` (e.g. "order.paid:ord_…") makes each notification
-- exist at most once however many events or retries lead to it.
CREATE TABLE outbox (
    id               TEXT PRIMARY KEY,
    topic            TEXT NOT NULL,
    business_key     TEXT NOT NULL,
    payload          TEXT NOT NULL,
    status           TEXT NOT NULL,
    attempts         BIGINT NOT NULL DEFAULT 0,
    next_attempt_at  BIGINT NOT NULL,
    last_error       TEXT,
    created_at       BIGINT NOT NULL,
    delivered_at     BIGINT,
    CONSTRAINT outbox_one_per_business_key UNIQUE (business_key)
);
CREATE INDEX outbox_due ON outbox (status, next_attempt_at);

-- Append-only audit trail: who, when, which request, before and after (risk A1).
CREATE TABLE audit_log (
    seq          BIGSERIAL PRIMARY KEY,
    entity_type  TEXT NOT NULL,
    entity_id    TEXT NOT NULL,
    action       TEXT NOT NULL,
    actor        TEXT NOT NULL,
    request_id   TEXT,
    before_state TEXT,
    after_state  TEXT,
    detail       TEXT,
    created_at   BIGINT NOT NULL
);
CREATE INDEX audit_log_by_entity ON audit_log (entity_type, entity_id, seq);
