//! Configuration: built-in defaults, a TOML file, command-line overrides, and
//! validation that names every problem with its key and the fix. Only this module
//! parses TOML. Every limit the server enforces is a key here (README's table).

use crate::jid::{BareJid, Domain};
use crate::xml::Limits;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One problem with the configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The key (or flag, or `file`) the problem is about.
    pub key: String,
    pub message: String,
    pub fix: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}\n  fix: {}", self.key, self.message, self.fix)
    }
}

/// Who may create group-chat rooms (`muc_room_creation`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoomCreation {
    /// The hub's own accounts.
    Local,
    /// Only the accounts named in `admins`.
    Admins,
    /// Anyone, remote users too.
    Anyone,
}

/// The group-chat service's settings (XEP-0045).
#[derive(Clone, Debug)]
pub struct MucConfig {
    pub domain: Domain,
    pub creation: RoomCreation,
    /// The hub's `admins`: they may create rooms under `"admins"`, and own every room.
    pub admins: std::sync::Arc<[BareJid]>,
    pub max_rooms: usize,
    /// Rooms one account may have created and still own.
    pub max_rooms_per_user: usize,
    pub max_occupants: usize,
    /// Messages kept per room for joiners (in memory).
    pub history: usize,
    /// The message archive is on (`archive`): rooms archive unless configured not to.
    pub archive: bool,
}

/// The user directory's settings (XEP-0055).
#[derive(Clone, Debug)]
pub struct DirectoryConfig {
    pub domain: Domain,
    /// Remote users may search too.
    pub remote: bool,
    pub max_results: usize,
}

/// The HTTPS listener's settings (upload, WebSocket, pages, static files).
#[derive(Clone, Debug)]
pub struct HttpConfig {
    /// HTTPS listeners (TLS with the hub's certificate); empty: none.
    pub listen: Vec<SocketAddr>,
    pub listen_is_default: bool,
    /// Plain-HTTP listeners, for use behind a reverse proxy that terminates TLS.
    pub plain_listen: Vec<SocketAddr>,
    /// Where clients reach the listener (`https://host:port`); `None`: the
    /// domain and the first HTTPS listener's port.
    pub url: Option<String>,
    pub limits: crate::http::request::Limits,
    pub max_requests_per_connection: usize,
    /// A request head must arrive within this time.
    pub header_timeout: Duration,
    /// Between requests on a kept connection.
    pub idle_timeout: Duration,
    /// The longest a request body may stall (no byte of it arriving).
    pub body_timeout: Duration,
    /// HTTP connections past their first request head, at once (their share of the pool).
    pub max_connections: usize,
    /// A directory of static files served at the paths nothing else takes.
    pub files_dir: Option<PathBuf>,
    /// Web origins whose pages may open XMPP over WebSocket; empty: the hub's
    /// own (`http_url`); `*`: any.
    pub websocket_origins: Vec<String>,
}

/// The validated configuration of a running server.
#[derive(Clone, Debug)]
pub struct Config {
    pub domain: Domain,
    /// The hub's administrators (accounts): they own every group-chat room.
    pub admins: Vec<BareJid>,
    pub data_dir: PathBuf,
    pub log_level: log::LevelFilter,
    /// Client listeners (RFC 6120 §3: port 5222).
    pub c2s_listen: Vec<SocketAddr>,
    /// The listeners are the built-in defaults (an unavailable address family is then
    /// skipped with a warning instead of failing the start).
    pub c2s_listen_is_default: bool,
    /// Capacity of the session pool: connections served at once.
    pub max_sessions: usize,
    /// Bytes of connection buffers (input and parsed tables) in all.
    pub max_buffer_memory: usize,
    /// Of those, unauthenticated connections (the oldest gives way to a new one).
    pub max_unauthenticated: usize,
    /// Unauthenticated connections from one address (IPv6: one /64).
    pub max_unauthenticated_per_ip: usize,
    /// Authenticated inbound server streams.
    pub max_s2s_in: usize,
    /// Framer limits: `max_stanza_size`, `max_xml_depth`, `max_xml_attributes`,
    /// `max_xml_namespaces`.
    pub xml: Limits,
    /// Bytes of one element before the peer authenticated (c2s before SASL, s2s
    /// before a domain is authenticated, components before the handshake).
    pub max_preauth_stanza_size: usize,
    /// No complete stream header within this time → `connection-timeout`.
    pub c2s_header_timeout: Duration,
    /// Not authenticated within this time → `connection-timeout`.
    pub c2s_auth_timeout: Duration,
    /// Nothing received for this time → `connection-timeout`.
    pub c2s_idle_timeout: Duration,
    /// How long a session whose connection dropped waits to be resumed (XEP-0198).
    pub sm_resume_timeout: Duration,
    /// Unacknowledged stanzas this old make the server ask for an ack (XEP-0198 §4).
    pub sm_ack_request_delay: Duration,
    /// How long a FAST token (XEP-0484) is valid.
    pub fast_token_lifetime: Duration,
    /// Clients per account holding FAST tokens.
    pub fast_clients_per_account: usize,
    /// A bound client silent this long gets a keepalive ping (XEP-0199).
    pub c2s_ping_interval: Duration,
    /// No data this long after a keepalive ping → `connection-timeout`.
    pub c2s_ping_timeout: Duration,
    /// Bytes per second one client / one inbound server stream may send (a token
    /// bucket with a burst of one maximal stanza); `None` = no limit.
    pub c2s_read_rate: Option<u32>,
    pub s2s_read_rate: Option<u32>,
    /// A write that makes no progress for this time closes the connection.
    pub write_timeout: Duration,
    /// On SIGTERM/SIGINT, streams get this long to close before the process exits.
    pub shutdown_timeout: Duration,
    /// Direct TLS client listeners (XEP-0368: port 5223, ALPN `xmpp-client`).
    pub c2s_direct_tls_listen: Vec<SocketAddr>,
    pub c2s_direct_tls_listen_is_default: bool,
    /// STARTTLS is required before SASL and stanzas (RFC 6120 §5.3.1).
    pub c2s_require_encryption: bool,
    /// Offer SASL PLAIN (only ever inside TLS).
    pub c2s_sasl_plain: bool,
    /// Failed SASL attempts allowed on one stream before `policy-violation`.
    pub c2s_max_auth_attempts: u32,
    /// Failed logins per source IP per minute before `temporary-auth-failure`.
    pub auth_failures_per_ip: u32,
    /// Failed logins per account per minute before new addresses are refused (S12).
    pub auth_failures_per_account: u32,
    /// Sessions (bound resources) one account may have at once.
    pub max_resources_per_account: usize,
    /// What a bind to a resource already in use does (RFC 6120 §7.7.2.2).
    pub resource_conflict: ResourceConflict,
    /// The group-chat service (XEP-0045), `None` when turned off.
    pub muc: Option<MucConfig>,
    /// The user directory, unless `directory_domain = ""`.
    pub directory: Option<DirectoryConfig>,
    /// The HTTPS listener.
    pub http: HttpConfig,
    /// The SOCKS5 bytestreams proxy (XEP-0065), when `proxy65_listen` is set.
    pub proxy65: Option<crate::services::proxy65::Proxy65Config>,
    /// STUN and TURN servers announced to clients (XEP-0215).
    pub external_services: crate::services::extdisco::ExternalServices,
    /// HTTP file upload (XEP-0363), unless `upload_domain = ""` or no HTTP listener.
    pub upload: Option<crate::services::upload::UploadConfig>,
    /// Bytes waiting to be written to one session before it is closed.
    pub c2s_queue_size: usize,
    /// Items one roster may hold (RFC 6121 §2).
    pub max_roster_items: usize,
    /// Offline messages kept per account, and in all (XEP-0160).
    pub max_offline_per_account: usize,
    pub max_offline_total: usize,
    /// Bytes of offline messages kept per account, and in all.
    pub max_offline_bytes_per_account: usize,
    pub max_offline_bytes_total: usize,
    /// XEP-0049 private XML documents per account.
    pub max_private_items: usize,
    /// PEP (XEP-0163) bounds: nodes per account, items per node, bytes per item,
    /// bytes per account; and caps strings remembered (XEP-0115).
    pub pep: crate::services::pep::PepLimits,
    pub pep_caps_cache: usize,
    /// Remote contacts' resources kept for PEP notifications over federation.
    pub pep_remote_resources: usize,
    /// The message archive (XEP-0313) is on (`archive`), with its page bounds.
    pub archive: bool,
    pub mam: crate::services::mam::MamLimits,
    /// What one archive keeps (`archive_max_messages`, `archive_max_bytes`,
    /// `archive_days`).
    pub archive_limits: crate::store::archive::ArchiveLimits,
    /// External component listeners (XEP-0114, port 5347), plain and Direct TLS.
    pub component_listen: Vec<SocketAddr>,
    pub component_tls_listen: Vec<SocketAddr>,
    /// The components allowed to connect.
    pub components: Vec<ComponentConfig>,
    /// What a second connection for a connected component's domain does.
    pub component_conflict: ResourceConflict,
    /// PEM certificate chain and key; when absent, the local CA in the data dir.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Server-to-server federation (RFC 6120 §3, §13.7): the s2s listener opens and
    /// stanzas to other domains leave over outbound links.
    pub federation: bool,
    /// Inbound s2s listeners (port 5269), STARTTLS; and Direct TLS (XEP-0368).
    pub s2s_listen: Vec<SocketAddr>,
    pub s2s_direct_tls_listen: Vec<SocketAddr>,
    /// Static routes, tried before DNS (`[[s2s_route]]`).
    pub s2s_routes: Vec<S2sRoute>,
    /// Pinned peer certificates (`[[s2s_peer]]`).
    pub s2s_peers: Vec<S2sPeer>,
    /// A CA (PEM) whose certificates authenticate peer servers (a LAN CA).
    pub s2s_ca_file: Option<PathBuf>,
    /// The system's trusted roots authenticate peer servers too.
    pub s2s_system_roots: bool,
    /// Server Dialback (XEP-0220) when a certificate does not authenticate a peer.
    pub s2s_dialback: bool,
    /// Every peer server must be authenticated by its certificate, both ways.
    pub s2s_secure_auth: bool,
    /// Bytes waiting for one remote domain before stanzas bounce.
    pub s2s_queue_size: usize,
    /// A stanza waiting this long for its link bounces with `remote-server-timeout`;
    /// also the bound on resolving and connecting.
    pub s2s_connect_timeout: Duration,
    /// A link idle this long closes.
    pub s2s_idle_timeout: Duration,
    /// Outbound links open at once.
    pub max_s2s_links: usize,
    /// DNS answers may point at loopback/private/link-local addresses.
    pub s2s_private_targets: bool,
    /// The DNS server for SRV lookups ("" = the first `nameserver` of /etc/resolv.conf).
    pub s2s_dns_server: Option<SocketAddr>,
}

/// One `[[s2s_route]]`: where to connect for a remote domain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S2sRoute {
    pub domain: Domain,
    /// Host name or IP address.
    pub host: String,
    pub port: u16,
    /// TLS from the first byte (XEP-0368) instead of STARTTLS.
    pub direct_tls: bool,
}

/// One `[[s2s_peer]]`: a peer server's pinned certificate (SHA-256 of its DER).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S2sPeer {
    pub domain: Domain,
    pub fingerprint: [u8; 32],
}

/// Values given on the command line; they win over the file.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub domain: Option<String>,
    pub c2s_listen: Vec<String>,
    pub data_dir: Option<PathBuf>,
    pub log_level: Option<String>,
    pub c2s_direct_tls_listen: Vec<String>,
    pub component_listen: Vec<String>,
    pub http_listen: Vec<String>,
    /// `--board NAME`: a built-in board profile under the file and the flags.
    pub board: Option<String>,
}

/// One `[[component]]` table: an external component (XEP-0114) and its secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ComponentConfig {
    pub domain: Domain,
    pub secret: String,
}

/// RFC 6120 §7.7.2.2: when a client binds a resource that is already connected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResourceConflict {
    /// The new session takes over; the old stream gets the `conflict` stream error.
    Takeover,
    /// The new bind gets the `conflict` stanza error.
    Refuse,
}

/// Every key with its type, range and default, in README order.
struct Key {
    name: &'static str,
    kind: Kind,
}

enum Kind {
    Str(&'static str),
    Addrs(&'static [&'static str]),
    Int {
        min: i64,
        max: i64,
        default: i64,
    },
    Secs {
        max: i64,
        default: i64,
    },
    /// An optional file path.
    Path,
    Bool(bool),
    /// One of these words; the first is the default.
    Choice(&'static [&'static str]),
    /// A list of bare JIDs (accounts), empty by default.
    Jids,
    /// `[[component]]` tables: `domain`, and `secret` or `secret_file`.
    Components,
    /// `[[s2s_route]]` tables: `domain`, `address`, optional `direct_tls`.
    Routes,
    /// `[[s2s_peer]]` tables: `domain`, `fingerprint`.
    Peers,
}

const KEYS: &[Key] = &[
    Key { name: "domain", kind: Kind::Str("localhost") },
    Key { name: "admins", kind: Kind::Jids },
    Key { name: "data_dir", kind: Kind::Str("./wrenhub-data") },
    Key { name: "log_level", kind: Kind::Str("info") },
    Key { name: "c2s_listen", kind: Kind::Addrs(&["127.0.0.1:5222", "[::1]:5222"]) },
    Key { name: "max_sessions", kind: Kind::Int { min: 1, max: 1_000_000, default: 1024 } },
    Key { name: "max_buffer_memory", kind: Kind::Int { min: 65536, max: 1 << 40, default: 64 << 20 } },
    Key { name: "max_unauthenticated", kind: Kind::Int { min: 1, max: 1_000_000, default: 256 } },
    Key { name: "max_unauthenticated_per_ip", kind: Kind::Int { min: 1, max: 1_000_000, default: 8 } },
    Key { name: "max_s2s_in", kind: Kind::Int { min: 1, max: 100_000, default: 64 } },
    Key { name: "max_stanza_size", kind: Kind::Int { min: 4096, max: 16 * 1024 * 1024, default: 256 * 1024 } },
    Key { name: "max_preauth_stanza_size", kind: Kind::Int { min: 1024, max: 16 * 1024 * 1024, default: 8192 } },
    Key { name: "max_xml_depth", kind: Kind::Int { min: 2, max: 1000, default: 64 } },
    Key { name: "max_xml_attributes", kind: Kind::Int { min: 1, max: 10_000, default: 64 } },
    Key { name: "max_xml_namespaces", kind: Kind::Int { min: 1, max: 10_000, default: 32 } },
    Key { name: "c2s_header_timeout", kind: Kind::Secs { max: 3600, default: 10 } },
    Key { name: "c2s_auth_timeout", kind: Kind::Secs { max: 3600, default: 60 } },
    Key { name: "c2s_idle_timeout", kind: Kind::Secs { max: 7 * 86400, default: 900 } },
    Key { name: "sm_resume_timeout", kind: Kind::Secs { max: 86400, default: 600 } },
    Key { name: "sm_ack_request_delay", kind: Kind::Secs { max: 3600, default: 30 } },
    Key { name: "fast_token_lifetime", kind: Kind::Secs { max: 365 * 86400, default: 21 * 86400 } },
    Key { name: "fast_clients_per_account", kind: Kind::Int { min: 1, max: 64, default: 8 } },
    Key { name: "c2s_ping_interval", kind: Kind::Secs { max: 86400, default: 300 } },
    Key { name: "c2s_ping_timeout", kind: Kind::Secs { max: 3600, default: 60 } },
    Key { name: "c2s_read_rate", kind: Kind::Int { min: 0, max: 1 << 30, default: 1 << 20 } },
    Key { name: "s2s_read_rate", kind: Kind::Int { min: 0, max: 1 << 30, default: 4 << 20 } },
    Key { name: "write_timeout", kind: Kind::Secs { max: 3600, default: 30 } },
    Key { name: "shutdown_timeout", kind: Kind::Secs { max: 600, default: 5 } },
    Key { name: "c2s_direct_tls_listen", kind: Kind::Addrs(&["127.0.0.1:5223", "[::1]:5223"]) },
    Key { name: "c2s_require_encryption", kind: Kind::Bool(true) },
    Key { name: "c2s_sasl_plain", kind: Kind::Bool(true) },
    Key { name: "c2s_max_auth_attempts", kind: Kind::Int { min: 1, max: 100, default: 3 } },
    Key { name: "auth_failures_per_ip", kind: Kind::Int { min: 1, max: 100_000, default: 20 } },
    Key { name: "auth_failures_per_account", kind: Kind::Int { min: 1, max: 100_000, default: 10 } },
    Key { name: "max_resources_per_account", kind: Kind::Int { min: 1, max: 1000, default: 10 } },
    Key { name: "resource_conflict", kind: Kind::Choice(&["takeover", "refuse"]) },
    Key { name: "directory_domain", kind: Kind::Str("directory.<domain>") },
    Key { name: "directory_remote", kind: Kind::Bool(false) },
    Key { name: "directory_max_results", kind: Kind::Int { min: 1, max: 1000, default: 50 } },
    Key { name: "muc_domain", kind: Kind::Str("conference.<domain>") },
    Key { name: "muc_room_creation", kind: Kind::Choice(&["local", "admins", "anyone"]) },
    Key { name: "muc_max_rooms", kind: Kind::Int { min: 1, max: 100_000, default: 256 } },
    Key { name: "muc_max_rooms_per_user", kind: Kind::Int { min: 1, max: 100_000, default: 16 } },
    Key { name: "muc_max_occupants", kind: Kind::Int { min: 2, max: 10_000, default: 100 } },
    Key { name: "muc_history", kind: Kind::Int { min: 0, max: 1000, default: 20 } },
    Key { name: "c2s_queue_size", kind: Kind::Int { min: 4096, max: 64 * 1024 * 1024, default: 1024 * 1024 } },
    Key { name: "max_roster_items", kind: Kind::Int { min: 1, max: 100_000, default: 1000 } },
    Key { name: "max_offline_per_account", kind: Kind::Int { min: 0, max: 100_000, default: 200 } },
    Key { name: "max_offline_total", kind: Kind::Int { min: 0, max: 10_000_000, default: 20_000 } },
    Key { name: "max_offline_bytes_per_account", kind: Kind::Int { min: 0, max: 1 << 40, default: 1 << 20 } },
    Key { name: "max_offline_bytes_total", kind: Kind::Int { min: 0, max: 1 << 40, default: 64 << 20 } },
    Key { name: "max_private_items", kind: Kind::Int { min: 0, max: 10_000, default: 64 } },
    Key { name: "pep_max_nodes", kind: Kind::Int { min: 0, max: 10_000, default: 64 } },
    Key { name: "pep_max_items", kind: Kind::Int { min: 1, max: 10_000, default: 256 } },
    Key { name: "pep_max_item_bytes", kind: Kind::Int { min: 256, max: 16 * 1024 * 1024, default: 128 * 1024 } },
    Key { name: "pep_max_bytes", kind: Kind::Int { min: 1024, max: 1 << 30, default: 1024 * 1024 } },
    Key { name: "pep_caps_cache", kind: Kind::Int { min: 1, max: 100_000, default: 256 } },
    Key { name: "pep_remote_resources", kind: Kind::Int { min: 0, max: 100_000, default: 512 } },
    // On: clients sync history from it (about 10× Prosody's archived rate).
    Key { name: "archive", kind: Kind::Bool(true) },
    Key { name: "mam_page_default", kind: Kind::Int { min: 1, max: 1000, default: 50 } },
    Key { name: "mam_page_max", kind: Kind::Int { min: 1, max: 1000, default: 250 } },
    Key { name: "archive_max_messages", kind: Kind::Int { min: 1, max: 100_000_000, default: 100_000 } },
    Key { name: "archive_max_bytes", kind: Kind::Int { min: 4096, max: 1 << 40, default: 64 << 20 } },
    Key { name: "archive_days", kind: Kind::Int { min: 0, max: 36_500, default: 365 } },
    Key { name: "archive_max_total_bytes", kind: Kind::Int { min: 1 << 20, max: 1 << 50, default: 1 << 30 } },
    Key { name: "component_listen", kind: Kind::Addrs(&["127.0.0.1:5347"]) },
    Key { name: "component_tls_listen", kind: Kind::Addrs(&[]) },
    Key { name: "component", kind: Kind::Components },
    Key { name: "component_conflict", kind: Kind::Choice(&["refuse", "takeover"]) },
    Key { name: "board", kind: Kind::Str("") },
    Key { name: "tls_cert", kind: Kind::Path },
    Key { name: "tls_key", kind: Kind::Path },
    Key { name: "federation", kind: Kind::Bool(false) },
    Key { name: "s2s_listen", kind: Kind::Addrs(&["0.0.0.0:5269"]) },
    Key { name: "s2s_direct_tls_listen", kind: Kind::Addrs(&[]) },
    Key { name: "s2s_route", kind: Kind::Routes },
    Key { name: "s2s_peer", kind: Kind::Peers },
    Key { name: "s2s_ca_file", kind: Kind::Path },
    Key { name: "s2s_system_roots", kind: Kind::Bool(true) },
    Key { name: "s2s_dialback", kind: Kind::Bool(true) },
    Key { name: "s2s_secure_auth", kind: Kind::Bool(false) },
    Key { name: "s2s_queue_size", kind: Kind::Int { min: 4096, max: 64 * 1024 * 1024, default: 256 * 1024 } },
    Key { name: "s2s_connect_timeout", kind: Kind::Secs { max: 600, default: 30 } },
    Key { name: "s2s_idle_timeout", kind: Kind::Secs { max: 7 * 86400, default: 600 } },
    Key { name: "max_s2s_links", kind: Kind::Int { min: 1, max: 100_000, default: 32 } },
    Key { name: "s2s_dns_server", kind: Kind::Str("") },
    Key { name: "s2s_private_targets", kind: Kind::Bool(false) },
    Key { name: "http_listen", kind: Kind::Addrs(&["127.0.0.1:5443", "[::1]:5443"]) },
    Key { name: "http_plain_listen", kind: Kind::Addrs(&[]) },
    Key { name: "http_url", kind: Kind::Str("") },
    Key { name: "http_max_head_bytes", kind: Kind::Int { min: 1024, max: 65536, default: 8192 } },
    Key { name: "http_max_headers", kind: Kind::Int { min: 8, max: 256, default: 32 } },
    Key { name: "http_max_requests_per_connection", kind: Kind::Int { min: 1, max: 100_000, default: 100 } },
    Key { name: "http_header_timeout", kind: Kind::Secs { max: 3600, default: 10 } },
    Key { name: "http_idle_timeout", kind: Kind::Secs { max: 3600, default: 30 } },
    Key { name: "http_body_timeout", kind: Kind::Secs { max: 3600, default: 30 } },
    Key { name: "http_max_connections", kind: Kind::Int { min: 1, max: 100_000, default: 64 } },
    Key { name: "http_files_dir", kind: Kind::Path },
    Key { name: "websocket_origins", kind: Kind::Str("") },
    Key { name: "upload_domain", kind: Kind::Str("upload.<domain>") },
    Key { name: "upload_max_file_size", kind: Kind::Int { min: 1, max: 1 << 40, default: 100 << 20 } },
    Key { name: "upload_quota_per_account", kind: Kind::Int { min: 1, max: 1 << 50, default: 1 << 30 } },
    Key { name: "upload_quota_total", kind: Kind::Int { min: 1, max: 1 << 50, default: 10 << 30 } },
    Key { name: "upload_days", kind: Kind::Int { min: 0, max: 36_500, default: 30 } },
    Key { name: "upload_slot_timeout", kind: Kind::Secs { max: 86400, default: 300 } },
    Key { name: "proxy65_listen", kind: Kind::Addrs(&[]) },
    Key { name: "proxy65_domain", kind: Kind::Str("proxy.<domain>") },
    Key { name: "proxy65_host", kind: Kind::Str("") },
    Key { name: "proxy65_max_connections", kind: Kind::Int { min: 2, max: 100_000, default: 32 } },
    Key { name: "proxy65_rate", kind: Kind::Int { min: 0, max: 1 << 30, default: 10 << 20 } },
    Key { name: "proxy65_idle_timeout", kind: Kind::Secs { max: 3600, default: 60 } },
    Key { name: "stun_servers", kind: Kind::Str("") },
    Key { name: "turn_servers", kind: Kind::Str("") },
    Key { name: "turn_secret", kind: Kind::Str("") },
    Key { name: "turn_credential_lifetime", kind: Kind::Secs { max: 30 * 86400, default: 86400 } },
];

const LOG_LEVELS: &str = "off, error, warn, info, debug, trace";

/// A raw value, from the file or a flag, before validation.
enum Raw {
    Toml(toml::Value),
    Flag(String),
    Flags(Vec<String>),
}

impl Config {
    /// Reads the file (if any), applies the overrides and validates everything.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Config, Vec<Problem>> {
        let table = match file {
            None => toml::Table::new(),
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    vec![Problem {
                        key: "config".into(),
                        message: format!("cannot read {}: {e}", path.display()),
                        fix: "give the path of a readable TOML file, or no --config for the defaults".into(),
                    }]
                })?;
                text.parse::<toml::Table>().map_err(|e| {
                    vec![Problem {
                        key: "config".into(),
                        message: format!("{} is not valid TOML: {}", path.display(), e.to_string().trim()),
                        fix: "correct the TOML syntax at the place shown".into(),
                    }]
                })?
            }
        };
        Self::from_table(table, overrides)
    }

    /// Validates a parsed table plus overrides.
    pub fn from_table(mut table: toml::Table, overrides: &Overrides) -> Result<Config, Vec<Problem>> {
        let mut problems = Vec::new();
        // A board profile fills in the keys the file leaves out.
        let board = match (&overrides.board, table.remove("board")) {
            (Some(flag), _) => Some((flag.clone(), "--board".to_string())),
            (None, Some(toml::Value::String(b))) => Some((b, "board".to_string())),
            (None, Some(other)) => {
                problems.push(Problem {
                    key: "board".into(),
                    message: format!("must be a board name, got {}", show(&other)),
                    fix: format!("use one of {}", crate::boards::names()),
                });
                None
            }
            (None, None) => None,
        };
        if let Some((name, key)) = board {
            match crate::boards::profile(&name).map(|t| t.parse::<toml::Table>()) {
                Some(Ok(profile)) => {
                    for (k, v) in profile {
                        table.entry(k).or_insert(v);
                    }
                }
                Some(Err(e)) => problems.push(Problem {
                    key,
                    message: format!("the built-in profile is broken: {e}"),
                    fix: "report a bug".into(),
                }),
                None => problems.push(Problem {
                    key,
                    message: format!("unknown board {name:?}"),
                    fix: format!("use one of {}", crate::boards::names()),
                }),
            }
        }
        for key in table.keys() {
            if !KEYS.iter().any(|k| k.name == key) {
                let fix = match closest_key(key) {
                    Some(k) => {
                        format!("did you mean '{k}'? Otherwise remove it (README lists every key)")
                    }
                    None => "remove it (README lists every key)".to_string(),
                };
                problems.push(Problem { key: key.clone(), message: "unknown key".into(), fix });
            }
        }
        let mut take = |name: &str| -> Option<(Raw, String)> {
            let flag = match name {
                "domain" => overrides.domain.clone().map(Raw::Flag),
                "data_dir" => overrides.data_dir.as_ref().map(|p| Raw::Flag(p.display().to_string())),
                "log_level" => overrides.log_level.clone().map(Raw::Flag),
                "c2s_listen" if !overrides.c2s_listen.is_empty() => Some(Raw::Flags(overrides.c2s_listen.clone())),
                "c2s_direct_tls_listen" if !overrides.c2s_direct_tls_listen.is_empty() => {
                    Some(Raw::Flags(overrides.c2s_direct_tls_listen.clone()))
                }
                "component_listen" if !overrides.component_listen.is_empty() => {
                    Some(Raw::Flags(overrides.component_listen.clone()))
                }
                "http_listen" if !overrides.http_listen.is_empty() => Some(Raw::Flags(overrides.http_listen.clone())),
                _ => None,
            };
            match flag {
                Some(raw) => Some((raw, format!("--{}", name.replace('_', "-")))),
                None => table.remove(name).map(|v| (Raw::Toml(v), name.to_string())),
            }
        };
        let mut v = Validator { problems: &mut problems };
        let domain = v.domain(take("domain"));
        let data_dir = PathBuf::from(v.string(take("data_dir"), "data_dir"));
        let log_level = v.log_level(take("log_level"));
        let listen_raw = take("c2s_listen");
        let c2s_listen_is_default = listen_raw.is_none();
        let c2s_listen = v.addrs(listen_raw, "c2s_listen");
        let max_sessions = v.int(take("max_sessions"), "max_sessions") as usize;
        let max_unauthenticated = v.int(take("max_unauthenticated"), "max_unauthenticated") as usize;
        let max_unauthenticated_per_ip =
            v.int(take("max_unauthenticated_per_ip"), "max_unauthenticated_per_ip") as usize;
        let max_s2s_in = v.int(take("max_s2s_in"), "max_s2s_in") as usize;
        let direct_raw = take("c2s_direct_tls_listen");
        let c2s_direct_tls_listen_is_default = direct_raw.is_none();
        let c2s_direct_tls_listen = v.addrs_allow_empty(direct_raw, "c2s_direct_tls_listen");
        let xml = Limits {
            max_stanza_size: v.int(take("max_stanza_size"), "max_stanza_size") as usize,
            max_depth: v.int(take("max_xml_depth"), "max_xml_depth") as usize,
            max_attributes: v.int(take("max_xml_attributes"), "max_xml_attributes") as usize,
            max_namespaces: v.int(take("max_xml_namespaces"), "max_xml_namespaces") as usize,
        };
        let domain = domain.unwrap_or_else(|| Domain::parse("localhost").expect("built-in domain is valid"));
        let admins = v.jids(take("admins"), "admins");
        let muc = v.muc(&mut take, &domain, &admins);
        let directory = v.directory(&mut take, &domain);
        let http = v.http(&mut take);
        let upload = v.upload(&mut take, &domain).filter(|_| !http.listen.is_empty() || !http.plain_listen.is_empty());
        let external_services = v.external_services(&mut take);
        let proxy65 = v.proxy65(&mut take, &domain);
        let config = Config {
            muc,
            directory,
            http,
            external_services,
            proxy65,
            upload,
            admins,
            domain,
            data_dir,
            log_level,
            c2s_listen,
            c2s_listen_is_default,
            max_sessions,
            max_buffer_memory: v.int(take("max_buffer_memory"), "max_buffer_memory") as usize,
            max_unauthenticated,
            max_unauthenticated_per_ip,
            max_s2s_in,
            xml,
            max_preauth_stanza_size: v.int(take("max_preauth_stanza_size"), "max_preauth_stanza_size") as usize,
            c2s_header_timeout: v.secs(take("c2s_header_timeout"), "c2s_header_timeout"),
            c2s_auth_timeout: v.secs(take("c2s_auth_timeout"), "c2s_auth_timeout"),
            c2s_idle_timeout: v.secs(take("c2s_idle_timeout"), "c2s_idle_timeout"),
            sm_resume_timeout: v.secs(take("sm_resume_timeout"), "sm_resume_timeout"),
            sm_ack_request_delay: v.secs(take("sm_ack_request_delay"), "sm_ack_request_delay"),
            fast_token_lifetime: v.secs(take("fast_token_lifetime"), "fast_token_lifetime"),
            fast_clients_per_account: v.int(take("fast_clients_per_account"), "fast_clients_per_account") as usize,
            c2s_ping_interval: v.secs(take("c2s_ping_interval"), "c2s_ping_interval"),
            c2s_ping_timeout: v.secs(take("c2s_ping_timeout"), "c2s_ping_timeout"),
            c2s_read_rate: Some(v.int(take("c2s_read_rate"), "c2s_read_rate") as u32).filter(|r| *r > 0),
            s2s_read_rate: Some(v.int(take("s2s_read_rate"), "s2s_read_rate") as u32).filter(|r| *r > 0),
            write_timeout: v.secs(take("write_timeout"), "write_timeout"),
            shutdown_timeout: v.secs(take("shutdown_timeout"), "shutdown_timeout"),
            c2s_direct_tls_listen,
            c2s_direct_tls_listen_is_default,
            c2s_require_encryption: v.bool(take("c2s_require_encryption"), "c2s_require_encryption"),
            c2s_sasl_plain: v.bool(take("c2s_sasl_plain"), "c2s_sasl_plain"),
            c2s_max_auth_attempts: v.int(take("c2s_max_auth_attempts"), "c2s_max_auth_attempts") as u32,
            auth_failures_per_ip: v.int(take("auth_failures_per_ip"), "auth_failures_per_ip") as u32,
            auth_failures_per_account: v.int(take("auth_failures_per_account"), "auth_failures_per_account") as u32,
            max_resources_per_account: v.int(take("max_resources_per_account"), "max_resources_per_account") as usize,
            resource_conflict: match v.choice(take("resource_conflict"), "resource_conflict") {
                "refuse" => ResourceConflict::Refuse,
                _ => ResourceConflict::Takeover,
            },
            c2s_queue_size: v.int(take("c2s_queue_size"), "c2s_queue_size") as usize,
            max_roster_items: v.int(take("max_roster_items"), "max_roster_items") as usize,
            max_offline_per_account: v.int(take("max_offline_per_account"), "max_offline_per_account") as usize,
            max_offline_total: v.int(take("max_offline_total"), "max_offline_total") as usize,
            max_offline_bytes_per_account: v.int(take("max_offline_bytes_per_account"), "max_offline_bytes_per_account")
                as usize,
            max_offline_bytes_total: v.int(take("max_offline_bytes_total"), "max_offline_bytes_total") as usize,
            max_private_items: v.int(take("max_private_items"), "max_private_items") as usize,
            pep: crate::services::pep::PepLimits {
                max_nodes: v.int(take("pep_max_nodes"), "pep_max_nodes") as usize,
                max_items: v.int(take("pep_max_items"), "pep_max_items") as usize,
                max_item_bytes: v.int(take("pep_max_item_bytes"), "pep_max_item_bytes") as usize,
                max_bytes: v.int(take("pep_max_bytes"), "pep_max_bytes") as usize,
            },
            pep_caps_cache: v.int(take("pep_caps_cache"), "pep_caps_cache") as usize,
            pep_remote_resources: v.int(take("pep_remote_resources"), "pep_remote_resources") as usize,
            archive: v.bool(take("archive"), "archive"),
            archive_limits: crate::store::archive::ArchiveLimits {
                max_messages: v.int(take("archive_max_messages"), "archive_max_messages") as u64,
                max_bytes: v.int(take("archive_max_bytes"), "archive_max_bytes") as u64,
                keep_micros: (v.int(take("archive_days"), "archive_days") as u64).saturating_mul(86_400_000_000),
                max_total_bytes: v.int(take("archive_max_total_bytes"), "archive_max_total_bytes") as u64,
            },
            mam: {
                let page_default = v.int(take("mam_page_default"), "mam_page_default") as usize;
                let page_max = v.int(take("mam_page_max"), "mam_page_max") as usize;
                crate::services::mam::MamLimits { page_default: page_default.min(page_max), page_max }
            },
            component_listen: v.addrs_allow_empty(take("component_listen"), "component_listen"),
            component_tls_listen: v.addrs_allow_empty(take("component_tls_listen"), "component_tls_listen"),
            components: v.components(take("component")),
            component_conflict: match v.choice(take("component_conflict"), "component_conflict") {
                "takeover" => ResourceConflict::Takeover,
                _ => ResourceConflict::Refuse,
            },
            tls_cert: v.path(take("tls_cert"), "tls_cert"),
            tls_key: v.path(take("tls_key"), "tls_key"),
            federation: v.bool(take("federation"), "federation"),
            s2s_listen: v.addrs_allow_empty(take("s2s_listen"), "s2s_listen"),
            s2s_direct_tls_listen: v.addrs_allow_empty(take("s2s_direct_tls_listen"), "s2s_direct_tls_listen"),
            s2s_routes: v.routes(take("s2s_route")),
            s2s_peers: v.peers(take("s2s_peer")),
            s2s_ca_file: v.path(take("s2s_ca_file"), "s2s_ca_file"),
            s2s_system_roots: v.bool(take("s2s_system_roots"), "s2s_system_roots"),
            s2s_dialback: v.bool(take("s2s_dialback"), "s2s_dialback"),
            s2s_secure_auth: v.bool(take("s2s_secure_auth"), "s2s_secure_auth"),
            s2s_queue_size: v.int(take("s2s_queue_size"), "s2s_queue_size") as usize,
            s2s_connect_timeout: v.secs(take("s2s_connect_timeout"), "s2s_connect_timeout"),
            s2s_idle_timeout: v.secs(take("s2s_idle_timeout"), "s2s_idle_timeout"),
            max_s2s_links: v.int(take("max_s2s_links"), "max_s2s_links") as usize,
            s2s_dns_server: v.dns_server(take("s2s_dns_server")),
            s2s_private_targets: v.bool(take("s2s_private_targets"), "s2s_private_targets"),
        };
        if config.tls_cert.is_some() != config.tls_key.is_some() {
            problems.push(Problem {
                key: if config.tls_cert.is_some() { "tls_key" } else { "tls_cert" }.into(),
                message: "tls_cert and tls_key go together".into(),
                fix: "set both (PEM chain and its key), or neither for the local CA".into(),
            });
        }
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(problems)
        }
    }
}

fn key(name: &str) -> &'static Key {
    KEYS.iter().find(|k| k.name == name).expect("every key asked for is in KEYS")
}

/// The known key nearest to a misspelt one (edit distance at most 3).
fn closest_key(unknown: &str) -> Option<&'static str> {
    KEYS.iter().map(|k| (edit_distance(unknown, k.name), k.name)).filter(|(d, _)| *d <= 3).min().map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

struct Validator<'p> {
    problems: &'p mut Vec<Problem>,
}

impl Validator<'_> {
    /// `muc_domain` and the service's limits.
    fn muc(
        &mut self,
        take: &mut impl FnMut(&str) -> Option<(Raw, String)>,
        domain: &Domain,
        admins: &[BareJid],
    ) -> Option<MucConfig> {
        let name = self.service_domain(take("muc_domain"), "muc_domain", "conference", domain, "group chat");
        let creation = match self.choice(take("muc_room_creation"), "muc_room_creation") {
            "admins" => RoomCreation::Admins,
            "anyone" => RoomCreation::Anyone,
            _ => RoomCreation::Local,
        };
        let max_rooms = self.int(take("muc_max_rooms"), "muc_max_rooms") as usize;
        let max_rooms_per_user = self.int(take("muc_max_rooms_per_user"), "muc_max_rooms_per_user") as usize;
        let max_occupants = self.int(take("muc_max_occupants"), "muc_max_occupants") as usize;
        let history = self.int(take("muc_history"), "muc_history") as usize;
        Some(MucConfig {
            domain: name?,
            creation,
            admins: admins.into(),
            max_rooms,
            max_rooms_per_user,
            max_occupants,
            history,
            archive: false,
        })
    }

    /// `directory_domain` and its settings.
    fn directory(
        &mut self,
        take: &mut impl FnMut(&str) -> Option<(Raw, String)>,
        domain: &Domain,
    ) -> Option<DirectoryConfig> {
        let name = self.service_domain(take("directory_domain"), "directory_domain", "directory", domain, "directory");
        let remote = self.bool(take("directory_remote"), "directory_remote");
        let max_results = self.int(take("directory_max_results"), "directory_max_results") as usize;
        Some(DirectoryConfig { domain: name?, remote, max_results })
    }

    /// The HTTPS listener's keys.
    fn http(&mut self, take: &mut impl FnMut(&str) -> Option<(Raw, String)>) -> HttpConfig {
        let raw = take("http_listen");
        let listen_is_default = raw.is_none();
        let listen = self.addrs_allow_empty(raw, "http_listen");
        let shown = "http_url";
        let url = self.string(take("http_url"), "http_url");
        let url = url.trim_end_matches('/').to_string();
        if !url.is_empty()
            && (!(url.starts_with("https://") || url.starts_with("http://")) || url.contains(['?', '#', ' ']))
        {
            self.problem(shown, format!("{url:?} is not a base URL"), "http_url = \"https://hub.lan:5443\"".into());
        }
        HttpConfig {
            listen,
            listen_is_default,
            plain_listen: self.addrs_allow_empty(take("http_plain_listen"), "http_plain_listen"),
            url: (!url.is_empty()).then_some(url),
            limits: crate::http::request::Limits {
                max_head_bytes: self.int(take("http_max_head_bytes"), "http_max_head_bytes") as usize,
                max_headers: self.int(take("http_max_headers"), "http_max_headers") as usize,
            },
            max_requests_per_connection: self
                .int(take("http_max_requests_per_connection"), "http_max_requests_per_connection")
                as usize,
            header_timeout: self.secs(take("http_header_timeout"), "http_header_timeout"),
            idle_timeout: self.secs(take("http_idle_timeout"), "http_idle_timeout"),
            body_timeout: self.secs(take("http_body_timeout"), "http_body_timeout"),
            max_connections: self.int(take("http_max_connections"), "http_max_connections") as usize,
            files_dir: self.path(take("http_files_dir"), "http_files_dir"),
            websocket_origins: self
                .string(take("websocket_origins"), "websocket_origins")
                .split(',')
                .map(|o| o.trim().trim_end_matches('/').to_string())
                .filter(|o| !o.is_empty())
                .collect(),
        }
    }

    /// `stun_servers`, `turn_servers` (`host:port`, comma-separated), `turn_secret`.
    fn external_services(
        &mut self,
        take: &mut impl FnMut(&str) -> Option<(Raw, String)>,
    ) -> crate::services::extdisco::ExternalServices {
        let mut servers = |v: &mut Validator<'_>, key: &str| -> Vec<(String, u16)> {
            let text = v.string(take(key), key);
            let mut list = Vec::new();
            for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                match item.rsplit_once(':').map(|(h, p)| (h, p.parse::<u16>())) {
                    Some((host, Ok(port))) if !host.is_empty() && port > 0 => list.push((host.to_string(), port)),
                    _ => v.problem(key, format!("{item:?} is not host:port"), format!("{key} = \"turn.hub.lan:3478\"")),
                }
            }
            list
        };
        let stun = servers(self, "stun_servers");
        let turn = servers(self, "turn_servers");
        let secret = self.string(take("turn_secret"), "turn_secret");
        let credential_secs = self.secs(take("turn_credential_lifetime"), "turn_credential_lifetime").as_secs();
        crate::services::extdisco::ExternalServices {
            stun,
            turn,
            turn_secret: (!secret.is_empty()).then_some(secret),
            credential_secs,
        }
    }

    /// The XEP-0065 proxy: on when `proxy65_listen` names an address.
    fn proxy65(
        &mut self,
        take: &mut impl FnMut(&str) -> Option<(Raw, String)>,
        domain: &Domain,
    ) -> Option<crate::services::proxy65::Proxy65Config> {
        let listen = self.addrs_allow_empty(take("proxy65_listen"), "proxy65_listen");
        let name = self.service_domain(take("proxy65_domain"), "proxy65_domain", "proxy", domain, "proxy");
        let host = self.string(take("proxy65_host"), "proxy65_host");
        let max_connections = self.int(take("proxy65_max_connections"), "proxy65_max_connections") as usize;
        let rate = self.int(take("proxy65_rate"), "proxy65_rate") as u32;
        let idle_timeout = self.secs(take("proxy65_idle_timeout"), "proxy65_idle_timeout");
        if listen.is_empty() {
            return None;
        }
        Some(crate::services::proxy65::Proxy65Config {
            domain: name?,
            listen,
            host,
            max_connections,
            rate,
            idle_timeout,
        })
    }

    /// `upload_domain` and its quotas (XEP-0363).
    fn upload(
        &mut self,
        take: &mut impl FnMut(&str) -> Option<(Raw, String)>,
        domain: &Domain,
    ) -> Option<crate::services::upload::UploadConfig> {
        let name = self.service_domain(take("upload_domain"), "upload_domain", "upload", domain, "file upload");
        let max_file_size = self.int(take("upload_max_file_size"), "upload_max_file_size") as u64;
        let quota_per_account = self.int(take("upload_quota_per_account"), "upload_quota_per_account") as u64;
        let quota_total = self.int(take("upload_quota_total"), "upload_quota_total") as u64;
        let days = self.int(take("upload_days"), "upload_days") as u64;
        let slot_secs = self.secs(take("upload_slot_timeout"), "upload_slot_timeout").as_secs();
        Some(crate::services::upload::UploadConfig {
            domain: name?,
            max_file_size,
            quota_per_account,
            quota_total,
            keep_secs: days * 86400,
            slot_secs,
        })
    }

    /// A built-in service's domain key: its default `PREFIX.<domain>`, `""` (the
    /// service is off: `None`), or another domain than the server's (else a
    /// problem, and `None`).
    fn service_domain(
        &mut self,
        raw: Option<(Raw, String)>,
        key: &str,
        prefix: &str,
        domain: &Domain,
        what: &str,
    ) -> Option<Domain> {
        let shown = raw.as_ref().map_or(key.to_string(), |(_, k)| k.clone());
        let name = self.string(raw, key);
        let name = match name.as_str() {
            "" => return None,
            n if n == format!("{prefix}.<domain>") => format!("{prefix}.{domain}"),
            other => other.to_string(),
        };
        match Domain::parse(&name) {
            Ok(d) if d != *domain => Some(d),
            _ => {
                self.problem(
                    &shown,
                    format!("{name:?} is not a domain other than the server's"),
                    format!("{key} = \"{prefix}.{domain}\" (or \"\" for no {what})"),
                );
                None
            }
        }
    }

    fn problem(&mut self, key: &str, message: String, fix: String) {
        self.problems.push(Problem { key: key.to_string(), message, fix });
    }

    fn string(&mut self, raw: Option<(Raw, String)>, name: &str) -> String {
        let Kind::Str(default) = key(name).kind else { unreachable!("{name} is a string key") };
        match raw {
            None => default.to_string(),
            Some((Raw::Flag(s), _)) => s,
            Some((Raw::Toml(toml::Value::String(s)), _)) => s,
            Some((other, k)) => {
                self.problem(
                    &k,
                    format!("must be a string, got {}", describe(&other)),
                    format!("{name} = \"{default}\""),
                );
                default.to_string()
            }
        }
    }

    fn domain(&mut self, raw: Option<(Raw, String)>) -> Option<Domain> {
        let shown = raw.as_ref().map_or("domain".to_string(), |(_, k)| k.clone());
        let s = self.string(raw, "domain");
        match Domain::parse(&s) {
            Ok(d) => Some(d),
            Err(e) => {
                self.problem(
                    &shown,
                    format!("{s:?} is not a valid domain: {e}"),
                    "use a host name such as \"hub.lan\" or an IP address (RFC 7622 §3.2)".into(),
                );
                None
            }
        }
    }

    fn log_level(&mut self, raw: Option<(Raw, String)>) -> log::LevelFilter {
        let shown = raw.as_ref().map_or("log_level".to_string(), |(_, k)| k.clone());
        let s = self.string(raw, "log_level");
        s.parse().unwrap_or_else(|_| {
            self.problem(&shown, format!("unknown log level {s:?}"), format!("use one of {LOG_LEVELS}"));
            log::LevelFilter::Info
        })
    }

    fn addrs(&mut self, raw: Option<(Raw, String)>, name: &str) -> Vec<SocketAddr> {
        let Kind::Addrs(default) = key(name).kind else { unreachable!("{name} is an address key") };
        let (items, k) = match raw {
            None => (default.iter().map(|s| s.to_string()).collect(), name.to_string()),
            Some(raw) => match self.strings(raw, ("address", "addresses"), &format!("{name} = [\"127.0.0.1:5222\"]")) {
                Some(list) => list,
                None => return Vec::new(),
            },
        };
        let mut addrs = Vec::new();
        for item in items {
            match item.parse::<SocketAddr>() {
                Ok(a) => addrs.push(a),
                Err(_) => self.problem(
                    &k,
                    format!("{item:?} is not an IP address with a port"),
                    "write it as \"192.168.1.2:5222\" or \"[::1]:5222\" (port 0 picks a free port)".into(),
                ),
            }
        }
        if addrs.is_empty() && self.problems.iter().all(|p| p.key != k) {
            self.problem(&k, "no address to listen on".into(), format!("{name} = [\"127.0.0.1:5222\"]"));
        }
        addrs
    }

    fn components(&mut self, raw: Option<(Raw, String)>) -> Vec<ComponentConfig> {
        let example = "[[component]]\ndomain = \"gw.hub.lan\"\nsecret_file = \"/etc/wrenhub/gw.secret\"";
        let tables = match raw {
            None => return Vec::new(),
            Some((Raw::Toml(toml::Value::Array(a)), _)) => a,
            Some((other, k)) => {
                self.problem(&k, format!("must be [[component]] tables, got {}", describe(&other)), example.into());
                return Vec::new();
            }
        };
        let mut out: Vec<ComponentConfig> = Vec::new();
        for (i, t) in tables.into_iter().enumerate() {
            let key = format!("component[{i}]");
            let toml::Value::Table(t) = t else {
                self.problem(&key, "must be a table".into(), example.into());
                continue;
            };
            for k in t.keys().filter(|k| !matches!(k.as_str(), "domain" | "secret" | "secret_file")) {
                self.problem(
                    &format!("{key}.{k}"),
                    "unknown key".into(),
                    "use domain, and secret or secret_file".into(),
                );
            }
            let domain = match t.get("domain") {
                Some(toml::Value::String(d)) => match Domain::parse(d) {
                    Ok(d) => d,
                    Err(e) => {
                        self.problem(
                            &format!("{key}.domain"),
                            format!("{d:?} is not a valid domain: {e}"),
                            "use e.g. gw.hub.lan".into(),
                        );
                        continue;
                    }
                },
                _ => {
                    self.problem(&format!("{key}.domain"), "missing".into(), example.into());
                    continue;
                }
            };
            let secret = match (t.get("secret"), t.get("secret_file")) {
                (Some(toml::Value::String(s)), None) => s.clone(),
                (None, Some(toml::Value::String(path))) => match std::fs::read_to_string(path) {
                    Ok(s) => s.trim().to_string(),
                    Err(e) => {
                        self.problem(
                            &format!("{key}.secret_file"),
                            format!("cannot read {path}: {e}"),
                            "give a readable file holding the secret".into(),
                        );
                        continue;
                    }
                },
                _ => {
                    self.problem(
                        &format!("{key}.secret"),
                        "give exactly one of secret and secret_file".into(),
                        example.into(),
                    );
                    continue;
                }
            };
            if secret.is_empty() {
                self.problem(&format!("{key}.secret"), "the secret is empty".into(), "use a long random secret".into());
                continue;
            }
            if out.iter().any(|c| c.domain == domain) {
                self.problem(
                    &format!("{key}.domain"),
                    format!("{domain} is configured twice"),
                    "keep one [[component]] per domain".into(),
                );
                continue;
            }
            out.push(ComponentConfig { domain, secret });
        }
        out
    }

    /// The tables of an array-of-tables key, each checked for unknown keys.
    fn tables(
        &mut self,
        raw: Option<(Raw, String)>,
        name: &str,
        known: &[&str],
        example: &str,
    ) -> Vec<(String, toml::Table)> {
        let tables = match raw {
            None => return Vec::new(),
            Some((Raw::Toml(toml::Value::Array(a)), _)) => a,
            Some((other, k)) => {
                self.problem(&k, format!("must be [[{name}]] tables, got {}", describe(&other)), example.into());
                return Vec::new();
            }
        };
        let mut out = Vec::new();
        for (i, t) in tables.into_iter().enumerate() {
            let key = format!("{name}[{i}]");
            let toml::Value::Table(t) = t else {
                self.problem(&key, "must be a table".into(), example.into());
                continue;
            };
            for k in t.keys().filter(|k| !known.contains(&k.as_str())) {
                self.problem(&format!("{key}.{k}"), "unknown key".into(), format!("use {}", known.join(", ")));
            }
            out.push((key, t));
        }
        out
    }

    fn table_domain(&mut self, key: &str, t: &toml::Table, example: &str) -> Option<Domain> {
        match t.get("domain") {
            Some(toml::Value::String(d)) => match Domain::parse(d) {
                Ok(d) => Some(d),
                Err(e) => {
                    self.problem(
                        &format!("{key}.domain"),
                        format!("{d:?} is not a valid domain: {e}"),
                        "use e.g. nas.lan".into(),
                    );
                    None
                }
            },
            _ => {
                self.problem(&format!("{key}.domain"), "missing".into(), example.into());
                None
            }
        }
    }

    fn routes(&mut self, raw: Option<(Raw, String)>) -> Vec<S2sRoute> {
        let example = "[[s2s_route]]\ndomain = \"nas.lan\"\naddress = \"192.168.1.20:5269\"";
        let mut out: Vec<S2sRoute> = Vec::new();
        for (key, t) in self.tables(raw, "s2s_route", &["domain", "address", "direct_tls"], example) {
            let Some(domain) = self.table_domain(&key, &t, example) else { continue };
            let address = match t.get("address") {
                Some(toml::Value::String(a)) => a.clone(),
                _ => {
                    self.problem(&format!("{key}.address"), "missing".into(), example.into());
                    continue;
                }
            };
            let parsed = address.rsplit_once(':').and_then(|(h, p)| Some((h, p.parse::<u16>().ok()?)));
            let Some((host, port)) = parsed.filter(|(h, p)| !h.is_empty() && *p != 0) else {
                self.problem(
                    &format!("{key}.address"),
                    format!("{address:?} is not host:port"),
                    "write it as \"192.168.1.20:5269\", \"[fd00::2]:5269\" or \"nas.lan:5269\"".into(),
                );
                continue;
            };
            let direct_tls = match t.get("direct_tls") {
                None => false,
                Some(toml::Value::Boolean(b)) => *b,
                Some(other) => {
                    self.problem(
                        &format!("{key}.direct_tls"),
                        format!("must be true or false, got {}", show(other)),
                        "direct_tls = true".into(),
                    );
                    continue;
                }
            };
            if out.iter().any(|r| r.domain == domain) {
                self.problem(
                    &format!("{key}.domain"),
                    format!("{domain} has two routes"),
                    "keep one [[s2s_route]] per domain".into(),
                );
                continue;
            }
            let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
            out.push(S2sRoute { domain, host, port, direct_tls });
        }
        out
    }

    fn peers(&mut self, raw: Option<(Raw, String)>) -> Vec<S2sPeer> {
        let example = "[[s2s_peer]]\ndomain = \"nas.lan\"\nfingerprint = \"AB:CD:…\" (wrenhub cert show on the peer)";
        let mut out = Vec::new();
        for (key, t) in self.tables(raw, "s2s_peer", &["domain", "fingerprint"], example) {
            let Some(domain) = self.table_domain(&key, &t, example) else { continue };
            let text = match t.get("fingerprint") {
                Some(toml::Value::String(f)) => f.clone(),
                _ => {
                    self.problem(&format!("{key}.fingerprint"), "missing".into(), example.into());
                    continue;
                }
            };
            let hex: String = text.chars().filter(|c| *c != ':').collect();
            let bytes: Option<Vec<u8>> = (hex.len() == 64)
                .then(|| (0..32).map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()).collect())
                .flatten();
            match bytes.and_then(|b| <[u8; 32]>::try_from(b).ok()) {
                Some(fingerprint) => out.push(S2sPeer { domain, fingerprint }),
                None => self.problem(
                    &format!("{key}.fingerprint"),
                    format!("{text:?} is not a SHA-256 fingerprint"),
                    "give the 32 bytes in hex, with or without colons (wrenhub cert show prints it)".into(),
                ),
            }
        }
        out
    }

    fn dns_server(&mut self, raw: Option<(Raw, String)>) -> Option<SocketAddr> {
        let shown = raw.as_ref().map_or("s2s_dns_server".to_string(), |(_, k)| k.clone());
        let s = self.string(raw, "s2s_dns_server");
        if s.is_empty() {
            return None;
        }
        let parsed = s.parse::<SocketAddr>().ok().or_else(|| Some(SocketAddr::new(s.parse().ok()?, 53)));
        if parsed.is_none() {
            self.problem(
                &shown,
                format!("{s:?} is not an IP address"),
                "write it as \"192.168.1.1\" or \"127.0.0.1:5353\", or \"\" for /etc/resolv.conf".into(),
            );
        }
        parsed
    }

    fn bool(&mut self, raw: Option<(Raw, String)>, name: &str) -> bool {
        let Kind::Bool(default) = key(name).kind else { unreachable!("{name} is a boolean key") };
        match raw {
            None => default,
            Some((Raw::Toml(toml::Value::Boolean(b)), _)) => b,
            Some((other, k)) => {
                self.problem(
                    &k,
                    format!("must be true or false, got {}", describe(&other)),
                    format!("{name} = {default}"),
                );
                default
            }
        }
    }

    fn choice(&mut self, raw: Option<(Raw, String)>, name: &str) -> &'static str {
        let Kind::Choice(words) = key(name).kind else { unreachable!("{name} is a choice key") };
        let (given, k) = match raw {
            None => return words[0],
            Some((Raw::Toml(toml::Value::String(s)), k)) | Some((Raw::Flag(s), k)) => (s, k),
            Some((other, k)) => (describe(&other), k),
        };
        match words.iter().find(|w| **w == given) {
            Some(w) => w,
            None => {
                self.problem(
                    &k,
                    format!("{given:?} is not one of {}", words.join(", ")),
                    format!("{name} = \"{}\"", words[0]),
                );
                words[0]
            }
        }
    }

    /// Like `addrs`, but an empty list is allowed (the listener is off).
    /// A list of strings (one string, or repeated flags, count as a list), with
    /// the key as written; `None` (the problem noted) when it is something else.
    fn strings(&mut self, raw: (Raw, String), what: (&str, &str), example: &str) -> Option<(Vec<String>, String)> {
        let (one, many) = what;
        match raw {
            (Raw::Flags(v), k) => Some((v, k)),
            (Raw::Flag(s), k) | (Raw::Toml(toml::Value::String(s)), k) => Some((vec![s], k)),
            (Raw::Toml(toml::Value::Array(a)), k) => {
                let mut items = Vec::new();
                for v in a {
                    match v {
                        toml::Value::String(s) => items.push(s),
                        other => self.problem(
                            &k,
                            format!("every {one} must be a string, got {}", show(&other)),
                            example.into(),
                        ),
                    }
                }
                Some((items, k))
            }
            (other, k) => {
                self.problem(&k, format!("must be a list of {many}, got {}", describe(&other)), example.into());
                None
            }
        }
    }

    /// A list of bare JIDs (`admins = ["alice@hub.lan"]`).
    fn jids(&mut self, raw: Option<(Raw, String)>, name: &str) -> Vec<BareJid> {
        let example = format!("{name} = [\"alice@hub.lan\"]");
        let Some((items, k)) = raw.and_then(|raw| self.strings(raw, ("account", "accounts"), &example)) else {
            return Vec::new();
        };
        let mut jids = Vec::new();
        for item in items {
            match item.parse::<BareJid>() {
                Ok(j) if j.local().is_some() => jids.push(j),
                _ => self.problem(
                    &k,
                    format!("{item:?} is not an account (user@domain)"),
                    format!("{name} = [\"alice@hub.lan\"]"),
                ),
            }
        }
        jids
    }

    fn addrs_allow_empty(&mut self, raw: Option<(Raw, String)>, name: &str) -> Vec<SocketAddr> {
        let empty_default = matches!(key(name).kind, Kind::Addrs(d) if d.is_empty());
        match &raw {
            Some((Raw::Toml(toml::Value::Array(a)), _)) if a.is_empty() => Vec::new(),
            None if empty_default => Vec::new(),
            _ => self.addrs(raw, name),
        }
    }

    fn path(&mut self, raw: Option<(Raw, String)>, name: &str) -> Option<PathBuf> {
        match raw {
            None => None,
            Some((Raw::Flag(s), _)) | Some((Raw::Toml(toml::Value::String(s)), _)) => Some(PathBuf::from(s)),
            Some((other, k)) => {
                self.problem(
                    &k,
                    format!("must be a file path, got {}", describe(&other)),
                    format!("{name} = \"/etc/wrenhub/{name}.pem\""),
                );
                None
            }
        }
    }

    fn int(&mut self, raw: Option<(Raw, String)>, name: &str) -> i64 {
        let Kind::Int { min, max, default } = key(name).kind else { unreachable!("{name} is an integer key") };
        self.ranged(raw, name, min, max, default, "")
    }

    fn secs(&mut self, raw: Option<(Raw, String)>, name: &str) -> Duration {
        let Kind::Secs { max, default } = key(name).kind else { unreachable!("{name} is a seconds key") };
        Duration::from_secs(self.ranged(raw, name, 1, max, default, " (seconds)") as u64)
    }

    fn ranged(&mut self, raw: Option<(Raw, String)>, name: &str, min: i64, max: i64, default: i64, unit: &str) -> i64 {
        let (value, k) = match raw {
            None => return default,
            Some((Raw::Toml(toml::Value::Integer(i)), k)) => (i, k),
            Some((other, k)) => {
                self.problem(
                    &k,
                    format!("must be an integer{unit}, got {}", describe(&other)),
                    format!("{name} = {default}"),
                );
                return default;
            }
        };
        if value < min || value > max {
            self.problem(
                &k,
                format!("{value} is out of range{unit}"),
                format!("use a value from {min} to {max} (default {default})"),
            );
            return default;
        }
        value
    }
}

fn describe(raw: &Raw) -> String {
    match raw {
        Raw::Toml(v) => show(v),
        Raw::Flag(s) => format!("{s:?}"),
        Raw::Flags(v) => format!("{v:?}"),
    }
}

fn show(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => format!("the string {s:?}"),
        toml::Value::Integer(i) => format!("the integer {i}"),
        toml::Value::Float(f) => format!("the float {f}"),
        toml::Value::Boolean(b) => format!("the boolean {b}"),
        other => format!("a {}", other.type_str()),
    }
}

/// The README table of keys: name, default and range (kept in one place with the
/// validation, so the two cannot drift; a test compares it with README.md).
pub fn key_table() -> Vec<(String, String, String)> {
    KEYS.iter()
        .map(|k| match &k.kind {
            Kind::Str(d) => (k.name.to_string(), format!("\"{d}\""), "string".to_string()),
            Kind::Path => (k.name.to_string(), "(none)".to_string(), "file path".to_string()),
            Kind::Bool(d) => (k.name.to_string(), d.to_string(), "true/false".to_string()),
            Kind::Components | Kind::Routes | Kind::Peers => {
                (k.name.to_string(), "(none)".to_string(), "tables".to_string())
            }
            Kind::Choice(w) => (k.name.to_string(), format!("\"{}\"", w[0]), w.join(" / ")),
            Kind::Addrs(d) => (k.name.to_string(), format!("{d:?}"), "list of IP:port".to_string()),
            Kind::Jids => (k.name.to_string(), "[]".to_string(), "list of accounts".to_string()),
            Kind::Int { min, max, default } => (k.name.to_string(), default.to_string(), format!("{min}–{max}")),
            Kind::Secs { max, default } => (k.name.to_string(), format!("{default} s"), format!("1–{max} s")),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Config, Vec<Problem>> {
        Config::from_table(text.parse().unwrap(), &Overrides::default())
    }

    #[test]
    fn admins_are_accounts_and_anything_else_is_named() {
        let c = load("admins = ['alice@hub.lan']\nmuc_room_creation = 'admins'").unwrap();
        assert_eq!(c.admins.len(), 1);
        assert_eq!(c.muc.unwrap().creation, RoomCreation::Admins);
        let p = load("admins = ['hub.lan', 3]").unwrap_err();
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(p.iter().all(|p| p.key == "admins"), "{p:?}");
    }

    #[test]
    fn defaults_serve_localhost() {
        let c = load("").unwrap();
        assert_eq!(c.domain.as_str(), "localhost");
        assert_eq!(c.c2s_listen.len(), 2);
        assert!(c.c2s_listen_is_default);
        assert_eq!(c.xml.max_stanza_size, 262144);
        assert_eq!(c.data_dir, PathBuf::from("./wrenhub-data"));
    }

    #[test]
    fn every_problem_is_named_with_its_key_and_fix() {
        let problems = load(
            "domain = 'bad domain'\nmax_sesions = 3\nmax_stanza_size = 1\nlog_level = 'loud'\n\
             c2s_listen = ['nope']\nc2s_idle_timeout = 'long'",
        )
        .unwrap_err();
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["max_sesions", "domain", "log_level", "c2s_listen", "max_stanza_size", "c2s_idle_timeout"]);
        assert!(problems[0].fix.contains("max_sessions"));
        assert!(problems.iter().all(|p| !p.fix.is_empty()));
    }

    #[test]
    fn board_profiles_apply_under_the_file_and_flags() {
        let o = Overrides { board: Some("openwrt-router".into()), ..Overrides::default() };
        let c = Config::from_table("max_sessions = 64".parse().unwrap(), &o).unwrap();
        assert_eq!(c.max_sessions, 64, "the file wins over the profile");
        assert_eq!(c.xml.max_stanza_size, 32768, "the profile fills in the rest");
        let c = Config::from_table("board = 'raspberry-pi-zero'".parse().unwrap(), &Overrides::default()).unwrap();
        assert_eq!(c.max_sessions, 256);
        for (name, _) in crate::boards::PROFILES {
            let o = Overrides { board: Some(name.to_string()), ..Overrides::default() };
            assert!(Config::from_table(toml::Table::new(), &o).is_ok(), "{name}");
        }
        let bad = Overrides { board: Some("toaster".into()), ..Overrides::default() };
        assert_eq!(Config::from_table(toml::Table::new(), &bad).unwrap_err()[0].key, "--board");
    }

    #[test]
    fn flags_override_the_file() {
        let o = Overrides {
            domain: Some("Hub.LAN.".into()),
            c2s_listen: vec!["127.0.0.1:0".into()],
            data_dir: Some("/tmp/x".into()),
            log_level: Some("debug".into()),
            c2s_direct_tls_listen: vec![],
            component_listen: vec![],
            http_listen: vec![],
            board: None,
        };
        let c = Config::from_table("domain = 'a.b'\nc2s_listen = ['127.0.0.1:1']".parse().unwrap(), &o).unwrap();
        assert_eq!(c.domain.as_str(), "hub.lan");
        assert_eq!(c.c2s_listen, vec!["127.0.0.1:0".parse::<SocketAddr>().unwrap()]);
        assert!(!c.c2s_listen_is_default);
        assert_eq!(c.log_level, log::LevelFilter::Debug);
        let bad = Overrides { log_level: Some("x".into()), ..Overrides::default() };
        let p = Config::from_table(toml::Table::new(), &bad).unwrap_err();
        assert_eq!(p[0].key, "--log-level");
    }
}

#[cfg(test)]
mod readme {
    /// README's configuration table is generated from the same table the validation
    /// uses; this keeps the two in step.
    #[test]
    fn readme_lists_every_key_with_its_default_and_range() {
        let readme = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"));
        for (key, default, range) in super::key_table() {
            let row = format!("| `{key}` | {default} | {range} |");
            assert!(readme.contains(&row), "README.md lacks the row:\n{row}");
        }
    }
}
