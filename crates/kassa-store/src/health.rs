//! Readiness: the database answers and holds every migration this build knows.

use async_trait::async_trait;
use kassa_app::ports::{HealthStore, StoreResult};

use crate::db::{SqlStore, unavailable};

#[async_trait]
impl HealthStore for SqlStore {
    async fn ready(&self) -> StoreResult<bool> {
        let latest_known = self.migrator().iter().map(|m| m.version).max().unwrap_or(0);
        let mut unit = self.read().await?;
        let applied: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations")
            .fetch_one(&mut *unit)
            .await
            .map_err(unavailable)?;
        unit.commit().await?;
        Ok(applied == Some(latest_known))
    }
}
