//! Integration tests of the WhatsApp providers: the senders against in-test HTTP peers, and
//! hostile input against every parser.

mod hostile;
mod senders;
