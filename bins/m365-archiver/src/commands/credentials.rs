//! `credentials` commands: app registrations, stored one TOML file each (`0600`)
//! under `credentials/`. A secret may stay outside as an environment-variable or
//! file reference; no command ever prints one.

use std::process::ExitCode;

use anyhow::{Result, bail};
use archiver_service::{NewCredential, SecretInput};
use serde::Serialize;

use crate::cli::{CloudArg, CredentialsAddArgs, CredentialsCommand};
use crate::output::Table;
use crate::{CALLER, Ctx};

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

/// The credential `credentials add` arguments describe, for the service.
pub fn new_credential(args: &CredentialsAddArgs) -> Result<NewCredential> {
    let secret = if let Some(var) = &args.secret_env {
        SecretInput::EnvVar(var.clone())
    } else if let Some(file) = &args.secret_file {
        SecretInput::File(file.clone())
    } else if let (Some(certificate), Some(private_key)) = (&args.certificate, &args.private_key) {
        SecretInput::Certificate {
            certificate: certificate.clone(),
            private_key: private_key.clone(),
        }
    } else {
        bail!("give --secret-env, --secret-file or --certificate with --private-key");
    };
    Ok(NewCredential {
        name: args.name.clone(),
        tenant: args.tenant.clone(),
        client_id: args.client_id.clone(),
        secret,
        cloud: cloud_name(args.cloud).to_string(),
        login_url: args.login_url.clone(),
        graph_url: args.graph_url.clone(),
        ca_file: args.ca_file.clone(),
    })
}

async fn add(ctx: &Ctx, args: CredentialsAddArgs) -> Result<ExitCode> {
    let added = ctx
        .service
        .add_credential(CALLER, &new_credential(&args)?)
        .await?;
    let (path, lifetime) = (added.path, added.token_lifetime);
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
    let summaries = ctx.service.list_credentials(CALLER)?;
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
    let tested = ctx.service.test_credential(CALLER, name, mailbox).await?;
    let lifetime = tested.token_lifetime;
    let probe = tested.mailbox.map(|m| (m.address, m.error));
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
    ctx.service.remove_credential(CALLER, name)?;
    ctx.out.emit(&serde_json::json!({ "removed": name }), || {
        format!("credential `{name}` removed")
    })?;
    Ok(ExitCode::SUCCESS)
}
