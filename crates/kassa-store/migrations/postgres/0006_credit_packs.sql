-- Credit packs: a variant may carry credits; a paid order of it grants credits × quantity once,
-- keyed by the order. The order line keeps the credits it was sold with, as it keeps its price.
-- Kept column-for-column equal with the other backend's file.
ALTER TABLE variants ADD COLUMN credits BIGINT NOT NULL DEFAULT 0 CHECK (credits >= 0);
ALTER TABLE order_lines ADD COLUMN credits BIGINT NOT NULL DEFAULT 0;
