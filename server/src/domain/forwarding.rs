//! Italian call-forwarding codes for an agency's landline.
