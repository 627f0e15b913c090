//! Mail addresses of a directory user: `mail` and `proxyAddresses` turned into one
//! primary address and a set of aliases, lower-cased and deduplicated.
//!
//! Exchange keeps a user's addresses in `proxyAddresses` as `TYPE:value` entries:
//! `SMTP:` (upper case) marks the primary SMTP address, `smtp:` an alias, and other
//! types (`SIP:`, `X500:`, `x400:`, `EUM:`, ...) are not mail addresses at all.

/// A user's mail addresses, normalised.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MailAddresses {
    /// The primary address: `mail` when valid, else the `SMTP:` entry.
    pub primary: Option<String>,
    /// Every other SMTP address, lower-cased, deduplicated, sorted, without the primary.
    pub aliases: Vec<String>,
}

impl MailAddresses {
    /// The primary address followed by the aliases.
    pub fn all(&self) -> impl Iterator<Item = &str> {
        self.primary
            .as_deref()
            .into_iter()
            .chain(self.aliases.iter().map(String::as_str))
    }
}

/// An address trimmed and lower-cased, or `None` when it is not a plausible mail
/// address (`local@domain`, no whitespace or control characters, a domain without
/// empty labels).
///
/// ```
/// use directory_sync::normalize_address;
/// assert_eq!(normalize_address(" Adele.Vance@Contoso.com "), Some("adele.vance@contoso.com".into()));
/// assert_eq!(normalize_address("not an address"), None);
/// ```
pub fn normalize_address(raw: &str) -> Option<String> {
    let address = raw.trim();
    let (local, domain) = address.rsplit_once('@')?;
    if local.is_empty()
        || domain.is_empty()
        || address
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == ',' || c == ';')
        || domain.split('.').any(str::is_empty)
        || domain.contains(['@', '[', ']', '(', ')', '<', '>', '"', '\\'])
        || local.contains(['<', '>', '@'])
    {
        return None;
    }
    Some(address.to_lowercase())
}

/// The addresses of a user from Graph's `mail` and `proxyAddresses`.
///
/// The primary address is `mail` (or, when `mail` is missing or unusable, the first
/// `SMTP:` entry); aliases are all other `SMTP:`/`smtp:` entries (the prefix compared
/// without regard to case); other address types and unusable values are ignored.
///
/// ```
/// use directory_sync::mail_addresses;
/// let proxy = vec![
///     "SMTP:Adele.Vance@contoso.com".to_string(),
///     "smtp:adele@contoso.mail.onmicrosoft.com".to_string(),
///     "SIP:adele.vance@contoso.com".to_string(),
///     "smtp:ADELE@contoso.mail.onmicrosoft.com".to_string(),
/// ];
/// let a = mail_addresses(Some("adele.vance@contoso.com"), &proxy);
/// assert_eq!(a.primary.as_deref(), Some("adele.vance@contoso.com"));
/// assert_eq!(a.aliases, vec!["adele@contoso.mail.onmicrosoft.com".to_string()]);
/// ```
pub fn mail_addresses(mail: Option<&str>, proxy_addresses: &[String]) -> MailAddresses {
    let mut primary_entry: Option<String> = None;
    let mut others: Vec<String> = Vec::new();
    for entry in proxy_addresses {
        let Some((kind, value)) = entry.split_once(':') else {
            continue;
        };
        if !kind.trim().eq_ignore_ascii_case("smtp") {
            continue;
        }
        let Some(address) = normalize_address(value) else {
            continue;
        };
        if kind.trim() == "SMTP" && primary_entry.is_none() {
            primary_entry = Some(address);
        } else {
            others.push(address);
        }
    }
    let primary = mail.and_then(normalize_address).or(primary_entry.clone());
    let mut aliases: Vec<String> = primary_entry
        .into_iter()
        .chain(others)
        .filter(|a| Some(a) != primary.as_ref())
        .collect();
    aliases.sort();
    aliases.dedup();
    MailAddresses { primary, aliases }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn check(mail: Option<&str>, proxy: &[&str], primary: Option<&str>, aliases: &[&str]) {
        let proxy: Vec<String> = proxy.iter().map(|s| s.to_string()).collect();
        let got = mail_addresses(mail, &proxy);
        assert_eq!(
            got.primary.as_deref(),
            primary,
            "primary of {mail:?} {proxy:?}"
        );
        assert_eq!(got.aliases, aliases, "aliases of {mail:?} {proxy:?}");
    }

    #[test]
    fn primary_comes_from_mail() {
        check(
            Some("A@X.com"),
            &["SMTP:a@x.com", "smtp:b@x.com"],
            Some("a@x.com"),
            &["b@x.com"],
        );
    }

    #[test]
    fn primary_falls_back_to_the_upper_case_smtp_entry() {
        check(
            None,
            &["smtp:b@x.com", "SMTP:A@x.com"],
            Some("a@x.com"),
            &["b@x.com"],
        );
        check(Some("broken"), &["SMTP:a@x.com"], Some("a@x.com"), &[]);
    }

    #[test]
    fn smtp_entry_differing_from_mail_becomes_an_alias() {
        check(
            Some("new@x.com"),
            &["SMTP:old@x.com"],
            Some("new@x.com"),
            &["old@x.com"],
        );
    }

    #[test]
    fn other_address_types_are_ignored() {
        check(
            Some("a@x.com"),
            &[
                "SIP:a@x.com",
                "X500:/o=ExchangeLabs/ou=Exchange/cn=Recipients/cn=abc",
                "x400:c=US;a= ;p=Contoso;o=Exchange;s=Vance",
                "EUM:1234;phone-context=x.com",
                "sip:b@x.com",
                "no prefix@x.com",
            ],
            Some("a@x.com"),
            &[],
        );
    }

    #[test]
    fn aliases_are_case_insensitive_and_deduplicated() {
        check(
            Some("a@x.com"),
            &[
                "smtp:B@x.com",
                "smtp:b@X.COM",
                "Smtp:c@x.com",
                "smtp:A@x.com",
            ],
            Some("a@x.com"),
            &["b@x.com", "c@x.com"],
        );
    }

    #[test]
    fn no_address_at_all() {
        check(None, &[], None, &[]);
        check(None, &["SIP:a@x.com", "smtp:"], None, &[]);
    }

    #[test]
    fn implausible_addresses_are_rejected() {
        for bad in [
            "",
            "@x.com",
            "a@",
            "a b@x.com",
            "a@x..com",
            "a@x.com.",
            "a@@x",
            "<a@x.com>",
        ] {
            assert_eq!(normalize_address(bad), None, "{bad:?}");
        }
    }

    fn address() -> impl Strategy<Value = String> {
        (
            "[a-zA-Z0-9._+-]{1,12}",
            "[a-zA-Z0-9-]{1,8}(\\.[a-zA-Z]{2,4}){1,2}",
        )
            .prop_map(|(l, d)| format!("{l}@{d}"))
    }

    fn entry() -> impl Strategy<Value = String> {
        prop_oneof![
            address().prop_map(|a| format!("SMTP:{a}")),
            address().prop_map(|a| format!("smtp:{a}")),
            address().prop_map(|a| format!("SIP:{a}")),
            "[A-Za-z0-9:/=;@. -]{0,30}",
        ]
    }

    proptest! {
        #[test]
        fn parsing_never_panics_on_arbitrary_entries(
            mail in proptest::option::of(".{0,40}"),
            proxy in proptest::collection::vec(".{0,40}", 0..8),
        ) {
            let got = mail_addresses(mail.as_deref(), &proxy);
            for a in got.all() {
                prop_assert_eq!(a.to_lowercase(), a);
                prop_assert!(a.contains('@'));
            }
        }

        #[test]
        fn result_is_lower_case_unique_and_complete(
            mail in proptest::option::of(address()),
            proxy in proptest::collection::vec(entry(), 0..10),
        ) {
            let got = mail_addresses(mail.as_deref(), &proxy);
            let all: Vec<&str> = got.all().collect();
            // Unique, lower case, primary not among the aliases, aliases sorted.
            let mut seen = std::collections::HashSet::new();
            for a in &all {
                prop_assert!(seen.insert(*a), "duplicate {}", a);
                prop_assert_eq!(a.to_lowercase(), *a);
            }
            let mut sorted = got.aliases.clone();
            sorted.sort();
            prop_assert_eq!(&sorted, &got.aliases);
            // Every SMTP entry (either case) is represented; no other type is.
            for e in &proxy {
                if let Some((kind, value)) = e.split_once(':') {
                    let n = normalize_address(value);
                    if kind.eq_ignore_ascii_case("smtp")
                        && let Some(n) = n {
                            prop_assert!(all.contains(&n.as_str()), "{} missing", n);
                        }
                }
            }
            for a in &all {
                let from_mail = mail.as_deref().and_then(normalize_address).as_deref() == Some(*a);
                let from_smtp = proxy.iter().any(|e| e.split_once(':').is_some_and(|(k, v)|
                    k.eq_ignore_ascii_case("smtp") && normalize_address(v).as_deref() == Some(*a)));
                prop_assert!(from_mail || from_smtp, "{} came from nowhere", a);
            }
            // The primary is `mail` when there is one.
            if let Some(m) = mail.as_deref().and_then(normalize_address) {
                prop_assert_eq!(got.primary, Some(m));
            }
        }

        #[test]
        fn order_and_case_of_entries_do_not_matter_for_aliases(
            proxy in proptest::collection::vec(address().prop_map(|a| format!("smtp:{a}")), 0..8),
        ) {
            let a = mail_addresses(Some("p@x.com"), &proxy);
            let mut shuffled: Vec<String> = proxy.iter().rev().map(|e| e.to_uppercase().replacen("SMTP:", "smtp:", 1)).collect();
            let half = shuffled.len() / 2;
            shuffled.rotate_left(half);
            let b = mail_addresses(Some("P@X.COM"), &shuffled);
            prop_assert_eq!(a, b);
        }
    }
}
