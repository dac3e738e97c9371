//! WhatsApp notifications: the outbox, each send attempt, and the agents'
//! 24-hour windows.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Notifications {
    Table,
    Id,
    OrderId,
    CallId,
    Kind,
    Status,
    ReasonCode,
    Reason,
    FromAddress,
    ToAddress,
    Route,
    Zone,
    Body,
    TemplateVariables,
    Attempts,
    NextAttemptAt,
    AgeFrom,
    LeaseOwner,
    LeaseUntil,
    MessageSid,
    ErrorCode,
    CreatedAt,
    UpdatedAt,
    SentAt,
    DeliveredAt,
}

#[derive(DeriveIden)]
enum NotificationAttempts {
    Table,
    Id,
    NotificationId,
    Number,
    Trigger,
    Mode,
    Status,
    StatusRank,
    MessageSid,
    ErrorCode,
    ErrorMessage,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum WhatsappWindows {
    Table,
    Sender,
    Agent,
    LastInboundAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Notifications::Table)
                    .if_not_exists()
                    .col(string_len(Notifications::Id, 36).primary_key())
                    .col(string_len(Notifications::OrderId, 36))
                    .col(string_len_null(Notifications::CallId, 36))
                    .col(string_len(Notifications::Kind, 16))
                    .col(string_len(Notifications::Status, 16))
                    .col(string_len_null(Notifications::ReasonCode, 32))
                    .col(text_null(Notifications::Reason))
                    .col(string_len_null(Notifications::FromAddress, 32))
                    .col(string_len_null(Notifications::ToAddress, 32))
                    .col(string_len(Notifications::Route, 16))
                    .col(text_null(Notifications::Zone))
                    .col(text(Notifications::Body))
                    .col(text(Notifications::TemplateVariables))
                    .col(integer(Notifications::Attempts))
                    .col(timestamp_with_time_zone(Notifications::NextAttemptAt))
                    // Retries stop this long after it: the enqueue, or an admin's retry.
                    .col(timestamp_with_time_zone(Notifications::AgeFrom))
                    .col(string_len_null(Notifications::LeaseOwner, 64))
                    .col(timestamp_with_time_zone_null(Notifications::LeaseUntil))
                    .col(string_len_null(Notifications::MessageSid, 34))
                    .col(big_integer_null(Notifications::ErrorCode))
                    .col(timestamp_with_time_zone(Notifications::CreatedAt))
                    .col(timestamp_with_time_zone(Notifications::UpdatedAt))
                    .col(timestamp_with_time_zone_null(Notifications::SentAt))
                    .col(timestamp_with_time_zone_null(Notifications::DeliveredAt))
                    .to_owned(),
            )
            .await?;
        // One summary per call, whatever races: the database says no to a second.
        manager
            .create_index(
                Index::create()
                    .name("notifications_call_unique")
                    .table(Notifications::Table)
                    .col(Notifications::CallId)
                    .unique()
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        // The dispatcher's claim: due rows of one status, oldest first.
        manager
            .create_index(
                Index::create()
                    .name("notifications_status_due")
                    .table(Notifications::Table)
                    .col(Notifications::Status)
                    .col(Notifications::NextAttemptAt)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("notifications_order_created")
                    .table(Notifications::Table)
                    .col(Notifications::OrderId)
                    .col(Notifications::CreatedAt)
                    .col(Notifications::Id)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(NotificationAttempts::Table)
                    .if_not_exists()
                    .col(string_len(NotificationAttempts::Id, 36).primary_key())
                    .col(string_len(NotificationAttempts::NotificationId, 36))
                    .col(integer(NotificationAttempts::Number))
                    .col(string_len(NotificationAttempts::Trigger, 16))
                    .col(string_len(NotificationAttempts::Mode, 16))
                    .col(string_len(NotificationAttempts::Status, 16))
                    .col(integer(NotificationAttempts::StatusRank))
                    .col(string_len_null(NotificationAttempts::MessageSid, 34))
                    .col(big_integer_null(NotificationAttempts::ErrorCode))
                    .col(text_null(NotificationAttempts::ErrorMessage))
                    .col(timestamp_with_time_zone(NotificationAttempts::CreatedAt))
                    .col(timestamp_with_time_zone(NotificationAttempts::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("notification_attempts_number")
                    .table(NotificationAttempts::Table)
                    .col(NotificationAttempts::NotificationId)
                    .col(NotificationAttempts::Number)
                    .unique()
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        // Status callbacks find their attempt by Twilio's message SID.
        manager
            .create_index(
                Index::create()
                    .name("notification_attempts_sid")
                    .table(NotificationAttempts::Table)
                    .col(NotificationAttempts::MessageSid)
                    .unique()
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(WhatsappWindows::Table)
                    .if_not_exists()
                    .col(string_len(WhatsappWindows::Sender, 20))
                    .col(string_len(WhatsappWindows::Agent, 20))
                    .col(timestamp_with_time_zone(WhatsappWindows::LastInboundAt))
                    .primary_key(
                        Index::create()
                            .col(WhatsappWindows::Sender)
                            .col(WhatsappWindows::Agent),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            WhatsappWindows::Table.into_iden(),
            NotificationAttempts::Table.into_iden(),
            Notifications::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
