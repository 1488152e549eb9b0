//! Built-in services on subdomains of the server's domain (the product's spec
//! §2.2), reached through the address table like any other domain: group chat
//! (XEP-0045) and the user directory (XEP-0055); and PEP (XEP-0163) and the
//! message archive (XEP-0313), the services every account's bare JID offers.

pub mod directory;
pub mod extdisco;
pub mod mam;
pub mod muc;
pub mod pep;
pub mod proxy65;
pub mod upload;
