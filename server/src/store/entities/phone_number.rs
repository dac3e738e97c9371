//! `phone_numbers`: a managed number, its holder and its Vapi link.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "phone_numbers")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub number: String,
    pub order_id: Option<String>,
    pub twilio_sid: Option<String>,
    pub vapi_phone_number_id: Option<String>,
    pub link_state: String,
    #[sea_orm(column_type = "Text", nullable)]
    pub link_reason: Option<String>,
    pub answer_mode: String,
    pub link_attempts: i32,
    pub next_link_at: Option<DateTimeUtc>,
    pub linked_at: Option<DateTimeUtc>,
    pub assigned_at: Option<DateTimeUtc>,
    pub checked_at: Option<DateTimeUtc>,
    pub lease_owner: Option<String>,
    pub lease_until: Option<DateTimeUtc>,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
