//! XEP-0484 FAST tokens: per account and client (the SASL2 `<user-agent id>`),
//! at most two live tokens (the one in use and a rotated one the client may not
//! have received yet, §3.4). A token is kept as the SHA-256 of its text, which is
//! all its HMAC needs (see `sasl/fast.rs`). Every change of the account record
//! (password, disabled) revokes them all (`Store::put_account`).

use super::{db_err, Store, StoreError};
use crate::jid::BareJid;
use redb::{ReadableDatabase, ReadableTable, TableDefinition};

/// (account, user-agent id) → up to two [`FastToken`]s.
const FAST_TOKENS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("fast_tokens");

/// One issued token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FastToken {
    /// The HT mechanism it was issued for (XEP-0484 §3.3: bound to it).
    pub mechanism: u8,
    /// Unix seconds.
    pub expiry: u64,
    /// SHA-256 of the token text.
    pub key: [u8; 32],
}

const RECORD: usize = 1 + 8 + 32;

fn encode(tokens: &[FastToken]) -> Vec<u8> {
    let mut out = Vec::with_capacity(tokens.len() * RECORD);
    for t in tokens {
        out.push(t.mechanism);
        out.extend_from_slice(&t.expiry.to_be_bytes());
        out.extend_from_slice(&t.key);
    }
    out
}

fn decode(bytes: &[u8]) -> Vec<FastToken> {
    bytes
        .chunks_exact(RECORD)
        .map(|r| {
            let mut expiry = [0u8; 8];
            expiry.copy_from_slice(&r[1..9]);
            let mut key = [0u8; 32];
            key.copy_from_slice(&r[9..]);
            FastToken { mechanism: r[0], expiry: u64::from_be_bytes(expiry), key }
        })
        .collect()
}

impl Store {
    pub(super) fn create_fast_token_table(txn: &redb::WriteTransaction) -> Result<(), StoreError> {
        txn.open_table(FAST_TOKENS).map_err(db_err)?;
        Ok(())
    }

    /// Revokes every token of an account (account change or deletion).
    pub(super) fn delete_fast_tokens_of(txn: &redb::WriteTransaction, owner: &BareJid) -> Result<(), StoreError> {
        let mut table = txn.open_table(FAST_TOKENS).map_err(db_err)?;
        for agent in super::keys_of(&table, owner)? {
            table.remove((owner.as_str(), agent.as_str())).map_err(db_err)?;
        }
        Ok(())
    }

    /// The live tokens of one client of an account.
    pub fn fast_tokens(&self, owner: &BareJid, agent: &str) -> Result<Vec<FastToken>, StoreError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let table = txn.open_table(FAST_TOKENS).map_err(db_err)?;
        Ok(table.get((owner.as_str(), agent)).map_err(db_err)?.map(|v| decode(v.value())).unwrap_or_default())
    }

    /// Replaces the tokens of one client (none: forgets the client). A new client
    /// beyond `max_agents` makes room by forgetting the one whose tokens expire
    /// first. An effect: durable before the stream's answer goes out.
    pub fn put_fast_tokens(
        &self,
        owner: &BareJid,
        agent: &str,
        tokens: &[FastToken],
        max_agents: usize,
    ) -> Result<(), StoreError> {
        let txn = self.begin_effect()?;
        {
            let mut table = txn.open_table(FAST_TOKENS).map_err(db_err)?;
            if tokens.is_empty() {
                table.remove((owner.as_str(), agent)).map_err(db_err)?;
            } else {
                let known = table.get((owner.as_str(), agent)).map_err(db_err)?.is_some();
                if !known {
                    let mut agents = Vec::new();
                    for row in table.range((owner.as_str(), "")..).map_err(db_err)? {
                        let (k, v) = row.map_err(db_err)?;
                        if k.value().0 != owner.as_str() {
                            break;
                        }
                        let last = decode(v.value()).iter().map(|t| t.expiry).max().unwrap_or(0);
                        agents.push((last, k.value().1.to_string()));
                    }
                    agents.sort();
                    let excess = (agents.len() + 1).saturating_sub(max_agents.max(1));
                    for (_, a) in agents.into_iter().take(excess) {
                        table.remove((owner.as_str(), a.as_str())).map_err(db_err)?;
                    }
                }
                table.insert((owner.as_str(), agent), encode(tokens).as_slice()).map_err(db_err)?;
            }
        }
        self.commit_effect(txn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sasl::scram::ScramRecord;
    use crate::store::Account;

    fn token(expiry: u64, k: u8) -> FastToken {
        FastToken { mechanism: 1, expiry, key: [k; 32] }
    }

    #[test]
    fn tokens_are_kept_per_client_bounded_per_account_and_revoked_by_an_account_change() {
        let store = Store::in_memory().unwrap();
        let jid: BareJid = "juliet@localhost".parse().unwrap();
        store
            .put_account(&jid, &Account { scram: ScramRecord::derive("pw", vec![1; 16], 4096), disabled: false })
            .unwrap();
        store.put_fast_tokens(&jid, "phone", &[token(30, 1), token(20, 2)], 2).unwrap();
        assert_eq!(store.fast_tokens(&jid, "phone").unwrap(), vec![token(30, 1), token(20, 2)]);
        store.put_fast_tokens(&jid, "laptop", &[token(10, 3)], 2).unwrap();
        // A third client forgets the one that expires first (the laptop).
        store.put_fast_tokens(&jid, "tablet", &[token(40, 4)], 2).unwrap();
        assert!(store.fast_tokens(&jid, "laptop").unwrap().is_empty());
        assert_eq!(store.fast_tokens(&jid, "phone").unwrap().len(), 2);
        // A password change revokes them all.
        store
            .put_account(&jid, &Account { scram: ScramRecord::derive("new", vec![2; 16], 4096), disabled: false })
            .unwrap();
        assert!(store.fast_tokens(&jid, "phone").unwrap().is_empty());
        assert!(store.fast_tokens(&jid, "tablet").unwrap().is_empty());
    }
}
