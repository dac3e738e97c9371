//! A counter bumped by every change that can move a call's routing (an order's
//! status or assistant, a number changing hands or being linked): processes
//! that answer assistant requests from memory reload when it moves.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum RoutingEpoch {
    Table,
    Id,
    Epoch,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(RoutingEpoch::Table)
                    .if_not_exists()
                    .col(integer(RoutingEpoch::Id).primary_key())
                    .col(big_integer(RoutingEpoch::Epoch))
                    .to_owned(),
            )
            .await?;
        manager
            .exec_stmt(
                Query::insert()
                    .into_table(RoutingEpoch::Table)
                    .columns([RoutingEpoch::Id, RoutingEpoch::Epoch])
                    .values_panic([1.into(), 0i64.into()])
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(RoutingEpoch::Table).to_owned())
            .await
    }
}
