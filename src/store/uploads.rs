//! Uploaded files (XEP-0363) on disk, beside the database: `uploads/<id>` holds a
//! file's bytes and `uploads/<id>.meta` its owner, size, type, name and time. A
//! PUT streams into `uploads/<id>.part`; only a complete, synced file is renamed
//! into place (after its `.meta`), so a file is whole or absent, and a crash
//! leaves at most a `.part` or a lone `.meta`, which the start-time scan removes.
//!
//! These functions block (file system calls): the HTTP task runs them through
//! `blocking`. The per-account usage they report is kept by the upload service.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Bytes of an id: 16 random bytes, base64url without padding.
pub const ID_LEN: usize = 22;

/// What is known of a stored file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileMeta {
    /// The bare JID that uploaded it.
    pub owner: String,
    pub size: u64,
    pub content_type: String,
    pub filename: String,
    /// Unix seconds when it was complete.
    pub created: u64,
}

impl FileMeta {
    /// One field per line; the file name last (it cannot hold a newline).
    fn encode(&self) -> String {
        format!(
            "wrenhub-upload 1\n{}\n{}\n{}\n{}\n{}\n",
            self.owner, self.size, self.created, self.content_type, self.filename
        )
    }

    fn decode(text: &str) -> Option<FileMeta> {
        let mut lines = text.lines();
        if lines.next()? != "wrenhub-upload 1" {
            return None;
        }
        let owner = lines.next()?.to_string();
        let size = lines.next()?.parse().ok()?;
        let created = lines.next()?.parse().ok()?;
        let content_type = lines.next()?.to_string();
        let filename = lines.next()?.to_string();
        Some(FileMeta { owner, size, content_type, filename, created })
    }
}

/// Is `id` an id this hub could have made (so that it can name a file safely)?
pub fn valid_id(id: &str) -> bool {
    id.len() == ID_LEN && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The uploads directory and its files' paths.
#[derive(Clone, Debug)]
pub struct UploadDir {
    dir: PathBuf,
}

impl UploadDir {
    pub fn in_data_dir(data_dir: &Path) -> UploadDir {
        UploadDir { dir: data_dir.join("uploads") }
    }

    pub fn data(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    fn meta_path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.meta"))
    }

    fn part(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.part"))
    }

    /// Creates the directory (owner only) if needed.
    pub fn create(&self) -> io::Result<()> {
        super::create_private_dir(&self.dir)
    }

    /// Every complete file, after removing what a crash or an interrupted PUT
    /// left (`.part` files, `.meta` without data, data without `.meta`).
    pub fn scan(&self) -> io::Result<Vec<(String, FileMeta)>> {
        self.create()?;
        let mut files = Vec::new();
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&self.dir)? {
            names.push(entry?.file_name().to_string_lossy().into_owned());
        }
        for name in &names {
            let (id, kind) = name.split_once('.').unwrap_or((name.as_str(), ""));
            let keep = match kind {
                "meta" => valid_id(id) && names.iter().any(|n| n == id),
                "" => valid_id(id) && names.iter().any(|n| *n == format!("{id}.meta")),
                _ => false,
            };
            if !keep {
                log::info!("uploads: removing the incomplete {name}");
                let _ = std::fs::remove_file(self.dir.join(name));
                continue;
            }
            if kind == "meta" {
                match self.meta(id) {
                    Some(meta) => files.push((id.to_string(), meta)),
                    None => {
                        log::warn!("uploads: {name} is unreadable; removing the file");
                        self.remove(id);
                    }
                }
            }
        }
        Ok(files)
    }

    /// The file's metadata, when it is complete.
    pub fn meta(&self, id: &str) -> Option<FileMeta> {
        if !valid_id(id) {
            return None;
        }
        FileMeta::decode(&std::fs::read_to_string(self.meta_path(id)).ok()?)
    }

    /// A slot's file exists already, complete or being written.
    pub fn taken(&self, id: &str) -> bool {
        self.meta_path(id).exists() || self.part(id).exists() || self.data(id).exists()
    }

    /// Opens the `.part` file of a new upload; fails if the slot was used.
    pub fn begin(&self, id: &str) -> io::Result<std::fs::File> {
        if !valid_id(id) || self.meta_path(id).exists() || self.data(id).exists() {
            return Err(io::ErrorKind::AlreadyExists.into());
        }
        std::fs::OpenOptions::new().write(true).create_new(true).open(self.part(id))
    }

    /// The `.part` file is complete and synced: its metadata goes in place, then
    /// the data, then the directory is synced.
    pub fn complete(&self, id: &str, meta: &FileMeta) -> io::Result<()> {
        let tmp = self.dir.join(format!("{id}.meta-new"));
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(meta.encode().as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, self.meta_path(id))?;
        std::fs::rename(self.part(id), self.data(id))?;
        std::fs::File::open(&self.dir)?.sync_all()
    }

    /// Drops an unfinished upload.
    pub fn abort(&self, id: &str) {
        let _ = std::fs::remove_file(self.part(id));
    }

    /// Removes every complete file `doomed` picks (expired ones, a deleted
    /// account's); returns what went, for the quotas.
    pub fn remove_where(&self, doomed: impl Fn(&FileMeta) -> bool) -> io::Result<Vec<FileMeta>> {
        let mut removed = Vec::new();
        for entry in std::fs::read_dir(&self.dir)? {
            let name = entry?.file_name().to_string_lossy().into_owned();
            let Some(id) = name.strip_suffix(".meta") else { continue };
            if let Some(meta) = self.meta(id).filter(|m| doomed(m)) {
                self.remove(id);
                removed.push(meta);
            }
        }
        Ok(removed)
    }

    /// Removes a file: data first, so no half is ever served.
    pub fn remove(&self, id: &str) {
        let _ = std::fs::remove_file(self.data(id));
        let _ = std::fs::remove_file(self.meta_path(id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(owner: &str) -> FileMeta {
        FileMeta {
            owner: owner.into(),
            size: 3,
            content_type: "text/plain".into(),
            filename: "a b.txt".into(),
            created: 7,
        }
    }

    #[test]
    fn a_file_is_whole_or_absent_and_the_scan_removes_leftovers() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = UploadDir::in_data_dir(tmp.path());
        dir.create().unwrap();
        let (a, b, c) = ("a".repeat(ID_LEN), "b".repeat(ID_LEN), "c".repeat(ID_LEN));
        let mut f = dir.begin(&a).unwrap();
        f.write_all(b"abc").unwrap();
        assert!(dir.begin(&a).is_err(), "one PUT at a time per slot");
        dir.complete(&a, &meta("juliet@hub")).unwrap();
        assert!(dir.begin(&a).is_err() && dir.taken(&a), "a slot is used once");
        assert_eq!(dir.meta(&a), Some(meta("juliet@hub")));
        assert_eq!(std::fs::read(dir.data(&a)).unwrap(), b"abc");
        // An interrupted PUT and a lone .meta (a crash between the renames).
        dir.begin(&b).unwrap();
        std::fs::write(dir.dir.join(format!("{c}.meta")), meta("romeo@hub").encode()).unwrap();
        std::fs::write(dir.dir.join("junk"), "x").unwrap();
        let files = dir.scan().unwrap();
        assert_eq!(files, vec![(a.clone(), meta("juliet@hub"))]);
        let mut left: Vec<String> = std::fs::read_dir(&dir.dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, vec![a.clone(), format!("{a}.meta")]);
        assert_eq!(dir.remove_where(|m| m.owner == "romeo@hub").unwrap(), vec![]);
        assert_eq!(dir.remove_where(|m| m.owner == "juliet@hub").unwrap(), vec![meta("juliet@hub")]);
        assert!(dir.meta(&a).is_none() && !dir.taken(&a));
        assert!(!valid_id("../../etc/passwd") && dir.meta("x/../y").is_none());
    }
}
