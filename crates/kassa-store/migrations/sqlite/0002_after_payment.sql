-- After payment: refunds asked for through the API, captures and cancels in progress, disputes,
-- and where a change came from. Kept column-for-column equal with the other backend's file.

-- A refund asked for with an Idempotency-Key is found again by it; restock returns the order's
-- stock once the refund succeeded.
ALTER TABLE refunds ADD COLUMN client_scope TEXT;
ALTER TABLE refunds ADD COLUMN client_key TEXT;
ALTER TABLE refunds ADD COLUMN request_hash TEXT;
ALTER TABLE refunds ADD COLUMN restock INTEGER NOT NULL DEFAULT 0;
ALTER TABLE refunds ADD COLUMN failure_reason TEXT;
CREATE UNIQUE INDEX refunds_client_key ON refunds (client_scope, client_key);
CREATE INDEX refunds_unsent ON refunds (status, provider_refund_id);

-- An operation that must call the provider takes the order first with a compare-and-set on
-- this column ('capture' or 'cancel'), so an edit and a capture never both proceed (risk O3),
-- and a cancel that stopped half-way is visible and resumable (risk P5).
ALTER TABLE orders ADD COLUMN pending_operation TEXT;
-- What a capture in progress takes (at most the total); NULL: the total.
ALTER TABLE orders ADD COLUMN capture_amount INTEGER;
-- Manual capture: when the modification window closes and the capture falls due.
ALTER TABLE orders ADD COLUMN capture_due_at INTEGER;
-- Money a lost dispute took back: no longer refundable.
ALTER TABLE orders ADD COLUMN dispute_lost_amount INTEGER NOT NULL DEFAULT 0;
CREATE INDEX orders_capture_due ON orders (capture_due_at);
CREATE INDEX orders_pending_operation ON orders (pending_operation);

CREATE TABLE disputes (
    id               TEXT PRIMARY KEY,
    order_id         TEXT NOT NULL REFERENCES orders (id),
    amount           INTEGER NOT NULL CHECK (amount >= 0),
    currency         TEXT NOT NULL,
    reason           TEXT,
    status           TEXT NOT NULL,
    evidence_due_by  INTEGER,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
);
CREATE INDEX disputes_by_order ON disputes (order_id);

ALTER TABLE audit_log ADD COLUMN client_ip TEXT;
