//! Vapi REST client (phone numbers, assistants).
