//! SeaORM entities, one file per table. Migrations own the schema; these
//! mirror it.

pub mod order;
