//! The Italian WhatsApp summary of a call, for the agent.
