-- Credits a pack order's refunds should have taken back but the customer had already spent
-- (recorded, so the clawbacks and this add up to the refunded share; invariant 8). Kept equal
-- with the other backend's file.
ALTER TABLE orders ADD COLUMN credits_unrecovered INTEGER NOT NULL DEFAULT 0;
-- Why a paid transfer group's seller transfers wait for a person instead of being planned: the
-- order's flag (needs_attention) or an open dispute, recorded when the payout worker's planner
-- held them (so the invariant check knows they were not forgotten); NULL once they are planned.
ALTER TABLE payments ADD COLUMN transfers_held TEXT;
