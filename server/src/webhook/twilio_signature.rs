//! X-Twilio-Signature validation of Twilio webhooks.
