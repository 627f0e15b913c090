//! The app registration an unattended archiver signs in as: tenant, client id,
//! credential and cloud. Tenant and client id are validated when parsed, so an
//! `AppRegistration` always holds usable values and errors name the bad field.

use std::fmt;
use std::str::FromStr;

use uuid::Uuid;

use crate::{AuthError, ClientCredential, Cloud};

/// A tenant: its directory id (GUID) or one of its verified domains.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TenantId(String);

impl TenantId {
    /// The tenant as it goes into the token endpoint path.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the tenant is given by its directory id rather than a domain.
    pub fn is_guid(&self) -> bool {
        Uuid::try_parse(&self.0).is_ok()
    }
}

impl FromStr for TenantId {
    type Err = AuthError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let value = s.trim();
        let bad = |reason: &str| AuthError::InvalidRegistration {
            field: "tenant",
            value: s.to_owned(),
            reason: reason.to_owned(),
        };
        if value.is_empty() {
            return Err(bad(
                "the tenant is empty; give its directory id (GUID) or a verified domain",
            ));
        }
        if let Ok(id) = Uuid::try_parse(value) {
            if id.is_nil() {
                return Err(bad("the nil GUID is not a tenant"));
            }
            return Ok(TenantId(id.hyphenated().to_string()));
        }
        let lower = value.to_ascii_lowercase();
        if matches!(lower.as_str(), "common" | "organizations" | "consumers") {
            return Err(bad(
                "app-only sign-in needs a specific tenant, not `common`, `organizations` or \
                 `consumers`: give the tenant's directory id or domain",
            ));
        }
        if !is_domain_name(&lower) {
            return Err(bad(
                "neither a GUID nor a domain name (like contoso.onmicrosoft.com)",
            ));
        }
        Ok(TenantId(lower))
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The application (client) id of an app registration: always a GUID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientId(Uuid);

impl ClientId {
    /// The id as a GUID.
    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl FromStr for ClientId {
    type Err = AuthError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |reason: &str| AuthError::InvalidRegistration {
            field: "client_id",
            value: s.to_owned(),
            reason: reason.to_owned(),
        };
        let id = Uuid::try_parse(s.trim()).map_err(|_| {
            bad("the application (client) id must be a GUID like 11111111-2222-3333-4444-555555555555 \
                 (see the app registration's Overview page)")
        })?;
        if id.is_nil() {
            return Err(bad("the nil GUID is not an application id"));
        }
        Ok(ClientId(id))
    }
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.hyphenated())
    }
}

/// Everything needed to sign in as an application.
#[derive(Debug, Clone)]
pub struct AppRegistration {
    /// The tenant the application signs in to.
    pub tenant: TenantId,
    /// The application (client) id.
    pub client_id: ClientId,
    /// Its secret or certificate.
    pub credential: ClientCredential,
    /// The cloud the tenant lives in.
    pub cloud: Cloud,
}

impl AppRegistration {
    /// Validates `tenant` and `client_id`; errors name the bad field.
    pub fn new(
        tenant: &str,
        client_id: &str,
        credential: ClientCredential,
        cloud: Cloud,
    ) -> Result<AppRegistration, AuthError> {
        Ok(AppRegistration {
            tenant: tenant.parse()?,
            client_id: client_id.parse()?,
            credential,
            cloud,
        })
    }

    /// The token endpoint of this registration's tenant and cloud.
    pub fn token_endpoint(&self) -> url::Url {
        self.cloud.token_endpoint(self.tenant.as_str())
    }
}

/// A DNS name: labels of letters, digits and hyphens (not at either end), at least two labels.
fn is_domain_name(name: &str) -> bool {
    if name.len() > 253 || !name.contains('.') {
        return false;
    }
    name.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(err: AuthError) -> &'static str {
        match err {
            AuthError::InvalidRegistration { field, .. } => field,
            other => panic!("unexpected error {other:?}"),
        }
    }

    #[test]
    fn tenant_accepts_guid_and_domain() {
        let t: TenantId = "  72F988BF-86F1-41AF-91AB-2D7CD011DB47 ".parse().unwrap();
        assert_eq!(t.as_str(), "72f988bf-86f1-41af-91ab-2d7cd011db47");
        assert!(t.is_guid());
        let d: TenantId = "Contoso.onmicrosoft.com".parse().unwrap();
        assert_eq!(d.as_str(), "contoso.onmicrosoft.com");
        assert!(!d.is_guid());
    }

    #[test]
    fn tenant_rejects_garbage_naming_the_field() {
        for bad in [
            "",
            "common",
            "organizations",
            "contoso",
            "-a.com",
            "a..com",
            "a/b.com",
            "00000000-0000-0000-0000-000000000000",
            "contoso.com/../x",
        ] {
            assert_eq!(
                field_of(bad.parse::<TenantId>().unwrap_err()),
                "tenant",
                "{bad}"
            );
        }
    }

    #[test]
    fn client_id_must_be_a_guid() {
        let id: ClientId = "11111111-2222-3333-4444-555555555555".parse().unwrap();
        assert_eq!(id.to_string(), "11111111-2222-3333-4444-555555555555");
        for bad in ["", "my-app", "00000000-0000-0000-0000-000000000000", "1111"] {
            let err = bad.parse::<ClientId>().unwrap_err();
            assert!(err.to_string().contains("client_id"), "{err}");
            assert_eq!(field_of(err), "client_id");
        }
    }

    #[test]
    fn registration_names_the_bad_field() {
        let cred = ClientCredential::secret("s3cr3t-value");
        let err =
            AppRegistration::new("contoso.com", "nope", cred.clone(), Cloud::Global).unwrap_err();
        assert_eq!(field_of(err), "client_id");
        let err = AppRegistration::new(
            "bad tenant",
            "11111111-2222-3333-4444-555555555555",
            cred,
            Cloud::Global,
        )
        .unwrap_err();
        assert_eq!(field_of(err), "tenant");
    }
}
