//! Local user names: what a valid name looks like, and how a synchronised user's
//! name is derived from their mail address.
//!
//! A name is the owner of an archive, so it never changes once given: a directory
//! user keeps their name when renamed. New users get the local part of their primary
//! address (`john.smith`); when that is taken, `john.smith-2`, `john.smith-3`, ...
//! Users created in the same sync are named in order of address then object id, so
//! the outcome does not depend on the order Graph lists them in.

use std::collections::HashSet;

/// Longest accepted name.
pub const MAX_NAME_LEN: usize = 64;

/// Longest base derived from an address (room left for a `-N` suffix).
const MAX_BASE_LEN: usize = 48;

/// Checks that `name` is usable as a local user name: 1 to 64 characters, lower-case
/// ASCII letters, digits, `.`, `_` and `-`, starting with a letter or digit.
///
/// ```
/// use directory_sync::validate_name;
/// assert!(validate_name("john.smith-2").is_ok());
/// assert!(validate_name("John").is_err());
/// ```
pub fn validate_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("the name is empty".into());
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!("the name is longer than {MAX_NAME_LEN} characters"));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "the name contains {bad:?}: use lower-case letters, digits, '.', '_' and '-'"
        ));
    }
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err("the name must start with a letter or a digit".into());
    }
    Ok(())
}

/// The name a user with primary address `address` would like: its local part,
/// lower-cased, with other characters than letters, digits, `.`, `_` and `-` turned
/// into `-` (`user` when nothing usable remains).
///
/// ```
/// use directory_sync::base_name;
/// assert_eq!(base_name("John.Smith@contoso.com"), "john.smith");
/// assert_eq!(base_name("jöhn+news@contoso.com"), "j-hn-news");
/// ```
pub fn base_name(address: &str) -> String {
    let local = address.rsplit_once('@').map_or(address, |(l, _)| l);
    let mut base = String::with_capacity(local.len());
    for c in local.chars().flat_map(char::to_lowercase) {
        let c = if c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-') {
            c
        } else {
            '-'
        };
        if c == '-' && base.ends_with('-') {
            continue;
        }
        base.push(c);
    }
    base.truncate(MAX_BASE_LEN);
    let trimmed = base.trim_matches(|c: char| !c.is_ascii_alphanumeric());
    if trimmed.is_empty() {
        "user".to_owned()
    } else {
        trimmed.to_owned()
    }
}

/// Hands out unique names, given the names already taken.
#[derive(Debug, Clone, Default)]
pub struct NameAllocator {
    taken: HashSet<String>,
}

impl NameAllocator {
    /// An allocator that will never hand out any of `taken`.
    pub fn new<I, S>(taken: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            taken: taken.into_iter().map(Into::into).collect(),
        }
    }

    /// A new unique name for a user with primary address `address`: the base name, or
    /// the base name with the smallest free suffix `-2`, `-3`, ...
    pub fn allocate(&mut self, address: &str) -> String {
        let base = base_name(address);
        let mut candidate = base.clone();
        let mut n: u64 = 2;
        while self.taken.contains(&candidate) {
            candidate = format!("{base}-{n}");
            n += 1;
        }
        self.taken.insert(candidate.clone());
        candidate
    }

    /// Whether `name` is taken.
    pub fn is_taken(&self, name: &str) -> bool {
        self.taken.contains(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn base_names() {
        for (address, expected) in [
            ("john.smith@contoso.com", "john.smith"),
            ("John.Smith@Fabrikam.com", "john.smith"),
            ("a+b@x.com", "a-b"),
            ("..a..@x.com", "a"),
            ("+++@x.com", "user"),
            ("ÅSA@x.com", "sa"),
            ("no-at-sign", "no-at-sign"),
            ("o'brien@x.com", "o-brien"),
        ] {
            assert_eq!(base_name(address), expected, "{address}");
            assert!(validate_name(&base_name(address)).is_ok());
        }
        let long = format!("{}@x.com", "a".repeat(200));
        assert_eq!(base_name(&long).len(), MAX_BASE_LEN);
    }

    #[test]
    fn collisions_get_suffixes() {
        let mut names = NameAllocator::new(["john.smith"]);
        assert_eq!(names.allocate("john.smith@fabrikam.com"), "john.smith-2");
        assert_eq!(names.allocate("John.Smith@northwind.com"), "john.smith-3");
        assert_eq!(names.allocate("jane@x.com"), "jane");
    }

    #[test]
    fn a_suffixed_looking_address_does_not_steal_a_suffix() {
        let mut names = NameAllocator::new(Vec::<String>::new());
        assert_eq!(names.allocate("a@x.com"), "a");
        assert_eq!(names.allocate("a-2@x.com"), "a-2");
        assert_eq!(names.allocate("a@y.com"), "a-3");
    }

    #[test]
    fn invalid_names() {
        for bad in ["", "-a", ".a", "A", "a b", "a/b", "a@b", &"a".repeat(65)] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn allocated_names_are_valid_and_unique(
            taken in proptest::collection::vec("[a-z0-9][a-z0-9.-]{0,8}", 0..10),
            addresses in proptest::collection::vec(".{0,20}", 0..30),
        ) {
            let mut names = NameAllocator::new(taken.iter().cloned());
            let mut given = HashSet::new();
            for a in &addresses {
                let n = names.allocate(a);
                prop_assert!(validate_name(&n).is_ok(), "{n:?} from {a:?}");
                prop_assert!(!taken.contains(&n), "{n} was taken");
                prop_assert!(given.insert(n.clone()), "{n} given twice");
            }
        }
    }
}
