//! The command tree (fixed by the design: scripts depend on it).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Archive Microsoft 365 mailboxes into a local, searchable, verifiable archive.
#[derive(Debug, Parser)]
#[command(name = "m365-archiver", version, propagate_version = true)]
pub struct Cli {
    /// Data directory (credentials, profiles, users, archive, state).
    /// Default: $M365_ARCHIVER_DATA, else the platform data directory.
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Machine-readable output: one JSON document on stdout.
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Archive an emulated tenant end to end, in about a minute.
    #[cfg(feature = "demo")]
    Demo(DemoArgs),
    /// App registrations the archiver authenticates with.
    #[command(subcommand)]
    Credentials(CredentialsCommand),
    /// Local users (archive owners), synchronised from the tenant or added by hand.
    #[command(subcommand)]
    Users(UsersCommand),
    /// Archiving profiles: what to archive, where, how and when.
    #[command(subcommand)]
    Profile(ProfileCommand),
    /// The archive: statistics, integrity, search, export and import.
    #[command(subcommand)]
    Archive(ArchiveCommand),
    /// The audit log: who read which mail and changed what; its chain verified.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Retention policies: how long archived mail is kept at least and at most.
    #[command(subcommand)]
    Retention(RetentionCommand),
    /// Legal holds: named cases that keep mail whatever retention or erasure say.
    #[command(subcommand)]
    Hold(HoldCommand),
    /// Who may do what: role grants, an admin's unblock, API tokens.
    #[command(subcommand)]
    Access(AccessCommand),
}

/// `access` subcommands.
#[derive(Debug, Subcommand)]
pub enum AccessCommand {
    /// Gives a user a role (replacing a grant of the same role).
    Grant {
        /// User name.
        user: String,
        /// The role: user, auditor, compliance or admin.
        #[arg(long, value_name = "ROLE", value_parser = crate::commands::access::parse_role)]
        role: archiver_service::Role,
        /// Only these users' archives (auditor, compliance; default: every archive).
        #[arg(long, value_name = "U,...", value_delimiter = ',')]
        scope: Option<Vec<String>>,
        /// The grant ends at DATE (YYYY-MM-DD, UTC, or RFC 3339).
        #[arg(long, value_name = "DATE", value_parser = crate::commands::hold::parse_date)]
        until: Option<chrono::DateTime<chrono::Utc>>,
    },
    /// Takes a role from a user.
    Revoke {
        /// User name.
        user: String,
        /// The role: user, auditor, compliance or admin.
        #[arg(long, value_name = "ROLE", value_parser = crate::commands::access::parse_role)]
        role: archiver_service::Role,
    },
    /// Lists the users with role grants or an unblock.
    List,
    /// Opens every archive's mail to an admin, for a reason, until DATE (at most 7 days).
    Unblock {
        /// The admin's user name.
        admin: String,
        /// Why (recorded with the unblock and with every read made under it).
        #[arg(long, value_name = "TEXT")]
        reason: String,
        /// When it ends (YYYY-MM-DD, UTC, or RFC 3339).
        #[arg(long, value_name = "DATE", value_parser = crate::commands::hold::parse_date)]
        until: chrono::DateTime<chrono::Utc>,
    },
    /// API tokens for the web API.
    #[command(subcommand)]
    Token(TokenCommand),
}

/// `access token` subcommands.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Creates a token acting as a user; prints it once.
    Create {
        /// The user it acts as.
        #[arg(long, value_name = "USER")]
        user: String,
        /// A name for it (unique per user).
        #[arg(long, value_name = "NAME")]
        name: String,
        /// What it may do: read, export, restore, governance, audit, admin.
        #[arg(
            long,
            value_name = "SCOPE,...",
            value_delimiter = ',',
            required = true,
            value_parser = crate::commands::access::parse_scope
        )]
        scope: Vec<archiver_service::ApiScope>,
        /// When it ends (YYYY-MM-DD, UTC, or RFC 3339; default: until revoked).
        #[arg(long, value_name = "DATE", value_parser = crate::commands::hold::parse_date)]
        until: Option<chrono::DateTime<chrono::Utc>>,
    },
    /// Lists tokens (never the tokens themselves).
    List,
    /// Revokes a token by its id.
    Revoke {
        /// The token's id (`m365a_` and eight characters).
        id: String,
    },
}

/// The date a retention period counts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReferenceArg {
    /// The message's received date.
    Received,
    /// The date it entered the archive.
    Archived,
}

/// `retention` subcommands.
#[derive(Debug, Subcommand)]
pub enum RetentionCommand {
    /// Adds a policy: what it covers is kept at least --min-days, and removed by
    /// `retention apply` once older than --max-days (never without it).
    Add(Box<RetentionAddArgs>),
    /// Lists the policies.
    List,
    /// Prints one policy.
    Show {
        /// Policy name.
        name: String,
    },
    /// Removes a policy (what it kept is then kept by the others, or forever).
    Remove {
        /// Policy name.
        name: String,
    },
    /// Removes what is past its maximum retention (never under a hold or inside a
    /// minimum), and pending erasures now allowed.
    Apply {
        /// Change nothing: list what would go and why.
        #[arg(long)]
        dry_run: bool,
    },
}

/// `retention add` options.
#[derive(Debug, Args)]
pub struct RetentionAddArgs {
    /// Policy name (letters, digits, `-`, `_`, `.`).
    pub name: String,
    /// Keep covered mail at least N days.
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub min_days: i64,
    /// Remove covered mail once older than N days (default: keep forever).
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub max_days: Option<i64>,
    /// Only this user's archive; repeatable (default: every archive).
    #[arg(long, value_name = "U")]
    pub user: Vec<String>,
    /// Only this folder and its subfolders; repeatable (default: every folder).
    #[arg(long, value_name = "P")]
    pub folder: Vec<String>,
    /// Only messages matching this search.
    #[arg(long, value_name = "Q")]
    pub query: Option<String>,
    /// The date the days count from.
    #[arg(long, value_enum, default_value_t = ReferenceArg::Received)]
    pub reference: ReferenceArg,
}

/// `hold` subcommands.
#[derive(Debug, Subcommand)]
pub enum HoldCommand {
    /// Places a hold: the mail it covers stays, whatever retention or erasure say.
    Create(Box<HoldCreateArgs>),
    /// Lists the holds, released ones included.
    List,
    /// Prints one hold and the archive entries it keeps now.
    Show {
        /// Case name.
        case: String,
    },
    /// Releases a hold.
    Release {
        /// Case name.
        case: String,
        /// Why the hold ends (kept with it).
        #[arg(long, value_name = "TEXT")]
        reason: String,
    },
}

/// `hold create` options.
#[derive(Debug, Args)]
pub struct HoldCreateArgs {
    /// Case name (letters, digits, `-`, `_`, `.`).
    pub case: String,
    /// Why the hold is placed (kept with it).
    #[arg(long, value_name = "TEXT")]
    pub reason: String,
    /// Only this user's archive; repeatable (default: every archive).
    #[arg(long, value_name = "U")]
    pub user: Vec<String>,
    /// Only messages matching this search.
    #[arg(long, value_name = "Q")]
    pub query: Option<String>,
    /// Only mail received on or after DATE (YYYY-MM-DD, UTC, or RFC 3339).
    #[arg(long, value_name = "DATE", value_parser = crate::commands::hold::parse_date)]
    pub from: Option<chrono::DateTime<chrono::Utc>>,
    /// Only mail received before DATE (YYYY-MM-DD, UTC, or RFC 3339).
    #[arg(long, value_name = "DATE", value_parser = crate::commands::hold::parse_date)]
    pub to: Option<chrono::DateTime<chrono::Utc>>,
}

/// `audit` subcommands.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Lists events: from --since on (the first N), else the last N.
    List {
        /// Only events recorded at or after this RFC 3339 time.
        #[arg(long, value_name = "RFC3339", value_parser = crate::commands::audit::parse_since)]
        since: Option<chrono::DateTime<chrono::Utc>>,
        /// At most N events.
        #[arg(long, value_name = "N")]
        limit: Option<usize>,
    },
    /// Walks the hash chain; names the first broken event and prints the head.
    Verify,
    /// Writes every event as JSON lines, exactly as stored.
    Export {
        /// Output file (replaced atomically).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
}

/// `demo` options.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Regular users (with mailboxes) in the emulated tenant.
    #[arg(long, default_value_t = 20)]
    pub users: usize,
    /// Messages per mailbox.
    #[arg(long, default_value_t = 200)]
    pub messages_per_user: usize,
}

/// Cloud of an app registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CloudArg {
    /// Microsoft Entra ID global service.
    Global,
    /// US Government (GCC High, L4).
    Usgov,
    /// US Government DoD (L5).
    UsgovDod,
    /// Microsoft Azure operated by 21Vianet (China).
    China,
    /// Any other endpoints (`--login-url`, `--graph-url`).
    Custom,
}

/// `credentials` subcommands.
#[derive(Debug, Subcommand)]
pub enum CredentialsCommand {
    /// Stores an app registration (secret by reference or file, or certificate).
    Add(Box<CredentialsAddArgs>),
    /// Lists stored credentials (never their secrets).
    List,
    /// Obtains a token, and with --mailbox checks that mailbox can be read.
    Test {
        /// Credential name.
        name: String,
        /// A mailbox to probe with the token.
        #[arg(long, value_name = "ADDR")]
        mailbox: Option<String>,
    },
    /// Deletes stored credentials.
    Remove {
        /// Credential name.
        name: String,
    },
}

/// `credentials add` options.
#[derive(Debug, Args)]
#[command(group(
    clap::ArgGroup::new("secret")
        .required(true)
        .args(["secret_env", "secret_file", "certificate"])
))]
pub struct CredentialsAddArgs {
    /// Name to refer to these credentials by.
    pub name: String,
    /// Tenant id (GUID) or primary domain.
    #[arg(long, value_name = "T")]
    pub tenant: String,
    /// Application (client) id of the app registration.
    #[arg(long, value_name = "ID")]
    pub client_id: String,
    /// Environment variable holding the client secret (read at use, never stored).
    #[arg(long, value_name = "VAR")]
    pub secret_env: Option<String>,
    /// File holding the client secret.
    #[arg(long, value_name = "F")]
    pub secret_file: Option<PathBuf>,
    /// PEM certificate registered with the app.
    #[arg(long, value_name = "CERT.pem", requires = "private_key")]
    pub certificate: Option<PathBuf>,
    /// PEM private key (PKCS#8 or PKCS#1) of the certificate.
    #[arg(long, value_name = "KEY.pem", requires = "certificate")]
    pub private_key: Option<PathBuf>,
    /// Cloud of the tenant.
    #[arg(long, value_enum, default_value_t = CloudArg::Global)]
    pub cloud: CloudArg,
    /// Login (authority) root URL, for `--cloud custom`.
    #[arg(long, value_name = "URL", required_if_eq("cloud", "custom"))]
    pub login_url: Option<String>,
    /// Graph root URL, for `--cloud custom`.
    #[arg(long, value_name = "URL", required_if_eq("cloud", "custom"))]
    pub graph_url: Option<String>,
    /// Extra CA certificates (PEM) to trust, e.g. for a TLS-intercepting proxy.
    #[arg(long, value_name = "PEM")]
    pub ca_file: Option<PathBuf>,
}

/// `users` subcommands.
#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Synchronises users from the tenant's directory (never deletes anyone).
    Sync {
        /// Credentials to read the directory with.
        #[arg(long, value_name = "NAME")]
        credentials: String,
        /// Also create users whose account is disabled.
        #[arg(long)]
        include_disabled: bool,
        /// Also create guest users.
        #[arg(long)]
        include_guests: bool,
    },
    /// Lists local users.
    List,
    /// Adds a user by hand (first address primary, the others aliases).
    Add {
        /// User name.
        name: String,
        /// Email addresses.
        #[arg(long, value_name = "ADDR", num_args = 1.., required = true)]
        email: Vec<String>,
        /// A local sign-in for the web pages: the password is this file's content
        /// (one trailing newline dropped; at least 12 characters).
        #[arg(long, value_name = "F")]
        password_file: Option<PathBuf>,
    },
    /// Removes a user who has no archive.
    Remove {
        /// User name.
        name: String,
    },
}

/// `profile` subcommands.
#[derive(Debug, Subcommand)]
pub enum ProfileCommand {
    /// Writes a new profile.
    Create(Box<ProfileCreateArgs>),
    /// Lists profiles with their schedule and last run.
    List,
    /// Prints a profile (TOML, or JSON with --json).
    Show {
        /// Profile name.
        name: String,
    },
    /// Checks that every selected mailbox can be read.
    Test {
        /// Profile name.
        name: String,
    },
    /// Runs a profile now and prints its report.
    Run {
        /// Profile name.
        name: String,
    },
    /// Deletes a profile (its archived mail stays).
    Remove {
        /// Profile name.
        name: String,
    },
}

/// `profile create` options.
#[derive(Debug, Args)]
#[command(group(
    clap::ArgGroup::new("selection")
        .required(true)
        .args(["mailbox", "all", "all_except", "only"])
))]
pub struct ProfileCreateArgs {
    /// Profile name.
    pub name: String,
    /// Credentials the profile runs with.
    #[arg(long, value_name = "C")]
    pub credentials: String,
    /// Archive this one mailbox ...
    #[arg(long, value_name = "ADDR", requires = "target_user")]
    pub mailbox: Option<String>,
    /// ... into this local user's archive.
    #[arg(long, value_name = "U", requires = "mailbox")]
    pub target_user: Option<String>,
    /// Every local user with an email address.
    #[arg(long)]
    pub all: bool,
    /// Every local user with an email address except these.
    #[arg(long, value_name = "U,...", value_delimiter = ',')]
    pub all_except: Option<Vec<String>>,
    /// Only these local users.
    #[arg(long, value_name = "U,...", value_delimiter = ',')]
    pub only: Option<Vec<String>>,
    /// Synchronise users from the directory before each run.
    #[arg(long)]
    pub sync_directory: bool,
    /// Folder to archive (path or well-known name); repeatable; default all.
    #[arg(long, value_name = "P")]
    pub include_folder: Vec<String>,
    /// Folder to skip (path or well-known name); repeatable.
    #[arg(long, value_name = "P")]
    pub exclude_folder: Vec<String>,
    /// Archive only mail older than N days.
    #[arg(long, value_name = "N")]
    pub older_than_days: Option<u32>,
    /// Delete archived mail from the mailbox: never, move_to_deleted_items, soft_delete, hard_delete.
    #[arg(long = "delete", value_name = "MODE", requires = "delete_after_days")]
    pub delete_mode: Option<String>,
    /// Delete only archived mail older than N days.
    #[arg(long, value_name = "N", requires = "delete_mode")]
    pub delete_after_days: Option<u32>,
    /// Per-request timeout in seconds.
    #[arg(long, value_name = "N")]
    pub timeout_secs: Option<u64>,
    /// When to run: manual, "every 30m", "daily 02:00", "weekly mon 03:00".
    #[arg(long, value_name = "S")]
    pub schedule: Option<String>,
}

/// Export formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// A directory of `.eml` files, one sub-directory per folder.
    Eml,
    /// One mbox file (mboxrd quoting).
    Mbox,
}

/// `archive` subcommands.
#[derive(Debug, Subcommand)]
pub enum ArchiveCommand {
    /// Messages, unique contents, chunks and bytes.
    Stats,
    /// Re-reads and re-hashes everything; names each broken object.
    Verify,
    /// Rebuilds the indexes from the packs.
    Reindex,
    /// Full-text search.
    Search {
        /// Words to look for (subject, addresses, body, attachment names).
        query: String,
        /// Only this user's archive.
        #[arg(long, value_name = "U")]
        user: Option<String>,
        /// At most N hits.
        #[arg(long, value_name = "N", default_value_t = 20)]
        limit: usize,
    },
    /// Headers and text of one archived message.
    Show {
        /// Message id (as `archive search` prints it).
        id: String,
    },
    /// Writes a user's archive (or part of it) as .eml files or mbox.
    Export {
        /// Archive owner.
        #[arg(long, value_name = "U")]
        user: String,
        /// Only this folder (and its subfolders).
        #[arg(long, value_name = "P")]
        folder: Option<String>,
        /// Only messages matching this search.
        #[arg(long, value_name = "Q")]
        query: Option<String>,
        /// Output format.
        #[arg(long, value_enum)]
        format: ExportFormat,
        /// Output directory (eml) or file (mbox).
        #[arg(long, value_name = "PATH")]
        out: PathBuf,
    },
    /// Imports a directory of .eml files or an mbox file into a user's archive.
    Import {
        /// Archive owner.
        #[arg(long, value_name = "U")]
        user: String,
        /// Folder to file the messages under.
        #[arg(long, value_name = "P")]
        folder: Option<String>,
        /// Directory of .eml files or an mbox file.
        path: PathBuf,
    },
    /// Writes archived mail back into a mailbox (received, not draft; exactly once).
    Restore(Box<RestoreArgs>),
    /// Erases messages on request (GDPR): now where allowed, else restricted (hidden
    /// from their owner) until minimum retention ends and no hold covers them.
    Erase {
        /// Message ids (as `archive search` prints them).
        #[arg(value_name = "ID", required = true, num_args = 1..)]
        ids: Vec<String>,
        /// Why (recorded with the erasure).
        #[arg(long, value_name = "TEXT")]
        reason: String,
    },
}

/// `archive restore` arguments.
#[derive(Debug, Args)]
#[command(group(
    clap::ArgGroup::new("restore_selection")
        .required(true)
        .args(["id", "query", "folder"])
))]
pub struct RestoreArgs {
    /// Archive owner.
    #[arg(long, value_name = "U")]
    pub user: String,
    /// Message ids to restore (as `archive search` prints them); repeatable.
    #[arg(long, value_name = "ID", num_args = 1..)]
    pub id: Vec<String>,
    /// Restore the messages matching this search.
    #[arg(long, value_name = "Q")]
    pub query: Option<String>,
    /// Restore this folder of the archive (and its subfolders).
    #[arg(long, value_name = "P")]
    pub folder: Option<String>,
    /// Credential (app registration with Mail.ReadWrite) to write with.
    #[arg(long, value_name = "C")]
    pub credentials: String,
    /// Target mailbox (default: the archive owner's own).
    #[arg(long, value_name = "ADDR")]
    pub to_mailbox: Option<String>,
    /// Folder path the original folders are recreated under (default:
    /// Restored/<YYYY-MM-DD>).
    #[arg(long, value_name = "PATH")]
    pub to_folder: Option<String>,
    /// Post the archived MIME itself: byte-exact, but the item lands as a draft, and
    /// messages over the service's request limit (Graph: about 3 MB of MIME) are refused.
    #[arg(long)]
    pub exact_mime: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_tree_is_consistent() {
        Cli::command().debug_assert();
    }

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("m365-archiver").chain(args.iter().copied()))
    }

    #[test]
    fn credentials_add_needs_exactly_one_secret_kind() {
        let base = [
            "credentials",
            "add",
            "c",
            "--tenant",
            "t",
            "--client-id",
            "i",
        ];
        assert!(parse(&base).is_err());
        let mut both = base.to_vec();
        both.extend(["--secret-env", "V", "--secret-file", "f"]);
        assert!(parse(&both).is_err());
        let mut cert_only = base.to_vec();
        cert_only.extend(["--certificate", "c.pem"]);
        assert!(parse(&cert_only).is_err());
        let mut ok = base.to_vec();
        ok.extend(["--certificate", "c.pem", "--private-key", "k.pem"]);
        assert!(parse(&ok).is_ok());
    }

    #[test]
    fn custom_cloud_needs_urls() {
        let base = [
            "credentials",
            "add",
            "c",
            "--tenant",
            "t",
            "--client-id",
            "i",
            "--secret-env",
            "V",
        ];
        let mut custom = base.to_vec();
        custom.extend(["--cloud", "custom"]);
        assert!(parse(&custom).is_err());
        custom.extend([
            "--login-url",
            "http://127.0.0.1:1",
            "--graph-url",
            "http://127.0.0.1:2",
        ]);
        assert!(parse(&custom).is_ok());
    }

    #[test]
    fn profile_create_selection_is_exclusive_and_required() {
        let base = ["profile", "create", "p", "--credentials", "c"];
        assert!(parse(&base).is_err());
        let mut two = base.to_vec();
        two.extend(["--all", "--only", "a,b"]);
        assert!(parse(&two).is_err());
        let mut single = base.to_vec();
        single.extend(["--mailbox", "a@b.c"]);
        assert!(parse(&single).is_err(), "--mailbox needs --target-user");
        single.extend(["--target-user", "alice"]);
        assert!(parse(&single).is_ok());
        let mut only = base.to_vec();
        only.extend(["--only", "a,b", "--json"]);
        let cli = parse(&only).unwrap();
        assert!(cli.json);
        match cli.command {
            Command::Profile(ProfileCommand::Create(args)) => {
                assert_eq!(args.only, Some(vec!["a".to_string(), "b".to_string()]));
            }
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn global_flags_go_anywhere() {
        let cli = parse(&["--data-dir", "/d", "archive", "stats", "--json"]).unwrap();
        assert_eq!(cli.data_dir, Some(PathBuf::from("/d")));
        assert!(cli.json);
    }

    #[test]
    fn restore_needs_exactly_one_selection() {
        let base = [
            "archive",
            "restore",
            "--user",
            "alice",
            "--credentials",
            "c",
        ];
        assert!(parse(&base).is_err(), "no selection");
        let with = |extra: &[&str]| {
            let mut args = base.to_vec();
            args.extend_from_slice(extra);
            parse(&args)
        };
        assert!(
            with(&["--id", "a", "--query", "q"]).is_err(),
            "two selections"
        );
        let cli = with(&["--id", "a", "b", "--exact-mime", "--to-folder", "Case 7"]).unwrap();
        let Command::Archive(ArchiveCommand::Restore(args)) = cli.command else {
            panic!("not a restore");
        };
        assert_eq!(args.id, ["a", "b"]);
        assert!(args.exact_mime);
        assert_eq!(args.to_folder.as_deref(), Some("Case 7"));
        assert!(with(&["--folder", "Inbox"]).is_ok());
    }
}
