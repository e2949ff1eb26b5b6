-- Reconciliation: how far through the provider's event list Kassa has read. Kept
-- column-for-column equal with the other backend's file.
CREATE TABLE cursors (
    name        TEXT PRIMARY KEY,
    value       BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
