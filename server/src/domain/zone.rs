//! The one zone matcher, shared by leads and WhatsApp routing.
