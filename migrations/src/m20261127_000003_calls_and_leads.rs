//! Calls (one row per Vapi call id) and the leads they yield.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Calls {
    Table,
    Id,
    VapiCallId,
    OrderId,
    OrphanReason,
    PhoneNumber,
    PhoneNumberId,
    AssistantId,
    CallerNumber,
    Status,
    StatusRank,
    StartedAt,
    EndedAt,
    DurationSeconds,
    EndedReason,
    Cost,
    Summary,
    Transcript,
    RecordingUrl,
    StereoRecordingUrl,
    StructuredData,
    SuccessEvaluation,
    ReportReceivedAt,
    LeadId,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Leads {
    Table,
    Id,
    OrderId,
    Status,
    Name,
    Phone,
    Intent,
    PropertyType,
    Zone,
    Postcode,
    Address,
    Budget,
    Urgency,
    Recommendation,
    Notes,
    AssignedAgent,
    CallsCount,
    LastCallId,
    LastCallAt,
    Revision,
    CreatedAt,
    UpdatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Calls::Table)
                    .if_not_exists()
                    .col(string_len(Calls::Id, 36).primary_key())
                    // The idempotency key of every Vapi message about a call.
                    .col(string_len_uniq(Calls::VapiCallId, 64))
                    .col(string_len_null(Calls::OrderId, 36))
                    .col(text_null(Calls::OrphanReason))
                    .col(string_len_null(Calls::PhoneNumber, 20))
                    .col(string_null(Calls::PhoneNumberId))
                    .col(string_null(Calls::AssistantId))
                    .col(string_len_null(Calls::CallerNumber, 20))
                    .col(string_len(Calls::Status, 16))
                    .col(integer(Calls::StatusRank))
                    .col(timestamp_with_time_zone_null(Calls::StartedAt))
                    .col(timestamp_with_time_zone_null(Calls::EndedAt))
                    .col(double_null(Calls::DurationSeconds))
                    .col(text_null(Calls::EndedReason))
                    .col(double_null(Calls::Cost))
                    .col(text_null(Calls::Summary))
                    .col(text_null(Calls::Transcript))
                    .col(text_null(Calls::RecordingUrl))
                    .col(text_null(Calls::StereoRecordingUrl))
                    .col(text_null(Calls::StructuredData))
                    .col(text_null(Calls::SuccessEvaluation))
                    .col(timestamp_with_time_zone_null(Calls::ReportReceivedAt))
                    .col(string_len_null(Calls::LeadId, 36))
                    .col(timestamp_with_time_zone(Calls::CreatedAt))
                    .col(timestamp_with_time_zone(Calls::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        // Newest-first pages of one order's calls walk this index.
        manager
            .create_index(
                Index::create()
                    .name("calls_order_created")
                    .table(Calls::Table)
                    .col(Calls::OrderId)
                    .col(Calls::CreatedAt)
                    .col(Calls::Id)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Leads::Table)
                    .if_not_exists()
                    .col(string_len(Leads::Id, 36).primary_key())
                    .col(string_len(Leads::OrderId, 36))
                    .col(string_len(Leads::Status, 16))
                    .col(text_null(Leads::Name))
                    .col(string_len_null(Leads::Phone, 20))
                    .col(string_len_null(Leads::Intent, 16))
                    .col(text_null(Leads::PropertyType))
                    .col(text_null(Leads::Zone))
                    .col(string_len_null(Leads::Postcode, 5))
                    .col(text_null(Leads::Address))
                    .col(text_null(Leads::Budget))
                    .col(text_null(Leads::Urgency))
                    .col(text_null(Leads::Recommendation))
                    .col(text_null(Leads::Notes))
                    .col(text_null(Leads::AssignedAgent))
                    .col(integer(Leads::CallsCount))
                    .col(string_len_null(Leads::LastCallId, 36))
                    .col(timestamp_with_time_zone(Leads::LastCallAt))
                    .col(big_integer(Leads::Revision))
                    .col(timestamp_with_time_zone(Leads::CreatedAt))
                    .col(timestamp_with_time_zone(Leads::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        // "Did this caller call this agency in the last 30 days?"
        manager
            .create_index(
                Index::create()
                    .name("leads_order_phone_last_call")
                    .table(Leads::Table)
                    .col(Leads::OrderId)
                    .col(Leads::Phone)
                    .col(Leads::LastCallAt)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("leads_order_last_call")
                    .table(Leads::Table)
                    .col(Leads::OrderId)
                    .col(Leads::LastCallAt)
                    .col(Leads::Id)
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Leads::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Calls::Table).to_owned())
            .await
    }
}
