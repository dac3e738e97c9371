//! Leads extracted from a call report.
