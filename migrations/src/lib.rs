//! Schema migrations for Centralino, run on SQLite and PostgreSQL alike.
//!
//! Migrations are append-only once landed: fix a mistake with a new migration,
//! never by editing one that has shipped.

pub use sea_orm_migration::prelude::*;

mod m20261127_000001_create_orders;
mod m20261127_000002_phone_numbers;
mod m20261127_000003_calls_and_leads;
mod m20261127_000004_notifications;
mod m20261127_000005_routing_epoch;
mod m20261127_000006_paging_indexes;

/// Every migration, oldest first.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261127_000001_create_orders::Migration),
            Box::new(m20261127_000002_phone_numbers::Migration),
            Box::new(m20261127_000003_calls_and_leads::Migration),
            Box::new(m20261127_000004_notifications::Migration),
            Box::new(m20261127_000005_routing_epoch::Migration),
            Box::new(m20261127_000006_paging_indexes::Migration),
        ]
    }
}
