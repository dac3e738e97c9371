//! Twilio REST client (IncomingPhoneNumbers).
