-- What a transfer group's sellers shared (the capture less lost disputes when the transfers
-- were planned), so later disputes and refunds are measured against the same base; when a
-- reversal was first sent (one never sent may be dropped when its refund fails); and when, by
-- Kassa's clock, a seller last became able to take charges (a refused transfer is asked for
-- again only after that). Kept equal with the other backend's file.
ALTER TABLE payments ADD COLUMN transfers_base INTEGER;
UPDATE payments SET transfers_base =
    (SELECT o.captured_amount - o.dispute_lost_amount FROM orders o WHERE o.id = payments.order_id)
    WHERE transfers_planned_at IS NOT NULL;
ALTER TABLE transfer_reversals ADD COLUMN sent_at INTEGER;
UPDATE transfer_reversals SET sent_at = updated_at WHERE provider_reversal_id IS NOT NULL;
ALTER TABLE sellers ADD COLUMN ready_since INTEGER;
UPDATE sellers SET ready_since = updated_at WHERE charges_enabled = 1;
