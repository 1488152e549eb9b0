//! Board profiles (`boards/<name>/wrenhub.toml`), built into the binary so that
//! `wrenhub serve --board NAME` works on a board that has only the one file. A
//! profile is a config file of limits sized to the board's RAM; keys of the user's
//! config and flags override it.

/// Every profile: (name, TOML text).
pub const PROFILES: &[(&str, &str)] = &[
    ("raspberry-pi-zero", include_str!("../boards/raspberry-pi-zero/wrenhub.toml")),
    ("raspberry-pi-4", include_str!("../boards/raspberry-pi-4/wrenhub.toml")),
    ("openwrt-router", include_str!("../boards/openwrt-router/wrenhub.toml")),
    ("nas", include_str!("../boards/nas/wrenhub.toml")),
];

/// The profile text of a board.
pub fn profile(name: &str) -> Option<&'static str> {
    PROFILES.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
}

/// The names, for error messages.
pub fn names() -> String {
    PROFILES.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
}
