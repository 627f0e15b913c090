//! Graph's JSON for directory reads: pages of `/users/delta` and
//! `/groups/{id}/transitiveMembers`, and their items (Graph's error body is `m365_auth::transport::GraphError`).
//!
//! Items are decoded one by one so that one odd object (another directory object
//! type, a missing field) does not cost the whole page.

use serde::Deserialize;

use crate::{DirectoryUser, UserType};

/// The properties a directory read selects.
pub(crate) const USER_SELECT: &[&str] = &[
    "id",
    "userPrincipalName",
    "mail",
    "displayName",
    "accountEnabled",
    "proxyAddresses",
    "userType",
];

/// One page of a collection or delta round.
#[derive(Debug, Deserialize)]
pub(crate) struct Page {
    /// The items, decoded later one by one.
    #[serde(default)]
    pub value: Vec<serde_json::Value>,
    /// The next page of this round.
    #[serde(rename = "@odata.nextLink")]
    pub next_link: Option<String>,
    /// The end of a delta round: the link for the next round.
    #[serde(rename = "@odata.deltaLink")]
    pub delta_link: Option<String>,
}

/// A directory object as `$select` returns it; everything but `id` may be missing
/// (delta items omit properties that were never set).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct WireObject {
    pub id: String,
    #[serde(rename = "@odata.type")]
    pub odata_type: Option<String>,
    /// `@removed` (reason `changed`: soft-deleted, restorable for 30 days; or
    /// `deleted`): either way the user is gone.
    #[serde(rename = "@removed")]
    pub removed: Option<serde::de::IgnoredAny>,
    pub user_principal_name: Option<String>,
    pub mail: Option<String>,
    pub display_name: Option<String>,
    pub account_enabled: Option<bool>,
    pub proxy_addresses: Option<Vec<String>>,
    pub user_type: Option<String>,
}

/// What an item of a page stands for.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Item {
    /// A user, added or changed.
    User(DirectoryUser),
    /// A user deleted (or soft-deleted) from the directory.
    Removed(String),
    /// Another kind of directory object (group, device, contact, ...).
    Other,
}

impl WireObject {
    /// The item this object stands for.
    pub(crate) fn into_item(self) -> Item {
        if let Some(kind) = &self.odata_type
            && !kind.eq_ignore_ascii_case("#microsoft.graph.user")
        {
            return Item::Other;
        }
        if self.removed.is_some() {
            return Item::Removed(self.id);
        }
        let user_type = match self.user_type.as_deref() {
            Some(t) if t.eq_ignore_ascii_case("guest") => UserType::Guest,
            _ => UserType::Member,
        };
        Item::User(DirectoryUser {
            user_principal_name: self.user_principal_name.unwrap_or_else(|| self.id.clone()),
            id: self.id,
            display_name: self.display_name,
            mail: self.mail,
            proxy_addresses: self.proxy_addresses.unwrap_or_default(),
            // Entra creates accounts enabled; delta omits properties never set.
            account_enabled: self.account_enabled.unwrap_or(true),
            user_type,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn item(json: &str) -> Item {
        serde_json::from_str::<WireObject>(json)
            .unwrap()
            .into_item()
    }

    #[test]
    fn a_user_from_a_delta_page() {
        let got = item(
            r##"{"@odata.type":"#microsoft.graph.user","id":"u1","userPrincipalName":"a@x.com",
                "mail":"a@x.com","displayName":"A","accountEnabled":false,
                "proxyAddresses":["SMTP:a@x.com"],"userType":"Member"}"##,
        );
        assert_eq!(
            got,
            Item::User(DirectoryUser {
                id: "u1".into(),
                user_principal_name: "a@x.com".into(),
                display_name: Some("A".into()),
                mail: Some("a@x.com".into()),
                proxy_addresses: vec!["SMTP:a@x.com".into()],
                account_enabled: false,
                user_type: UserType::Member,
            })
        );
    }

    #[test]
    fn nulls_and_missing_properties() {
        let Item::User(u) =
            item(r#"{"id":"u2","mail":null,"proxyAddresses":null,"userType":null}"#)
        else {
            panic!("not a user")
        };
        assert_eq!(u.user_principal_name, "u2");
        assert!(u.proxy_addresses.is_empty() && u.mail.is_none() && u.account_enabled);
        assert_eq!(u.user_type, UserType::Member);
    }

    #[test]
    fn guests_removals_and_other_objects() {
        let Item::User(u) = item(r#"{"id":"g","userType":"Guest"}"#) else {
            panic!("not a user")
        };
        assert_eq!(u.user_type, UserType::Guest);
        assert_eq!(
            item(r#"{"id":"r","@removed":{"reason":"changed"}}"#),
            Item::Removed("r".into())
        );
        assert_eq!(
            item(r##"{"@odata.type":"#microsoft.graph.group","id":"grp","displayName":"G"}"##),
            Item::Other
        );
    }

    proptest! {
        #[test]
        fn arbitrary_json_objects_never_panic(
            id in proptest::option::of(".{0,10}"),
            fields in proptest::collection::btree_map(
                prop_oneof![
                    Just("mail".to_string()), Just("userType".to_string()),
                    Just("proxyAddresses".to_string()), Just("accountEnabled".to_string()),
                    Just("@odata.type".to_string()), Just("@removed".to_string()), ".{0,8}"
                ],
                prop_oneof![
                    Just(serde_json::Value::Null),
                    any::<bool>().prop_map(serde_json::Value::Bool),
                    ".{0,12}".prop_map(serde_json::Value::String),
                    proptest::collection::vec(".{0,12}", 0..3).prop_map(|v| serde_json::json!(v)),
                    Just(serde_json::json!({"reason": "deleted"})),
                ],
                0..6,
            ),
        ) {
            let mut object = serde_json::Map::new();
            for (k, v) in fields {
                object.insert(k, v);
            }
            if let Some(id) = id {
                object.insert("id".into(), serde_json::Value::String(id));
            }
            if let Ok(o) = serde_json::from_value::<WireObject>(serde_json::Value::Object(object)) {
                let _ = o.into_item();
            }
        }
    }
}
