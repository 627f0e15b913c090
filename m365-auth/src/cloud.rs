//! National clouds: where a tenant signs in and where its Graph lives.
//!
//! Tokens never cross clouds, so the login host, the Graph root and the `.default`
//! scope always come from one `Cloud` value. `Custom` points at any authority (a
//! sovereign deployment, a test tenant, or the local emulator).

use std::fmt;
use std::str::FromStr;

use url::Url;

use crate::AuthError;

/// A Microsoft cloud (or a custom authority and Graph pair).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Cloud {
    /// The worldwide cloud (also used by GCC).
    #[default]
    Global,
    /// US Government GCC High (L4).
    UsGov,
    /// US Government DoD (L5).
    UsGovDod,
    /// China, operated by 21Vianet.
    China,
    /// Any other authority and Graph root, e.g. `http://127.0.0.1:PORT`.
    Custom {
        /// Authority root: the token endpoint is `{login_url}/{tenant}/oauth2/v2.0/token`.
        login_url: Url,
        /// Graph root: the v1.0 API is at `{graph_url}/v1.0`.
        graph_url: Url,
    },
}

impl Cloud {
    /// A custom cloud, validating both URLs (http or https, a host, no query or fragment).
    pub fn custom(login_url: &str, graph_url: &str) -> Result<Cloud, AuthError> {
        Ok(Cloud::Custom {
            login_url: parse_root("login_url", login_url)?,
            graph_url: parse_root("graph_url", graph_url)?,
        })
    }

    /// The authority root, e.g. `https://login.microsoftonline.com/`.
    pub fn login_url(&self) -> Url {
        match self {
            Cloud::Global => fixed("https://login.microsoftonline.com/"),
            Cloud::UsGov | Cloud::UsGovDod => fixed("https://login.microsoftonline.us/"),
            Cloud::China => fixed("https://login.chinacloudapi.cn/"),
            Cloud::Custom { login_url, .. } => with_trailing_slash(login_url),
        }
    }

    /// The Graph root, e.g. `https://graph.microsoft.com/`.
    pub fn graph_url(&self) -> Url {
        match self {
            Cloud::Global => fixed("https://graph.microsoft.com/"),
            Cloud::UsGov => fixed("https://graph.microsoft.us/"),
            Cloud::UsGovDod => fixed("https://dod-graph.microsoft.us/"),
            Cloud::China => fixed("https://microsoftgraph.chinacloudapi.cn/"),
            Cloud::Custom { graph_url, .. } => with_trailing_slash(graph_url),
        }
    }

    /// The Graph v1.0 API root, e.g. `https://graph.microsoft.com/v1.0`.
    pub fn graph_v1_url(&self) -> Url {
        let mut url = self.graph_url();
        let path = format!("{}v1.0", url.path());
        url.set_path(&path);
        url
    }

    /// The scope for an app-only Graph token: `{graph root}/.default`.
    pub fn default_scope(&self) -> String {
        format!("{}.default", self.graph_url())
    }

    /// The token endpoint of `tenant`: `{login_url}/{tenant}/oauth2/v2.0/token`.
    pub fn token_endpoint(&self, tenant: &str) -> Url {
        let mut url = self.login_url();
        let path = format!("{}{tenant}/oauth2/v2.0/token", url.path());
        url.set_path(&path);
        url
    }

    /// Whether this is one of Microsoft's own clouds (not `Custom`).
    pub fn is_microsoft(&self) -> bool {
        !matches!(self, Cloud::Custom { .. })
    }

    /// The short name used in configuration and on the command line.
    pub fn name(&self) -> &'static str {
        match self {
            Cloud::Global => "global",
            Cloud::UsGov => "usgov",
            Cloud::UsGovDod => "usgov-dod",
            Cloud::China => "china",
            Cloud::Custom { .. } => "custom",
        }
    }

    /// A cloud from its short name; `custom` needs both URLs.
    pub fn from_name(
        name: &str,
        login_url: Option<&str>,
        graph_url: Option<&str>,
    ) -> Result<Cloud, AuthError> {
        match name.parse::<Cloud>() {
            Ok(cloud) => {
                if login_url.is_some() || graph_url.is_some() {
                    return Err(AuthError::InvalidRegistration {
                        field: "cloud",
                        value: name.to_owned(),
                        reason: "login and Graph URLs are only accepted with the `custom` cloud"
                            .into(),
                    });
                }
                Ok(cloud)
            }
            Err(_) if name.eq_ignore_ascii_case("custom") => match (login_url, graph_url) {
                (Some(login), Some(graph)) => Cloud::custom(login, graph),
                (None, _) => Err(AuthError::InvalidRegistration {
                    field: "login_url",
                    value: String::new(),
                    reason: "the custom cloud needs a login URL".into(),
                }),
                (_, None) => Err(AuthError::InvalidRegistration {
                    field: "graph_url",
                    value: String::new(),
                    reason: "the custom cloud needs a Graph URL".into(),
                }),
            },
            Err(err) => Err(err),
        }
    }
}

impl fmt::Display for Cloud {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cloud::Custom {
                login_url,
                graph_url,
            } => write!(f, "custom (login {login_url}, graph {graph_url})"),
            other => f.write_str(other.name()),
        }
    }
}

impl FromStr for Cloud {
    type Err = AuthError;

    /// Parses `global`, `usgov`, `usgov-dod` or `china` (`custom` needs URLs: use
    /// [`Cloud::custom`] or [`Cloud::from_name`]).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "global" | "public" | "worldwide" | "gcc" => Ok(Cloud::Global),
            "usgov" | "gcchigh" | "gcc-high" | "l4" => Ok(Cloud::UsGov),
            "usgov-dod" | "dod" | "l5" => Ok(Cloud::UsGovDod),
            "china" | "21vianet" => Ok(Cloud::China),
            _ => Err(AuthError::InvalidRegistration {
                field: "cloud",
                value: s.to_owned(),
                reason:
                    "expected global, usgov, usgov-dod, china or custom (with login and Graph URLs)"
                        .into(),
            }),
        }
    }
}

/// Parses one of the constant cloud URLs above (covered by the unit tests).
#[allow(clippy::expect_used)]
fn fixed(url: &'static str) -> Url {
    Url::parse(url).expect("constant cloud URLs are well-formed")
}

fn with_trailing_slash(url: &Url) -> Url {
    let mut url = url.clone();
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    url
}

fn parse_root(field: &'static str, value: &str) -> Result<Url, AuthError> {
    let bad = |reason: &str| AuthError::InvalidRegistration {
        field,
        value: value.to_owned(),
        reason: reason.to_owned(),
    };
    let url = Url::parse(value.trim()).map_err(|e| bad(&format!("not a URL ({e})")))?;
    if url.scheme() != "https" && url.scheme() != "http" {
        return Err(bad(
            "the scheme must be https (or http for a local test authority)",
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("the URL has no host"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("the URL must not carry a query or fragment"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("the URL must not carry credentials"));
    }
    Ok(with_trailing_slash(&url))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn microsoft_clouds_know_their_hosts_and_scopes() {
        let cases = [
            (
                Cloud::Global,
                "https://login.microsoftonline.com/",
                "https://graph.microsoft.com/",
            ),
            (
                Cloud::UsGov,
                "https://login.microsoftonline.us/",
                "https://graph.microsoft.us/",
            ),
            (
                Cloud::UsGovDod,
                "https://login.microsoftonline.us/",
                "https://dod-graph.microsoft.us/",
            ),
            (
                Cloud::China,
                "https://login.chinacloudapi.cn/",
                "https://microsoftgraph.chinacloudapi.cn/",
            ),
        ];
        for (cloud, login, graph) in cases {
            assert_eq!(cloud.login_url().as_str(), login);
            assert_eq!(cloud.graph_url().as_str(), graph);
            assert_eq!(cloud.default_scope(), format!("{graph}.default"));
            assert_eq!(cloud.graph_v1_url().as_str(), format!("{graph}v1.0"));
            assert_eq!(cloud.name().parse::<Cloud>().unwrap(), cloud);
            assert!(cloud.is_microsoft());
        }
        assert_eq!(
            Cloud::Global.token_endpoint("contoso.com").as_str(),
            "https://login.microsoftonline.com/contoso.com/oauth2/v2.0/token"
        );
    }

    #[test]
    fn custom_cloud_keeps_paths_and_adds_slashes() {
        let cloud = Cloud::custom("http://127.0.0.1:8080", "http://127.0.0.1:8081/graph").unwrap();
        assert_eq!(
            cloud.token_endpoint("t.example").as_str(),
            "http://127.0.0.1:8080/t.example/oauth2/v2.0/token"
        );
        assert_eq!(
            cloud.graph_v1_url().as_str(),
            "http://127.0.0.1:8081/graph/v1.0"
        );
        assert_eq!(
            cloud.default_scope(),
            "http://127.0.0.1:8081/graph/.default"
        );
        assert!(!cloud.is_microsoft());
    }

    #[test]
    fn bad_custom_urls_name_the_field() {
        for (login, graph, field) in [
            ("ftp://x", "http://y", "login_url"),
            ("not a url", "http://y", "login_url"),
            ("http://x", "http://y/?q=1", "graph_url"),
            ("http://user:pw@x", "http://y", "login_url"),
        ] {
            match Cloud::custom(login, graph) {
                Err(AuthError::InvalidRegistration { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{other:?}"),
            }
        }
        assert!(Cloud::from_name("custom", Some("http://x"), None).is_err());
        assert!(Cloud::from_name("global", Some("http://x"), None).is_err());
        assert!(Cloud::from_name("mars", None, None).is_err());
        assert!(matches!(
            Cloud::from_name("custom", Some("http://x"), Some("http://y")),
            Ok(Cloud::Custom { .. })
        ));
    }
}
