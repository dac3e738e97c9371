//! Vapi server messages, parsed from raw bytes.
