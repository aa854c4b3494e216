//! Basic-auth credentials: htpasswd lines (ingress-nginx's `auth-file`
//! Secret key `auth`) or a user → hash map (`auth-map`), parsed once when
//! the snapshot is built, and checked per request.
//!
//! Hashes as Apache's `htpasswd` writes them and nginx's `auth_basic`
//! reads them: bcrypt (`$2y$`, `$2b$`, `$2a$`; `htpasswd -B`), apr1
//! (Apache's MD5-crypt, `$apr1$`; `htpasswd -m`, its default) and the
//! glibc MD5-crypt it derives from (`$1$`), and SHA-1 (`{SHA}`;
//! `htpasswd -s`). Others (DES crypt, `{SSHA}`, plain text) are reported
//! and their lines skipped: a user whose line is skipped cannot log in.
//!
//! bcrypt is deliberately slow (milliseconds per check); the access stage
//! runs it on tokio's blocking pool so a burst of logins never stalls the
//! connections a worker thread serves.

use std::collections::HashMap;
use std::fmt;

use base64::Engine as _;
use md5::{Digest as _, Md5};

/// A password hash from an htpasswd line.
#[derive(Clone, PartialEq, Eq)]
pub enum PasswordHash {
    /// `$2y$…` (also `$2a$`, `$2b$`).
    Bcrypt(String),
    /// MD5-crypt with its magic (`$apr1$` or `$1$`), salt and hash.
    Md5Crypt {
        /// `$apr1$` or `$1$`.
        magic: &'static str,
        /// Up to 8 characters.
        salt: String,
        /// The 22-character encoded hash.
        hash: String,
    },
    /// `{SHA}` + base64 of the SHA-1 digest.
    Sha1([u8; 20]),
}

impl fmt::Debug for PasswordHash {
    // Never print hashes (logs, Debug of the snapshot).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Bcrypt(_) => "Bcrypt(..)",
            Self::Md5Crypt { .. } => "Md5Crypt(..)",
            Self::Sha1(_) => "Sha1(..)",
        })
    }
}

/// Why a hash is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HashError {
    /// A scheme nginx reads but Sluice does not (DES crypt, `{SSHA}`,
    /// `{PLAIN}`, SHA-crypt).
    #[error("unsupported password hash scheme (use htpasswd -B, -m or -s)")]
    Unsupported,
    /// The hash does not parse.
    #[error("malformed password hash")]
    Malformed,
}

impl PasswordHash {
    /// Parses a hash as written in an htpasswd line.
    pub fn parse(s: &str) -> Result<Self, HashError> {
        let s = s.trim();
        if s.starts_with("$2y$") || s.starts_with("$2b$") || s.starts_with("$2a$") {
            return if s.len() == 60 {
                Ok(Self::Bcrypt(s.to_owned()))
            } else {
                Err(HashError::Malformed)
            };
        }
        for magic in ["$apr1$", "$1$"] {
            if let Some(rest) = s.strip_prefix(magic) {
                let (salt, hash) = rest.split_once('$').ok_or(HashError::Malformed)?;
                if salt.len() > 8 || hash.len() != 22 {
                    return Err(HashError::Malformed);
                }
                return Ok(Self::Md5Crypt {
                    magic,
                    salt: salt.to_owned(),
                    hash: hash.to_owned(),
                });
            }
        }
        if let Some(b64) = s.strip_prefix("{SHA}") {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|_| HashError::Malformed)?;
            return bytes
                .try_into()
                .map(Self::Sha1)
                .map_err(|_| HashError::Malformed);
        }
        Err(HashError::Unsupported)
    }

    /// Whether `password` matches. bcrypt takes milliseconds (see the
    /// module docs); [`Self::is_slow`] says so.
    pub fn verify(&self, password: &[u8]) -> bool {
        match self {
            Self::Bcrypt(h) => bcrypt::verify(password, h).unwrap_or(false),
            Self::Md5Crypt { magic, salt, hash } => ct_eq(
                md5_crypt(password, salt.as_bytes(), magic).as_bytes(),
                hash.as_bytes(),
            ),
            Self::Sha1(want) => {
                let got = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, password);
                ct_eq(got.as_ref(), want)
            }
        }
    }

    /// Whether checking costs more than a few microseconds.
    pub fn is_slow(&self) -> bool {
        matches!(self, Self::Bcrypt(_))
    }
}

/// Equality in time independent of where the inputs differ.
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

const ITOA64: &[u8; 64] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// MD5-crypt (Poul-Henning Kamp's, as Apache's apr1 uses it with the
/// magic `$apr1$`): the 22-character encoded hash for `password` and
/// `salt` (at most 8 bytes used).
pub fn md5_crypt(password: &[u8], salt: &[u8], magic: &str) -> String {
    let salt = &salt[..salt.len().min(8)];
    let alt = {
        let mut c = Md5::new();
        c.update(password);
        c.update(salt);
        c.update(password);
        c.finalize()
    };
    let mut ctx = Md5::new();
    ctx.update(password);
    ctx.update(magic.as_bytes());
    ctx.update(salt);
    let mut left = password.len();
    while left > 0 {
        let n = left.min(16);
        ctx.update(&alt[..n]);
        left -= n;
    }
    let mut i = password.len();
    while i > 0 {
        if i & 1 == 1 {
            ctx.update([0u8]);
        } else {
            ctx.update(&password[..1]);
        }
        i >>= 1;
    }
    let mut fin: [u8; 16] = ctx.finalize().into();
    for round in 0..1000 {
        let mut c = Md5::new();
        if round & 1 == 1 {
            c.update(password);
        } else {
            c.update(fin);
        }
        if round % 3 != 0 {
            c.update(salt);
        }
        if round % 7 != 0 {
            c.update(password);
        }
        if round & 1 == 1 {
            c.update(fin);
        } else {
            c.update(password);
        }
        fin = c.finalize().into();
    }
    let mut out = String::with_capacity(22);
    let mut put = |v: u32, n: usize| {
        let mut v = v;
        for _ in 0..n {
            out.push(char::from(ITOA64[(v & 0x3f) as usize]));
            v >>= 6;
        }
    };
    let b = |i: usize| u32::from(fin[i]);
    for (x, y, z) in [(0, 6, 12), (1, 7, 13), (2, 8, 14), (3, 9, 15), (4, 10, 5)] {
        put(b(x) << 16 | b(y) << 8 | b(z), 4);
    }
    put(b(11), 2);
    out
}

/// The users of one Secret.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Htpasswd {
    users: HashMap<String, PasswordHash>,
}

/// A line of an htpasswd Secret that was skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedLine {
    /// The user (or the line number, for a line without `:`).
    pub user: String,
    /// Why.
    pub error: HashError,
}

impl Htpasswd {
    /// Parses htpasswd text (`user:hash` lines; blank lines and `#`
    /// comments skipped). The first line of a user wins, as in nginx.
    pub fn parse_file(text: &str) -> (Self, Vec<SkippedLine>) {
        let pairs = text
            .lines()
            .map(str::trim)
            .enumerate()
            .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
            .map(|(n, l)| match l.split_once(':') {
                Some((u, h)) => (u.to_owned(), h.to_owned()),
                None => (format!("line {}", n + 1), String::new()),
            });
        Self::from_pairs(pairs)
    }

    /// `auth-map`: each (key, value) is a user and its hash.
    pub fn from_pairs(
        pairs: impl IntoIterator<Item = (String, String)>,
    ) -> (Self, Vec<SkippedLine>) {
        let mut users = HashMap::new();
        let mut skipped = Vec::new();
        for (user, hash) in pairs {
            if hash.is_empty() {
                skipped.push(SkippedLine {
                    user,
                    error: HashError::Malformed,
                });
                continue;
            }
            match PasswordHash::parse(&hash) {
                Ok(h) => {
                    users.entry(user).or_insert(h);
                }
                Err(error) => skipped.push(SkippedLine { user, error }),
            }
        }
        (Self { users }, skipped)
    }

    /// The hash of `user`.
    pub fn get(&self, user: &str) -> Option<&PasswordHash> {
        self.users.get(user)
    }

    /// Number of users.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether there is no usable user.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apr1_and_md5_crypt_known_answers() {
        // Published vectors (Apache's htpasswd and glibc crypt).
        assert_eq!(
            md5_crypt(b"password", b"lZL6V/ci", "$apr1$"),
            "eIMz/iKDkbtys/uU7LEK00"
        );
        assert_eq!(
            md5_crypt(b"password", b"RandSalt", "$apr1$"),
            "PgCXHRrkpSt4cbyC2C6bm/"
        );
        let h = PasswordHash::parse("$apr1$lZL6V/ci$eIMz/iKDkbtys/uU7LEK00").unwrap();
        assert!(h.verify(b"password"));
        assert!(!h.verify(b"Password"));
    }

    #[test]
    fn sha1_and_bcrypt() {
        // htpasswd -nbs u password
        let h = PasswordHash::parse("{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=").unwrap();
        assert!(h.verify(b"password") && !h.verify(b"passwort"));
        let b = bcrypt::hash("secret", 4).unwrap();
        let h = PasswordHash::parse(&b).unwrap();
        assert!(h.is_slow() && h.verify(b"secret") && !h.verify(b"Secret"));
    }

    #[test]
    fn files_and_maps() {
        let (f, skipped) = Htpasswd::parse_file(
            "# comment\n\nalice:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\nbob:abJnggxhB/yWI\nbroken\n\
             alice:{SHA}AAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",
        );
        assert_eq!(f.len(), 1);
        assert!(
            f.get("alice").unwrap().verify(b"password"),
            "first line wins"
        );
        assert_eq!(
            skipped,
            vec![
                SkippedLine {
                    user: "bob".into(),
                    error: HashError::Unsupported
                },
                SkippedLine {
                    user: "line 5".into(),
                    error: HashError::Malformed
                },
            ]
        );
        assert_eq!(
            format!("{:?}", f.get("alice").unwrap()),
            "Sha1(..)",
            "hashes never printed"
        );
        let (m, _) = Htpasswd::from_pairs([(
            "carol".to_owned(),
            "$apr1$RandSalt$PgCXHRrkpSt4cbyC2C6bm/".to_owned(),
        )]);
        assert!(m.get("carol").unwrap().verify(b"password"));
    }
}
