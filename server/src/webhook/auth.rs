//! Authentication of Vapi webhooks.
