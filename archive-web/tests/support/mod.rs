//! A whole site for the web tests: the emulated tenant, its mail archived through
//! the service (credential, directory sync, one profile run), and the web app
//! served over real HTTP on 127.0.0.1 with Entra sign-in against the emulator.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use archive_web::{OidcSignIn, WebConfig, WebState};
use archiver_service::{
    MailboxSelection, NewCredential, Principal, ProfileSpec, SecretInput, Service, ServiceOptions,
};
use m365_emulator::{Emulator, EmulatorConfig};

/// The running site.
pub struct Site {
    /// The tenant.
    pub emulator: Emulator,
    /// The service behind the pages.
    pub service: Service,
    /// `http://127.0.0.1:PORT/`.
    pub base: String,
    /// (local user name, UPN, directory object id) of the synced users with mail.
    pub users: Vec<(String, String, String)>,
    /// The local password every synced user was given too.
    pub password: String,
    /// The data directory and exports.
    pub dir: tempfile::TempDir,
    /// Stops the server when dropped.
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

/// The local password of every synced user.
pub const LOCAL_PASSWORD: &str = "correct horse battery staple";

impl Site {
    /// The site's URL for `path` (`/api/v1/search`, ...).
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base.trim_end_matches('/'), path)
    }

    /// Archives `raw` into `user`'s archive (folder `Inbox`) by import; answers its id.
    pub fn archive_eml(&self, user: &str, raw: &[u8]) -> String {
        let dir = self.dir.path().join(format!("import-{}", rand_name()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("m.eml"), raw).unwrap();
        let report = self
            .service
            .import(
                &Principal::LocalAdministrator,
                &archiver_service::ImportRequest {
                    user: user.into(),
                    folder: Some("Inbox".into()),
                    path: dir,
                },
            )
            .unwrap();
        assert_eq!(report.imported + report.duplicates, 1, "{report:?}");
        self.find_id(user, raw)
    }

    fn find_id(&self, user: &str, raw: &[u8]) -> String {
        let subject = String::from_utf8_lossy(raw)
            .lines()
            .find_map(|l| l.strip_prefix("Subject: ").map(str::to_string))
            .expect("the test message has a subject");
        let hits = self
            .service
            .search(
                &Principal::LocalAdministrator,
                &archiver_service::SearchRequest {
                    text: format!("subject:\"{subject}\""),
                    user: Some(user.into()),
                    from_date: None,
                    to_date: None,
                    limit: 10,
                },
            )
            .unwrap();
        hits.first()
            .expect("the imported message is found")
            .id
            .0
            .clone()
    }
}

fn rand_name() -> String {
    use rand::Rng;
    format!("{:016x}", rand::thread_rng().r#gen::<u64>())
}

/// A site over a tenant of `users` users with `messages` messages each.
pub async fn site_with(users: usize, messages: usize) -> Site {
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!(
        "http://127.0.0.1:{}/",
        listener.local_addr().unwrap().port()
    );
    let emulator = Emulator::start(EmulatorConfig {
        users,
        messages_per_user: messages,
        redirect_uris: vec![format!("{base}auth/callback")],
        ..EmulatorConfig::default()
    })
    .await
    .unwrap();
    let service = Service::new(dir.path().join("data"), ServiceOptions::default());
    let admin = Principal::LocalAdministrator;
    let secret = dir.path().join("secret");
    std::fs::write(&secret, emulator.client_secret()).unwrap();
    service
        .add_credential(
            &admin,
            &NewCredential {
                name: "tenant".into(),
                tenant: emulator.tenant_id(),
                client_id: emulator.client_id(),
                secret: SecretInput::File(secret),
                cloud: "custom".into(),
                login_url: Some(emulator.login_url().to_string()),
                graph_url: Some(emulator.graph_url().to_string()),
                ca_file: None,
            },
        )
        .await
        .unwrap();
    service
        .sync_users(&admin, "tenant", &directory_sync::SyncOptions::default())
        .await
        .unwrap();
    service
        .create_profile(
            &admin,
            &ProfileSpec {
                name: "all".into(),
                credentials: "tenant".into(),
                selection: MailboxSelection::All,
                sync_directory: false,
                include_folders: Vec::new(),
                exclude_folders: Vec::new(),
                older_than_days: None,
                delete_mode: None,
                delete_after_days: None,
                timeout_secs: None,
                schedule: None,
            },
        )
        .unwrap();
    service
        .run_profile(
            &admin,
            "all",
            &profile_engine::CancellationToken::new(),
            &profile_engine::NoProgress,
        )
        .await
        .unwrap();
    let local = service.list_users(&admin).unwrap();
    let mut site_users = Vec::new();
    for info in emulator.users() {
        if !info.enabled || !info.has_mailbox || info.guest {
            continue;
        }
        let Some(user) = local.iter().find(|u| {
            u.email
                .as_deref()
                .is_some_and(|e| e.eq_ignore_ascii_case(&info.upn))
                || u.aliases.iter().any(|a| a.eq_ignore_ascii_case(&info.upn))
                || info.mail.as_deref().is_some_and(|m| {
                    u.email
                        .as_deref()
                        .is_some_and(|e| e.eq_ignore_ascii_case(m))
                })
        }) else {
            continue;
        };
        if !user.has_archive {
            continue;
        }
        service
            .set_local_password(&admin, &user.name, LOCAL_PASSWORD)
            .unwrap();
        site_users.push((user.name.clone(), info.upn.clone(), info.id.clone()));
    }
    assert!(
        site_users.len() >= 2,
        "two synced users with mail: {site_users:?}"
    );
    let mut config = WebConfig::new(base.parse().unwrap(), dir.path().join("exports"));
    config.restore_credentials = Some("tenant".into());
    let (registration, options) = service.sign_in_registration(&admin, "tenant").unwrap();
    let entra = OidcSignIn::new(
        registration,
        &options,
        config.redirect_uri().parse().unwrap(),
    )
    .unwrap();
    let state = WebState::new(service.clone(), config).with_entra(Arc::new(entra));
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        archive_web::serve(listener, archive_web::router(state), None, async {
            let _ = rx.await;
        })
        .await
        .unwrap();
    });
    let password = emulator.user_password();
    Site {
        emulator,
        service,
        base,
        users: site_users,
        password,
        dir,
        _shutdown: tx,
    }
}

/// The usual site: three users, a few messages each.
pub async fn site() -> Site {
    site_with(3, 8).await
}

/// An HTTP client that follows no redirects and keeps one cookie jar by hand.
pub struct Browser {
    pub http: reqwest::Client,
    pub cookie: Option<String>,
}

impl Browser {
    pub fn new() -> Self {
        Self {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            cookie: None,
        }
    }

    /// Keeps the session cookie a response sets.
    pub fn keep(&mut self, response: &reqwest::Response) {
        for value in response.headers().get_all(reqwest::header::SET_COOKIE) {
            let value = value.to_str().unwrap();
            let pair = value.split(';').next().unwrap().trim().to_string();
            if pair.ends_with('=') {
                self.cookie = None;
            } else if pair.contains("archive_session=") {
                self.cookie = Some(pair);
            }
        }
    }

    pub async fn get(&mut self, url: &str) -> reqwest::Response {
        let mut request = self.http.get(url);
        if let Some(c) = &self.cookie {
            request = request.header(reqwest::header::COOKIE, c);
        }
        let response = request.send().await.unwrap();
        self.keep(&response);
        response
    }

    pub async fn post_form(&mut self, url: &str, form: &[(&str, &str)]) -> reqwest::Response {
        let mut request = self.http.post(url).form(form);
        if let Some(c) = &self.cookie {
            request = request.header(reqwest::header::COOKIE, c);
        }
        let response = request.send().await.unwrap();
        self.keep(&response);
        response
    }

    /// The CSRF token in a page's forms.
    pub fn csrf_of(page: &str) -> String {
        let at = page.find("name=\"csrf\"").expect("a CSRF field");
        let rest = &page[at..];
        let v = rest.find("value=\"").unwrap() + 7;
        let end = rest[v..].find('"').unwrap();
        rest[v..v + end].to_string()
    }

    /// Signs `user` in with the local form; panics unless it succeeds.
    pub async fn sign_in_local(&mut self, site: &Site, user: &str) {
        let page = self.get(&site.url("/signin")).await.text().await.unwrap();
        let csrf = Self::csrf_of(&page);
        let response = self
            .post_form(
                &site.url("/auth/local"),
                &[
                    ("username", user),
                    ("password", LOCAL_PASSWORD),
                    ("csrf", &csrf),
                    ("return_to", "/"),
                ],
            )
            .await;
        assert_eq!(
            response.status(),
            303,
            "{}",
            response.text().await.unwrap_or_default()
        );
    }
}
