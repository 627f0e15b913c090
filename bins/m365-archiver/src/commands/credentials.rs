//! `credentials` commands: app registrations, stored one TOML file each (`0600`)
//! under `credentials/`. A secret may stay outside as an environment-variable or
//! file reference; no command ever prints one.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use m365_archiver::datadir::{Access, DataDir};
use m365_archiver::wiring;
use m365_auth::{
    AssertionAlgorithm, CertificateSource, ClientId, Cloud, CredentialSource, CredentialStore,
    SecretSource, StoredCredential, TenantId,
};
use m365_mailbox::MailboxSource;
use serde::Serialize;

use crate::Ctx;
use crate::cli::{CloudArg, CredentialsAddArgs, CredentialsCommand};
use crate::output::Table;

/// Runs one `credentials` command.
pub async fn run(ctx: &Ctx, cmd: CredentialsCommand) -> Result<ExitCode> {
    match cmd {
        CredentialsCommand::Add(args) => add(ctx, *args).await,
        CredentialsCommand::List => list(ctx),
        CredentialsCommand::Test { name, mailbox } => test(ctx, &name, mailbox.as_deref()).await,
        CredentialsCommand::Remove { name } => remove(ctx, &name),
    }
}

fn cloud_name(cloud: CloudArg) -> &'static str {
    match cloud {
        CloudArg::Global => "global",
        CloudArg::Usgov => "usgov",
        CloudArg::UsgovDod => "usgov-dod",
        CloudArg::China => "china",
        CloudArg::Custom => "custom",
    }
}

fn absolute(path: &Path, what: &str) -> Result<PathBuf> {
    let meta = std::fs::metadata(path)
        .with_context(|| format!("cannot read {what} {}", path.display()))?;
    if !meta.is_file() {
        bail!("{what} {} is not a file", path.display());
    }
    std::fs::canonicalize(path).with_context(|| format!("cannot resolve {what} {}", path.display()))
}

/// The credential described by `credentials add` arguments (validated, nothing contacted).
pub fn stored_from_args(args: &CredentialsAddArgs) -> Result<StoredCredential> {
    let tenant: TenantId = args.tenant.parse().context("--tenant")?;
    let client_id: ClientId = args.client_id.parse().context("--client-id")?;
    let cloud = Cloud::from_name(
        cloud_name(args.cloud),
        args.login_url.as_deref(),
        args.graph_url.as_deref(),
    )
    .context("--cloud")?;
    let credential = if let Some(var) = &args.secret_env {
        if var.is_empty() || var.contains('=') {
            bail!("--secret-env `{var}` is not an environment variable name");
        }
        CredentialSource::Secret(SecretSource::EnvVar(var.clone()))
    } else if let Some(file) = &args.secret_file {
        CredentialSource::Secret(SecretSource::File(absolute(file, "secret file")?))
    } else if let (Some(cert), Some(key)) = (&args.certificate, &args.private_key) {
        CredentialSource::Certificate {
            source: CertificateSource::Pem {
                certificate: absolute(cert, "certificate")?,
                private_key: SecretSource::File(absolute(key, "private key")?),
            },
            algorithm: AssertionAlgorithm::default(),
        }
    } else {
        bail!("give --secret-env, --secret-file or --certificate with --private-key");
    };
    let ca_file = match &args.ca_file {
        Some(path) => Some(absolute(path, "CA file")?),
        None => None,
    };
    Ok(StoredCredential {
        name: args.name.clone(),
        tenant,
        client_id,
        cloud,
        credential,
        ca_file,
        scope: None,
    })
}

/// Stores a credential after proving it obtains a token; nothing is written otherwise.
pub async fn add_credential(root: &Path, args: &CredentialsAddArgs) -> Result<(PathBuf, Duration)> {
    // A directory that exists must be private before anything else happens.
    if root.exists() {
        DataDir::open(root, Access::Admin)?;
    }
    let stored = stored_from_args(args)?;
    if let Ok(existing) = DataDir::open(root, Access::Read)
        && let Some(store) = wiring::existing_credential_store(&existing)?
        && store.path_of(&stored.name)?.exists()
    {
        bail!(
            "a credential named `{}` already exists; remove it first or choose another name",
            stored.name
        );
    }
    let connection = wiring::connect(&stored)?;
    let lifetime = connection
        .check_token()
        .await
        .context("nothing was stored")?;
    let dir = DataDir::open(root, Access::Admin)?;
    let store = CredentialStore::open(dir.credentials())?;
    let path = store.add(&stored)?;
    Ok((path, lifetime))
}

async fn add(ctx: &Ctx, args: CredentialsAddArgs) -> Result<ExitCode> {
    let (path, lifetime) = add_credential(&ctx.data_dir, &args).await?;
    #[derive(Serialize)]
    struct Added<'a> {
        name: &'a str,
        path: String,
        token_ok: bool,
        token_lifetime_secs: u64,
    }
    let added = Added {
        name: &args.name,
        path: path.display().to_string(),
        token_ok: true,
        token_lifetime_secs: lifetime.as_secs(),
    };
    ctx.out.emit(&added, || {
        format!(
            "credential `{}` stored in {} (a token was obtained: valid {} min)",
            args.name,
            path.display(),
            lifetime.as_secs() / 60
        )
    })?;
    Ok(ExitCode::SUCCESS)
}

fn list(ctx: &Ctx) -> Result<ExitCode> {
    let summaries = match DataDir::open(&ctx.data_dir, Access::Read) {
        Ok(dir) => match wiring::existing_credential_store(&dir)? {
            Some(store) => store.list()?,
            None => Vec::new(),
        },
        Err(_) if !ctx.data_dir.exists() => Vec::new(),
        Err(e) => return Err(e),
    };
    ctx.out.emit(&summaries, || {
        if summaries.is_empty() {
            return "no credentials (add some with `m365-archiver credentials add`)".to_string();
        }
        let mut table = Table::new(&["NAME", "TENANT", "CLIENT ID", "KIND", "SECRET", "CLOUD"]);
        for s in &summaries {
            let cloud = match (&s.login_url, &s.problem) {
                (_, Some(problem)) => format!("unreadable: {problem}"),
                (Some(login), None) => format!("{} ({login})", s.cloud),
                (None, None) => s.cloud.clone(),
            };
            table.row(vec![
                s.name.clone(),
                s.tenant.clone(),
                s.client_id.clone(),
                s.kind.clone(),
                s.secret_storage.clone(),
                cloud,
            ]);
        }
        table.render()
    })?;
    Ok(ExitCode::SUCCESS)
}

async fn test(ctx: &Ctx, name: &str, mailbox: Option<&str>) -> Result<ExitCode> {
    let dir = DataDir::open(&ctx.data_dir, Access::Read)?;
    let stored = wiring::load_credential(&dir, name)?;
    let connection = wiring::connect(&stored)?;
    let lifetime = connection.check_token().await?;
    let probe = match mailbox {
        Some(address) => {
            let source = connection.mailbox_source(Duration::from_secs(60))?;
            Some(match source.probe(address).await {
                Ok(()) => (address.to_string(), None),
                Err(e) => (address.to_string(), Some(e.to_string())),
            })
        }
        None => None,
    };
    #[derive(Serialize)]
    struct Tested {
        name: String,
        token_ok: bool,
        token_lifetime_secs: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        mailbox: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        mailbox_readable: Option<bool>,
        #[serde(skip_serializing_if = "Option::is_none")]
        mailbox_error: Option<String>,
    }
    let tested = Tested {
        name: name.to_string(),
        token_ok: true,
        token_lifetime_secs: lifetime.as_secs(),
        mailbox: probe.as_ref().map(|p| p.0.clone()),
        mailbox_readable: probe.as_ref().map(|p| p.1.is_none()),
        mailbox_error: probe.as_ref().and_then(|p| p.1.clone()),
    };
    ctx.out.emit(&tested, || {
        let mut text = format!(
            "credential `{name}`: token obtained (valid {} min)\n",
            lifetime.as_secs() / 60
        );
        if let Some((address, error)) = &probe {
            match error {
                None => text.push_str(&format!("mailbox {address}: readable\n")),
                Some(e) => text.push_str(&format!("mailbox {address}: NOT readable: {e}\n")),
            }
        }
        text
    })?;
    if let Some((address, Some(error))) = &probe {
        bail!("mailbox {address} cannot be read with credential `{name}`: {error}");
    }
    Ok(ExitCode::SUCCESS)
}

fn remove(ctx: &Ctx, name: &str) -> Result<ExitCode> {
    let dir = DataDir::open(&ctx.data_dir, Access::Read)?;
    dir.check_private()?;
    let Some(store) = wiring::existing_credential_store(&dir)? else {
        bail!("no credential named `{name}`; `credentials list` shows the stored ones");
    };
    store.remove(name)?;
    ctx.out.emit(&serde_json::json!({ "removed": name }), || {
        format!("credential `{name}` removed")
    })?;
    Ok(ExitCode::SUCCESS)
}
