-- Orders flagged for a person, and the way out (risk N1). Kept equal with the other backend's
-- file.
-- The code of the order's flag (needs_attention up to its first colon), beside it so /metrics
-- counts flagged orders by reason with one GROUP BY; NULL exactly when needs_attention is.
ALTER TABLE orders ADD COLUMN attention_reason TEXT;
UPDATE orders SET attention_reason = CASE WHEN instr(needs_attention, ':') > 0
        THEN trim(substr(needs_attention, 1, instr(needs_attention, ':') - 1))
        ELSE trim(needs_attention) END
    WHERE needs_attention IS NOT NULL;
CREATE INDEX orders_by_attention_reason ON orders (attention_reason);
-- How many times a person resolved the order's flag (POST /v1/orders/{id}/resolve): a flag
-- raised after that is announced again, and each resolution's refund has a key of its own.
ALTER TABLE orders ADD COLUMN attention_resolutions INTEGER NOT NULL DEFAULT 0;
-- A refund Kassa started that failed was put before a person (its order flagged
-- kassa_refund_failed), once: a resolved order is not flagged again for the same failure, and
-- one that failed while the order was flagged for something else is raised when that resolves.
ALTER TABLE refunds ADD COLUMN failure_flagged INTEGER NOT NULL DEFAULT 0;
UPDATE refunds SET failure_flagged = 1
    WHERE status = 'failed' AND client_scope = 'kassa'
      AND order_id IN (SELECT id FROM orders WHERE attention_reason = 'kassa_refund_failed');
