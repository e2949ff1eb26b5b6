-- When a transfer group's transfers were planned (its own marker, rather than the platform's
-- keep being set), and each provider transfer or reversal recorded for one job only.
-- Kept equal with the other backend's file.
ALTER TABLE payments ADD COLUMN transfers_planned_at INTEGER;
UPDATE payments SET transfers_planned_at = updated_at
    WHERE transfer_group IS NOT NULL AND application_fee IS NOT NULL;
CREATE UNIQUE INDEX seller_transfers_provider_id ON seller_transfers (provider_transfer_id);
CREATE UNIQUE INDEX transfer_reversals_provider_id ON transfer_reversals (provider_reversal_id);
