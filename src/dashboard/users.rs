//! The people who use the dashboard: names, roles and argon2id password hashes.

use crate::store;
use crate::store::dashboard::CreateUserOutcome;
use argon2::password_hash::SaltString;
use argon2::password_hash::rand_core::OsRng;
use argon2::{Argon2, PasswordHash, PasswordHasher, PasswordVerifier};
use sqlx::PgPool;

/// Shortest password `vigil user add` accepts.
pub(crate) const MIN_PASSWORD_CHARS: usize = 12;
/// Longest password accepted anywhere: hashing is deliberately slow, unbounded input is not.
pub(crate) const MAX_PASSWORD_BYTES: usize = 1024;

pub use crate::store::dashboard::Role;

/// A login name: 1-64 of `A-Z a-z 0-9 . _ @ -`, so it is safe in an audit actor and a log line.
pub(crate) fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._@-".contains(&b))
}

/// An argon2id hash (PHC string, random salt, the crate's recommended parameters).
pub(crate) fn hash_password(password: &str) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("Failed to hash the password: {e}"))
}

/// Whether `password` matches `hash`; a malformed hash matches nothing.
pub(crate) fn verify_password(password: &str, hash: &str) -> bool {
    if password.len() > MAX_PASSWORD_BYTES {
        return false;
    }
    PasswordHash::new(hash).is_ok_and(|parsed| Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
}

/// Creates a user (`vigil user add`). Errors say what to fix.
pub async fn add(pool: &PgPool, name: &str, role: Role, password: &str) -> anyhow::Result<()> {
    if !valid_name(name) {
        anyhow::bail!("a user name is 1-64 characters of A-Z, a-z, 0-9, '.', '_', '@' or '-'");
    }
    if password.chars().count() < MIN_PASSWORD_CHARS {
        anyhow::bail!("the password must be at least {MIN_PASSWORD_CHARS} characters");
    }
    if password.len() > MAX_PASSWORD_BYTES {
        anyhow::bail!("the password must be at most {MAX_PASSWORD_BYTES} bytes");
    }
    let password = password.to_owned();
    let hash = tokio::task::spawn_blocking(move || hash_password(&password)).await??;
    match store::dashboard::create_user(pool, name, role, &hash).await? {
        CreateUserOutcome::Created => Ok(()),
        CreateUserOutcome::AlreadyExists => anyhow::bail!("user {name} already exists"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_and_nothing_else() {
        let hash = hash_password("correct horse battery staple").unwrap();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(!hash.contains("correct horse"));
        assert!(verify_password("correct horse battery staple", &hash));
        assert!(!verify_password("correct horse battery stapl", &hash));
        assert!(!verify_password("anything", "not a hash"));
    }

    #[test]
    fn roles_are_ordered_by_what_they_may_do() {
        assert!(Role::Viewer < Role::Responder && Role::Responder < Role::Admin);
        for r in [Role::Viewer, Role::Responder, Role::Admin] {
            assert_eq!(Role::parse(r.as_str()), Some(r));
        }
        assert_eq!(Role::parse("root"), None);
    }

    #[test]
    fn names_are_plain() {
        assert!(valid_name("ana.lopez@acme"));
        for bad in ["", "a b", "<script>", &"x".repeat(65), "user:admin"] {
            assert!(!valid_name(bad), "{bad:?}");
        }
    }
}
