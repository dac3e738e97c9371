//! Orders: one row per agency. Zones are stored as a JSON array because they
//! are always read and written together with the order (and its etag).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Orders {
    Table,
    Id,
    DisplayName,
    Brand,
    ContactName,
    ContactEmail,
    ContactPhone,
    LandlineNumber,
    Carrier,
    VapiAssistantId,
    DefaultAgentName,
    DefaultAgentWhatsapp,
    Zones,
    Status,
    Revision,
    CreatedAt,
    UpdatedAt,
    CancelledAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Orders::Table)
                    .if_not_exists()
                    .col(string_len(Orders::Id, 36).primary_key())
                    .col(string(Orders::DisplayName))
                    .col(string(Orders::Brand))
                    .col(string(Orders::ContactName))
                    .col(string(Orders::ContactEmail))
                    .col(string(Orders::ContactPhone))
                    .col(string_null(Orders::LandlineNumber))
                    .col(string_len(Orders::Carrier, 16))
                    .col(string_null(Orders::VapiAssistantId))
                    .col(string_null(Orders::DefaultAgentName))
                    .col(string_null(Orders::DefaultAgentWhatsapp))
                    .col(text(Orders::Zones))
                    .col(string_len(Orders::Status, 16))
                    .col(big_integer(Orders::Revision))
                    .col(timestamp_with_time_zone(Orders::CreatedAt))
                    .col(timestamp_with_time_zone(Orders::UpdatedAt))
                    .col(timestamp_with_time_zone_null(Orders::CancelledAt))
                    .to_owned(),
            )
            .await?;
        // Keyset pages filtered by status or brand walk these in id order.
        manager
            .create_index(
                Index::create()
                    .name("orders_status_id")
                    .table(Orders::Table)
                    .col(Orders::Status)
                    .col(Orders::Id)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("orders_brand_id")
                    .table(Orders::Table)
                    .col(Orders::Brand)
                    .col(Orders::Id)
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Orders::Table).to_owned())
            .await
    }
}
