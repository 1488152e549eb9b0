//! The pieces of the store's own binary records (a group-chat room, a PEP node):
//! u16-length-prefixed byte strings, and a reader that gives `None` at the first
//! thing that is not there.

/// Appends `b` with its u16 length (cut to 65 535 bytes).
pub fn put(out: &mut Vec<u8>, b: &[u8]) {
    let b = &b[..b.len().min(usize::from(u16::MAX))];
    out.extend_from_slice(&(b.len() as u16).to_be_bytes());
    out.extend_from_slice(b);
}

/// Reads a record front to back.
pub struct Reader<'a>(pub &'a [u8]);

impl<'a> Reader<'a> {
    pub fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    pub fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    /// A byte string written by [`put`].
    pub fn bytes(&mut self) -> Option<&'a [u8]> {
        let len = u16::from_be_bytes(self.take(2)?.try_into().ok()?);
        self.take(usize::from(len))
    }

    pub fn string(&mut self) -> Option<String> {
        String::from_utf8(self.bytes()?.to_vec()).ok()
    }
}
