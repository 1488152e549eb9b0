pub mod config;
pub mod jid;
pub mod logger;
pub mod net;
pub mod server;
pub mod session_pool;
pub mod stream;
pub mod xml;
