//! `calls`: one row per Vapi call id.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "calls")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    #[sea_orm(unique)]
    pub vapi_call_id: String,
    pub order_id: Option<String>,
    #[sea_orm(column_type = "Text", nullable)]
    pub orphan_reason: Option<String>,
    pub phone_number: Option<String>,
    pub phone_number_id: Option<String>,
    pub assistant_id: Option<String>,
    pub caller_number: Option<String>,
    pub status: String,
    pub status_rank: i32,
    pub started_at: Option<DateTimeUtc>,
    pub ended_at: Option<DateTimeUtc>,
    pub duration_seconds: Option<f64>,
    #[sea_orm(column_type = "Text", nullable)]
    pub ended_reason: Option<String>,
    pub cost: Option<f64>,
    #[sea_orm(column_type = "Text", nullable)]
    pub summary: Option<String>,
    #[sea_orm(column_type = "Text", nullable)]
    pub transcript: Option<String>,
    #[sea_orm(column_type = "Text", nullable)]
    pub recording_url: Option<String>,
    #[sea_orm(column_type = "Text", nullable)]
    pub stereo_recording_url: Option<String>,
    #[sea_orm(column_type = "Text", nullable)]
    pub structured_data: Option<String>,
    #[sea_orm(column_type = "Text", nullable)]
    pub success_evaluation: Option<String>,
    pub report_received_at: Option<DateTimeUtc>,
    pub lead_id: Option<String>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
