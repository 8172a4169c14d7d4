//! The users file: `users: [{username, password}]` or, instead of the
//! plain password, `ha1_md5` and/or `ha1_sha256` (hex of
//! H(username:realm:password) for the configured realm).

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;
use switchboard_proto::support::yaml::{self, FileError};

use super::digest::Algorithm;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UsersFile {
    users: Vec<UserEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UserEntry {
    username: String,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    ha1_md5: Option<String>,
    #[serde(default)]
    ha1_sha256: Option<String>,
}

/// One user's secrets: HA1 per algorithm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserSecret {
    ha1_md5: Option<String>,
    ha1_sha256: Option<String>,
}

impl UserSecret {
    /// HA1 for `alg`, if known.
    pub fn ha1(&self, alg: Algorithm) -> Option<&str> {
        match alg {
            Algorithm::Md5 => self.ha1_md5.as_deref(),
            Algorithm::Sha256 => self.ha1_sha256.as_deref(),
        }
    }
}

/// All users, by username.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Users {
    users: HashMap<String, UserSecret>,
}

impl Users {
    /// Load and check a users file (errors as `FILE:LINE:COL: message`).
    pub fn load(path: &Path, realm: &str) -> Result<Users, FileError> {
        let file: UsersFile = yaml::from_path(path)?;
        Self::from_entries(file, realm, &path.display().to_string())
    }

    /// Parse from text (tests).
    pub fn from_yaml(name: &str, text: &str, realm: &str) -> Result<Users, FileError> {
        let file: UsersFile = yaml::from_str(name, text)?;
        Self::from_entries(file, realm, name)
    }

    fn from_entries(file: UsersFile, realm: &str, name: &str) -> Result<Users, FileError> {
        let mut users = HashMap::new();
        for u in file.users {
            if u.username.is_empty() {
                return Err(FileError::whole(name, "users: empty username"));
            }
            let secret = match (&u.password, &u.ha1_md5, &u.ha1_sha256) {
                (Some(p), None, None) => UserSecret {
                    ha1_md5: Some(Algorithm::Md5.ha1(&u.username, realm, p)),
                    ha1_sha256: Some(Algorithm::Sha256.ha1(&u.username, realm, p)),
                },
                (None, md5, sha) if md5.is_some() || sha.is_some() => UserSecret {
                    ha1_md5: md5.as_ref().map(|h| h.to_ascii_lowercase()),
                    ha1_sha256: sha.as_ref().map(|h| h.to_ascii_lowercase()),
                },
                _ => {
                    return Err(FileError::whole(
                        name,
                        format!(
                            "users.{}: give either password or ha1_md5/ha1_sha256",
                            u.username
                        ),
                    ));
                }
            };
            if users.insert(u.username.clone(), secret).is_some() {
                return Err(FileError::whole(
                    name,
                    format!("users: duplicate username {:?}", u.username),
                ));
            }
        }
        Ok(Users { users })
    }

    /// A user's secrets.
    pub fn get(&self, username: &str) -> Option<&UserSecret> {
        self.users.get(username)
    }

    /// Every user and their secrets, in no particular order (the users-file
    /// fuzz target writes them back to check the round trip).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &UserSecret)> {
        self.users
            .iter()
            .map(|(name, secret)| (name.as_str(), secret))
    }

    /// Number of users.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}
