//! `orders`: one row per agency.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "orders")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub display_name: String,
    pub brand: String,
    pub contact_name: String,
    pub contact_email: String,
    pub contact_phone: String,
    pub landline_number: Option<String>,
    pub carrier: String,
    pub vapi_assistant_id: Option<String>,
    pub default_agent_name: Option<String>,
    pub default_agent_whatsapp: Option<String>,
    /// JSON array of zones (see `store::orders::ZoneRecord`).
    #[sea_orm(column_type = "Text")]
    pub zones: String,
    pub status: String,
    pub revision: i64,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    pub cancelled_at: Option<DateTimeUtc>,
    pub whatsapp_sender_declared: bool,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
