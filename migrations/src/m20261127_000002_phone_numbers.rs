//! Phone numbers: one row per number Centralino has ever managed, with its
//! current holder and its Vapi link, and the history of who held it when.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Orders {
    Table,
    WhatsappSenderDeclared,
}

#[derive(DeriveIden)]
enum PhoneNumbers {
    Table,
    Number,
    OrderId,
    TwilioSid,
    VapiPhoneNumberId,
    LinkState,
    LinkReason,
    AnswerMode,
    LinkAttempts,
    NextLinkAt,
    LinkedAt,
    AssignedAt,
    CheckedAt,
    LeaseOwner,
    LeaseUntil,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum NumberAssignments {
    Table,
    Id,
    Number,
    OrderId,
    AssignedAt,
    ReleasedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Orders::Table)
                    .add_column(boolean(Orders::WhatsappSenderDeclared).default(false))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(PhoneNumbers::Table)
                    .if_not_exists()
                    .col(string_len(PhoneNumbers::Number, 20).primary_key())
                    .col(string_len_null(PhoneNumbers::OrderId, 36))
                    .col(string_null(PhoneNumbers::TwilioSid))
                    .col(string_null(PhoneNumbers::VapiPhoneNumberId))
                    .col(string_len(PhoneNumbers::LinkState, 16))
                    .col(text_null(PhoneNumbers::LinkReason))
                    .col(string_len(PhoneNumbers::AnswerMode, 24))
                    .col(integer(PhoneNumbers::LinkAttempts))
                    .col(timestamp_with_time_zone_null(PhoneNumbers::NextLinkAt))
                    .col(timestamp_with_time_zone_null(PhoneNumbers::LinkedAt))
                    .col(timestamp_with_time_zone_null(PhoneNumbers::AssignedAt))
                    .col(timestamp_with_time_zone_null(PhoneNumbers::CheckedAt))
                    .col(string_null(PhoneNumbers::LeaseOwner))
                    .col(timestamp_with_time_zone_null(PhoneNumbers::LeaseUntil))
                    .col(timestamp_with_time_zone(PhoneNumbers::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        // One order holds at most one number; NULLs (free numbers) repeat freely.
        manager
            .create_index(
                Index::create()
                    .name("phone_numbers_order_id_unique")
                    .table(PhoneNumbers::Table)
                    .col(PhoneNumbers::OrderId)
                    .unique()
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("phone_numbers_link_due")
                    .table(PhoneNumbers::Table)
                    .col(PhoneNumbers::LinkState)
                    .col(PhoneNumbers::NextLinkAt)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(NumberAssignments::Table)
                    .if_not_exists()
                    .col(
                        big_integer(NumberAssignments::Id)
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(string_len(NumberAssignments::Number, 20))
                    .col(string_len(NumberAssignments::OrderId, 36))
                    .col(timestamp_with_time_zone(NumberAssignments::AssignedAt))
                    .col(timestamp_with_time_zone_null(NumberAssignments::ReleasedAt))
                    .to_owned(),
            )
            .await?;
        // "Who held this number when the call started?" walks this index.
        manager
            .create_index(
                Index::create()
                    .name("number_assignments_number_assigned_at")
                    .table(NumberAssignments::Table)
                    .col(NumberAssignments::Number)
                    .col(NumberAssignments::AssignedAt)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("number_assignments_order_id")
                    .table(NumberAssignments::Table)
                    .col(NumberAssignments::OrderId)
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(NumberAssignments::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(PhoneNumbers::Table).to_owned())
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Orders::Table)
                    .drop_column(Orders::WhatsappSenderDeclared)
                    .to_owned(),
            )
            .await
    }
}
