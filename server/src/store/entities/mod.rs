//! SeaORM entities, one file per table. Migrations own the schema; these
//! mirror it.

pub mod call;
pub mod lead;
pub mod notification;
pub mod notification_attempt;
pub mod number_assignment;
pub mod order;
pub mod phone_number;
pub mod whatsapp_window;
