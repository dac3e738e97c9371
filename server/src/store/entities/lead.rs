//! `leads`: a caller of an agency and what they want.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "leads")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub order_id: String,
    pub status: String,
    #[sea_orm(column_type = "Text", nullable)]
    pub name: Option<String>,
    pub phone: Option<String>,
    pub intent: Option<String>,
    #[sea_orm(column_type = "Text", nullable)]
    pub property_type: Option<String>,
    #[sea_orm(column_type = "Text", nullable)]
    pub zone: Option<String>,
    pub postcode: Option<String>,
    #[sea_orm(column_type = "Text", nullable)]
    pub address: Option<String>,
    #[sea_orm(column_type = "Text", nullable)]
    pub budget: Option<String>,
    #[sea_orm(column_type = "Text", nullable)]
    pub urgency: Option<String>,
    #[sea_orm(column_type = "Text", nullable)]
    pub recommendation: Option<String>,
    #[sea_orm(column_type = "Text", nullable)]
    pub notes: Option<String>,
    #[sea_orm(column_type = "Text", nullable)]
    pub assigned_agent: Option<String>,
    pub calls_count: i32,
    pub last_call_id: Option<String>,
    pub last_call_at: DateTimeUtc,
    pub revision: i64,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
