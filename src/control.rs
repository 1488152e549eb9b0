//! The control socket: how `wrenhub user …` reaches a running server. redb allows
//! one process per database, so while the server runs it owns the store and the
//! CLI talks to it over a Unix socket in the data dir (mode 0600, in a 0700
//! directory: owner only). The CLI derives the SCRAM keys itself, so neither the
//! password nor a PBKDF2 run ever reaches the server's event loop.
//!
//! Protocol: one request line, one answer line (`OK …` or `ERR …`).
//! `PUT <jid> <hex record>` · `DEL <jid>` · `GET <jid>` · `DISABLE <jid>` ·
//! `ENABLE <jid>` · `LIST`.

use crate::jid::BareJid;
use crate::store::{Account, Store};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

pub const SOCKET_NAME: &str = "control.sock";

/// The longest request line accepted (a record is ~130 bytes hex-doubled).
const MAX_LINE: usize = 4096;

pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join(SOCKET_NAME)
}

/// What a request asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Request {
    Put(BareJid, Account),
    Del(BareJid),
    Get(BareJid),
    /// Disables (true) or enables (false) an account; its sessions end on disable.
    SetDisabled(BareJid, bool),
    List,
}

impl Request {
    pub fn encode(&self) -> String {
        match self {
            Request::Put(j, a) => format!("PUT {j} {}\n", hex(&a.encode())),
            Request::Del(j) => format!("DEL {j}\n"),
            Request::Get(j) => format!("GET {j}\n"),
            Request::SetDisabled(j, true) => format!("DISABLE {j}\n"),
            Request::SetDisabled(j, false) => format!("ENABLE {j}\n"),
            Request::List => "LIST\n".to_string(),
        }
    }

    pub fn parse(line: &str) -> Result<Request, String> {
        let mut parts = line.trim_end().split(' ');
        let verb = parts.next().unwrap_or_default();
        let jid = |p: Option<&str>| -> Result<BareJid, String> {
            p.ok_or("missing JID")?.parse::<BareJid>().map_err(|e| e.to_string())
        };
        match verb {
            "PUT" => {
                let j = jid(parts.next())?;
                let bytes = unhex(parts.next().ok_or("missing record")?).ok_or("bad record")?;
                let account = Account::decode(&bytes).map_err(|e| e.to_string())?;
                Ok(Request::Put(j, account))
            }
            "DEL" => Ok(Request::Del(jid(parts.next())?)),
            "GET" => Ok(Request::Get(jid(parts.next())?)),
            "DISABLE" => Ok(Request::SetDisabled(jid(parts.next())?, true)),
            "ENABLE" => Ok(Request::SetDisabled(jid(parts.next())?, false)),
            "LIST" => Ok(Request::List),
            _ => Err(format!("unknown request {verb:?}")),
        }
    }

    /// Carries the request out on a store (the server's, or the CLI's own when no
    /// server runs). Returns the answer text after `OK `.
    pub fn apply(self, store: &Store) -> Result<String, String> {
        match self {
            Request::Put(j, a) => store.put_account(&j, &a).map(|_| format!("stored {j}")).map_err(|e| e.to_string()),
            Request::Del(j) => match store.delete_account(&j) {
                Ok(Some(_)) => Ok(format!("deleted {j}")),
                Ok(None) => Err(format!("no account {j}")),
                Err(e) => Err(e.to_string()),
            },
            Request::Get(j) => match store.account(&j) {
                Ok(Some(_)) => Ok("exists".into()),
                Ok(None) => Ok("absent".into()),
                Err(e) => Err(e.to_string()),
            },
            Request::SetDisabled(j, disabled) => match store.account(&j) {
                Ok(Some(mut a)) => {
                    a.disabled = disabled;
                    store.put_account(&j, &a).map_err(|e| e.to_string())?;
                    Ok(format!("{} {j}", if disabled { "disabled" } else { "enabled" }))
                }
                Ok(None) => Err(format!("no account {j}")),
                Err(e) => Err(e.to_string()),
            },
            Request::List => store.accounts().map(|v| v.join(" ")).map_err(|e| e.to_string()),
        }
    }
}

/// Sends a request to a running server; `None` when no server listens.
pub fn send(data_dir: &Path, request: &Request) -> Option<Result<String, String>> {
    let mut stream = UnixStream::connect(socket_path(data_dir)).ok()?;
    let answer = (|| -> std::io::Result<String> {
        stream.write_all(request.encode().as_bytes())?;
        let mut line = String::new();
        BufReader::new(&stream).take(MAX_LINE as u64 * 16).read_line(&mut line)?;
        Ok(line)
    })();
    Some(match answer {
        Ok(line) => match line.trim_end().split_once(' ').unwrap_or((line.trim_end(), "")) {
            ("OK", rest) => Ok(rest.to_string()),
            ("ERR", rest) => Err(rest.to_string()),
            _ => Err("the server gave no answer".into()),
        },
        Err(e) => Err(format!("control socket: {e}")),
    })
}

/// Reads one request line from a connected client, bounded.
pub fn read_request(line: &str) -> Result<Request, String> {
    if line.len() > MAX_LINE {
        return Err("request too long".into());
    }
    Request::parse(line)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sasl::scram::ScramRecord;

    #[test]
    fn requests_round_trip() {
        let j: BareJid = "a@b".parse().unwrap();
        let a = Account { scram: ScramRecord::derive("p", vec![3; 16], 4096), disabled: true };
        for r in [
            Request::Put(j.clone(), a),
            Request::Del(j.clone()),
            Request::Get(j.clone()),
            Request::SetDisabled(j, true),
            Request::List,
        ] {
            assert_eq!(Request::parse(&r.encode()).unwrap(), r);
        }
        assert!(Request::parse("PUT a@b zz").is_err());
        assert!(Request::parse("RM a@b").is_err());
    }
}
