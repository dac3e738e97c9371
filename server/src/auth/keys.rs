//! Loading and checking API keys.

use std::{
    fs,
    io::{self, Write},
    path::{Path, PathBuf},
};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{Principal, Role};
use crate::domain::OrderId;

/// Shorter keys are refused: they could be guessed.
pub const MIN_KEY_CHARS: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum KeyConfigError {
    #[error(
        "{source_name}: entry {index} is not ROLE=KEY (roles: admin, service, ingest, viewer:<order-id>)"
    )]
    Malformed { source_name: String, index: usize },
    #[error(
        "{source_name}: entry {index} has unknown role {role:?} (roles: admin, service, ingest, viewer:<order-id>)"
    )]
    UnknownRole {
        source_name: String,
        index: usize,
        role: String,
    },
    #[error(
        "{source_name}: entry {index}: the key must be at least {MIN_KEY_CHARS} printable characters without spaces"
    )]
    WeakKey { source_name: String, index: usize },
    #[error("{source_name}: entry {index}: the same key is configured twice")]
    Duplicate { source_name: String, index: usize },
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot create the admin key file {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
}

struct Entry {
    digest: [u8; 32],
    principal: Principal,
}

/// The configured keys, as digests.
#[derive(Default)]
pub struct ApiKeys {
    entries: Vec<Entry>,
}

impl std::fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKeys")
            .field("count", &self.entries.len())
            .finish()
    }
}

/// Where keys come from; see `Config`.
#[derive(Debug, Clone, Default)]
pub struct KeySources {
    /// `ROLE=KEY` entries separated by commas (`CENTRALINO_API_KEYS`).
    pub inline: Option<String>,
    /// A file of `ROLE=KEY` lines; `#` starts a comment (`CENTRALINO_API_KEYS_FILE`).
    pub file: Option<PathBuf>,
    /// A file holding one admin key (`CENTRALINO_ADMIN_KEY_FILE`); created with
    /// a fresh key when no key is configured at all.
    pub admin_key_file: Option<PathBuf>,
}

/// What loading did, for the start-up log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bootstrap {
    /// Keys came from configuration only.
    Configured,
    /// No key was configured: a new admin key was written here.
    CreatedAdminKey(PathBuf),
}

impl ApiKeys {
    pub fn load(sources: &KeySources) -> Result<(Self, Bootstrap), KeyConfigError> {
        let mut keys = ApiKeys::default();
        if let Some(inline) = &sources.inline {
            keys.add_entries("CENTRALINO_API_KEYS", inline.split(','))?;
        }
        if let Some(path) = &sources.file {
            let text = fs::read_to_string(path).map_err(|source| KeyConfigError::Read {
                path: path.clone(),
                source,
            })?;
            let lines = text
                .lines()
                .map(|line| line.split('#').next().unwrap_or(""));
            keys.add_entries(&path.display().to_string(), lines)?;
        }
        let mut bootstrap = Bootstrap::Configured;
        if let Some(path) = &sources.admin_key_file {
            match fs::read_to_string(path) {
                Ok(text) => {
                    keys.add_entries(
                        &path.display().to_string(),
                        std::iter::once(format!("admin={}", text.trim()).as_str()),
                    )?;
                }
                Err(err) if err.kind() == io::ErrorKind::NotFound && keys.entries.is_empty() => {
                    let key = generate_key();
                    write_secret_file(path, &key).map_err(|source| KeyConfigError::Write {
                        path: path.clone(),
                        source,
                    })?;
                    keys.push(&key, Role::Admin);
                    bootstrap = Bootstrap::CreatedAdminKey(path.clone());
                }
                Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(KeyConfigError::Read {
                        path: path.clone(),
                        source,
                    });
                }
            }
        }
        Ok((keys, bootstrap))
    }

    /// Parses `ROLE=KEY` entries; blank entries are skipped.
    fn add_entries<'a>(
        &mut self,
        source_name: &str,
        entries: impl Iterator<Item = &'a str>,
    ) -> Result<(), KeyConfigError> {
        for (i, entry) in entries.enumerate() {
            let index = i + 1;
            let entry = entry.trim();
            if entry.is_empty() {
                continue;
            }
            let source_name = source_name.to_owned();
            let (role, key) = entry.split_once('=').ok_or(KeyConfigError::Malformed {
                source_name: source_name.clone(),
                index,
            })?;
            let role = parse_role(role.trim()).ok_or_else(|| KeyConfigError::UnknownRole {
                source_name: source_name.clone(),
                index,
                role: role.trim().to_owned(),
            })?;
            let key = key.trim();
            if key.chars().count() < MIN_KEY_CHARS || !key.chars().all(|c| c.is_ascii_graphic()) {
                return Err(KeyConfigError::WeakKey { source_name, index });
            }
            if self.lookup(key).is_some() {
                return Err(KeyConfigError::Duplicate { source_name, index });
            }
            self.push(key, role);
        }
        Ok(())
    }

    fn push(&mut self, key: &str, role: Role) {
        let digest: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        let key_id = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
        self.entries.push(Entry {
            digest,
            principal: Principal { role, key_id },
        });
    }

    /// Adds a key made by this process (the webhook shim's own ingest key).
    pub fn add_generated(&mut self, key: &str, role: Role) {
        self.push(key, role);
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The principal of a presented key. Every entry is compared, in constant
    /// time, so timing tells nothing about which key nearly matched.
    pub fn lookup(&self, presented: &str) -> Option<Principal> {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut found = None;
        for entry in &self.entries {
            if bool::from(entry.digest.ct_eq(&digest)) {
                found = Some(entry.principal.clone());
            }
        }
        found
    }
}

fn parse_role(role: &str) -> Option<Role> {
    match role {
        "admin" => Some(Role::Admin),
        "service" => Some(Role::Service),
        "ingest" => Some(Role::Ingest),
        other => other
            .strip_prefix("viewer:")
            .and_then(|id| OrderId::parse(id).ok())
            .map(Role::Viewer),
    }
}

/// 256 random bits, URL-safe.
pub fn generate_key() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("ck_{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// Creates `path` readable by its owner only; never overwrites.
fn write_secret_file(path: &Path, contents: &str) -> io::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent)?;
    }
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    writeln!(file, "{contents}")?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_entries_parse_into_roles() {
        let order = OrderId::generate();
        let sources = KeySources {
            inline: Some(format!(
                "admin=aaaaaaaaaaaaaaaa1, service=bbbbbbbbbbbbbbbb1,viewer:{order}=cccccccccccccccc1"
            )),
            ..KeySources::default()
        };
        let (keys, bootstrap) = ApiKeys::load(&sources).unwrap();
        assert_eq!(bootstrap, Bootstrap::Configured);
        assert_eq!(keys.lookup("aaaaaaaaaaaaaaaa1").unwrap().role, Role::Admin);
        assert_eq!(
            keys.lookup("bbbbbbbbbbbbbbbb1").unwrap().role,
            Role::Service
        );
        assert_eq!(
            keys.lookup("cccccccccccccccc1").unwrap().role,
            Role::Viewer(order)
        );
        assert!(keys.lookup("aaaaaaaaaaaaaaaa").is_none());
    }

    #[test]
    fn a_keys_file_takes_one_entry_per_line_with_comments() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys");
        fs::write(
            &path,
            "# shim\ningest=iiiiiiiiiiiiiiii1  # the webhook shim\n\nservice=ssssssssssssssss1\n",
        )
        .unwrap();
        let sources = KeySources {
            file: Some(path),
            admin_key_file: Some(dir.path().join("admin.key")),
            ..KeySources::default()
        };
        let (keys, bootstrap) = ApiKeys::load(&sources).unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(keys.lookup("iiiiiiiiiiiiiiii1").unwrap().role, Role::Ingest);
        // Keys were configured, so no admin key is minted.
        assert_eq!(bootstrap, Bootstrap::Configured);
        assert!(!dir.path().join("admin.key").exists());
    }

    #[test]
    fn weak_unknown_and_duplicate_keys_are_refused() {
        for inline in [
            "admin=short",
            "root=aaaaaaaaaaaaaaaa1",
            "viewer:not-a-uuid=aaaaaaaaaaaaaaaa1",
            "admin=aaaaaaaaaaaaaaaa1,service=aaaaaaaaaaaaaaaa1",
            "aaaaaaaaaaaaaaaa1",
        ] {
            let sources = KeySources {
                inline: Some(inline.to_owned()),
                ..KeySources::default()
            };
            assert!(ApiKeys::load(&sources).is_err(), "{inline}");
        }
    }

    #[test]
    fn a_fresh_start_creates_a_private_admin_key_file_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin.key");
        let sources = KeySources {
            admin_key_file: Some(path.clone()),
            ..KeySources::default()
        };
        let (keys, bootstrap) = ApiKeys::load(&sources).unwrap();
        assert_eq!(bootstrap, Bootstrap::CreatedAdminKey(path.clone()));
        let key = fs::read_to_string(&path).unwrap();
        assert_eq!(keys.lookup(key.trim()).unwrap().role, Role::Admin);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // The second start reads the same key instead of making another.
        let (again, bootstrap) = ApiKeys::load(&sources).unwrap();
        assert_eq!(bootstrap, Bootstrap::Configured);
        assert!(again.lookup(key.trim()).is_some());
    }
}
