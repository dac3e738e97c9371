//! SeaORM entities, one file per table. Migrations own the schema; these
//! mirror it.

pub mod call;
pub mod lead;
pub mod number_assignment;
pub mod order;
pub mod phone_number;
