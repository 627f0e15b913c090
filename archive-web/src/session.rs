//! Server-side sessions: an unguessable id in a cookie, everything else here.
//!
//! The id is 256 random bits; the table is keyed by its SHA-256, so the ids
//! themselves are never kept. A session ends after an idle time, after an absolute
//! lifetime, and at sign-out. Signing in always issues a new id and drops the old
//! one (no session fixation). Anonymous sessions exist only to carry the CSRF token
//! of the sign-in form (and a pending Microsoft sign-in); their number is bounded,
//! the oldest evicted first.

use std::collections::HashMap;
use std::sync::Mutex;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Duration, Utc};
use rand::RngCore;
use sha2::{Digest, Sha256};

/// How sessions behave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionConfig {
    /// A session unused this long ends.
    pub idle: Duration,
    /// A session ends this long after sign-in, used or not.
    pub absolute: Duration,
    /// Cookies carry `Secure` (and the `__Host-` prefix): set when serving TLS.
    pub secure_cookies: bool,
    /// Most sessions kept at once (signed-in and anonymous); the oldest anonymous
    /// ones go first.
    pub max_sessions: usize,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            idle: Duration::minutes(30),
            absolute: Duration::hours(12),
            secure_cookies: false,
            max_sessions: 100_000,
        }
    }
}

/// What a session holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The signed-in local user name (`None`: not signed in).
    pub user: Option<String>,
    /// How they signed in (`local`, `entra`).
    pub method: Option<&'static str>,
    /// The CSRF token every form and cookie-authenticated API write must carry.
    pub csrf: String,
    /// When the session began.
    pub created: DateTime<Utc>,
    /// When it was last used.
    pub last_seen: DateTime<Utc>,
}

/// The key a session is filed under: the SHA-256 of its id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionKey([u8; 32]);

impl SessionKey {
    /// The key of cookie value `id`.
    pub fn of(id: &str) -> SessionKey {
        SessionKey(Sha256::digest(id.as_bytes()).into())
    }
}

/// A fresh random token (256 bits, base64url).
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The session table.
#[derive(Debug)]
pub struct Sessions {
    config: SessionConfig,
    table: Mutex<HashMap<SessionKey, Session>>,
}

impl Sessions {
    /// An empty table.
    pub fn new(config: SessionConfig) -> Self {
        Self {
            config,
            table: Mutex::new(HashMap::new()),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SessionKey, Session>> {
        // A panic while holding the lock leaves a consistent map (no multi-step
        // update spans it), so a poisoned lock is taken over.
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn alive(&self, session: &Session, now: DateTime<Utc>) -> bool {
        now - session.last_seen < self.config.idle && now - session.created < self.config.absolute
    }

    fn insert(&self, session: Session, now: DateTime<Utc>) -> String {
        let id = random_token();
        let mut table = self.lock();
        if table.len() >= self.config.max_sessions {
            table.retain(|_, s| self.alive(s, now));
        }
        if table.len() >= self.config.max_sessions {
            let oldest = table
                .iter()
                .filter(|(_, s)| s.user.is_none())
                .min_by_key(|(_, s)| s.last_seen)
                .map(|(k, _)| *k);
            match oldest {
                Some(key) => {
                    table.remove(&key);
                }
                None => {
                    if let Some(key) = table
                        .iter()
                        .min_by_key(|(_, s)| s.last_seen)
                        .map(|(k, _)| *k)
                    {
                        table.remove(&key);
                    }
                }
            }
        }
        table.insert(SessionKey::of(&id), session);
        id
    }

    /// A new anonymous session (for the sign-in form's CSRF token); answers its id.
    pub fn create_anonymous(&self, now: DateTime<Utc>) -> (String, Session) {
        let session = Session {
            user: None,
            method: None,
            csrf: random_token(),
            created: now,
            last_seen: now,
        };
        (self.insert(session.clone(), now), session)
    }

    /// The live session of cookie value `id`, marked used at `now`; an ended one is
    /// dropped and answers `None`.
    pub fn get(&self, id: &str, now: DateTime<Utc>) -> Option<Session> {
        let key = SessionKey::of(id);
        let mut table = self.lock();
        let alive = table.get(&key).map(|s| self.alive(s, now))?;
        if !alive {
            table.remove(&key);
            return None;
        }
        let session = table.get_mut(&key)?;
        session.last_seen = now;
        Some(session.clone())
    }

    /// Signs `user` in: the session of `old_id` (if any) ends and a new one, with a new
    /// id and a new CSRF token, begins. Answers the new id.
    pub fn sign_in(
        &self,
        old_id: Option<&str>,
        user: &str,
        method: &'static str,
        now: DateTime<Utc>,
    ) -> (String, Session) {
        if let Some(old) = old_id {
            self.remove(old);
        }
        let session = Session {
            user: Some(user.to_string()),
            method: Some(method),
            csrf: random_token(),
            created: now,
            last_seen: now,
        };
        (self.insert(session.clone(), now), session)
    }

    /// Ends the session of cookie value `id`.
    pub fn remove(&self, id: &str) {
        self.lock().remove(&SessionKey::of(id));
    }

    /// Ends every session of `user` (their account was disabled or removed).
    pub fn remove_user(&self, user: &str) {
        self.lock().retain(|_, s| s.user.as_deref() != Some(user));
    }

    /// Sessions kept now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no session is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The session cookie's name (`__Host-` prefixed under TLS).
    pub fn cookie_name(&self) -> &'static str {
        if self.config.secure_cookies {
            "__Host-archive_session"
        } else {
            "archive_session"
        }
    }

    /// The `Set-Cookie` value carrying session id `id`.
    pub fn set_cookie(&self, id: &str) -> String {
        let secure = if self.config.secure_cookies {
            "; Secure"
        } else {
            ""
        };
        format!(
            "{}={id}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}{secure}",
            self.cookie_name(),
            self.config.absolute.num_seconds()
        )
    }

    /// The `Set-Cookie` value that deletes the session cookie.
    pub fn clear_cookie(&self) -> String {
        let secure = if self.config.secure_cookies {
            "; Secure"
        } else {
            ""
        };
        format!(
            "{}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0{secure}",
            self.cookie_name()
        )
    }

    /// The session id in a `Cookie` header, if present.
    pub fn id_from_cookies<'a>(&self, cookies: impl Iterator<Item = &'a str>) -> Option<String> {
        let name = self.cookie_name();
        cookies
            .flat_map(|header| header.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.trim().to_string())
            .filter(|v| !v.is_empty() && v.len() <= 128)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(minutes: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + minutes * 60, 0).unwrap_or_default()
    }

    #[test]
    fn sessions_end_when_idle_and_after_their_lifetime() {
        let sessions = Sessions::new(SessionConfig::default());
        let (id, _) = sessions.sign_in(None, "alice", "local", at(0));
        assert!(sessions.get(&id, at(29)).is_some());
        assert!(
            sessions.get(&id, at(58)).is_some(),
            "used at 29: still alive"
        );
        assert!(sessions.get(&id, at(89)).is_none(), "idle 31 minutes");
        let (id, _) = sessions.sign_in(None, "alice", "local", at(0));
        let mut t = 0;
        while t < 12 * 60 - 20 {
            t += 20;
            assert!(sessions.get(&id, at(t)).is_some(), "minute {t}");
        }
        assert!(
            sessions.get(&id, at(12 * 60)).is_none(),
            "absolute lifetime"
        );
    }

    #[test]
    fn signing_in_rotates_the_id_and_the_csrf_token() {
        let sessions = Sessions::new(SessionConfig::default());
        let (anon, before) = sessions.create_anonymous(at(0));
        let (id, after) = sessions.sign_in(Some(&anon), "alice", "local", at(1));
        assert_ne!(anon, id);
        assert_ne!(before.csrf, after.csrf);
        assert!(sessions.get(&anon, at(1)).is_none(), "the old id is dead");
        assert_eq!(
            sessions.get(&id, at(1)).and_then(|s| s.user).as_deref(),
            Some("alice")
        );
    }

    #[test]
    fn anonymous_sessions_are_bounded() {
        let sessions = Sessions::new(SessionConfig {
            max_sessions: 10,
            ..SessionConfig::default()
        });
        let (signed, _) = sessions.sign_in(None, "alice", "local", at(0));
        for _ in 0..50 {
            sessions.create_anonymous(at(1));
        }
        assert!(sessions.len() <= 10);
        assert!(
            sessions.get(&signed, at(1)).is_some(),
            "signed-in sessions survive a flood"
        );
    }

    #[test]
    fn cookies_are_http_only_lax_and_secure_under_tls() {
        let plain = Sessions::new(SessionConfig::default());
        let c = plain.set_cookie("abc");
        assert!(
            c.starts_with("archive_session=abc;")
                && c.contains("HttpOnly")
                && c.contains("SameSite=Lax")
        );
        assert!(!c.contains("Secure"));
        let tls = Sessions::new(SessionConfig {
            secure_cookies: true,
            ..SessionConfig::default()
        });
        assert!(
            tls.set_cookie("abc")
                .starts_with("__Host-archive_session=abc;")
        );
        assert!(tls.set_cookie("abc").contains("; Secure"));
        assert_eq!(
            tls.id_from_cookies(["a=1; __Host-archive_session=xyz"].into_iter())
                .as_deref(),
            Some("xyz")
        );
        assert_eq!(
            tls.id_from_cookies(["archive_session=xyz"].into_iter()),
            None
        );
    }
}
