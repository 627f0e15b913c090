//! Profile runs against the emulator: the SIGKILL loop over `profile run` child
//! processes and the fault storm with noisy neighbours; both audit that every readable
//! message was archived exactly once.

use super::*;

/// What a process needs to reach the tenant.
#[derive(Clone)]
struct Tenant {
    login: String,
    graph: String,
    tenant: String,
    client_id: String,
    secret: String,
}

impl Tenant {
    fn of(emu: &Emulator) -> Self {
        Self {
            login: emu.login_url().to_string(),
            graph: emu.graph_url().to_string(),
            tenant: emu.tenant_id(),
            client_id: emu.client_id(),
            secret: emu.client_secret(),
        }
    }

    fn encode(&self) -> String {
        [
            self.login.as_str(),
            &self.graph,
            &self.tenant,
            &self.client_id,
            &self.secret,
        ]
        .join("\u{1f}")
    }

    fn decode(text: &str) -> Result<Self> {
        let parts: Vec<&str> = text.split('\u{1f}').collect();
        let [login, graph, tenant, client_id, secret] = parts.as_slice() else {
            bail!("{TENANT_ENV} holds {} fields, expected 5", parts.len());
        };
        Ok(Self {
            login: (*login).into(),
            graph: (*graph).into(),
            tenant: (*tenant).into(),
            client_id: (*client_id).into(),
            secret: (*secret).into(),
        })
    }
}

/// The production stack over a data directory.
struct Stack {
    engine: Engine,
    archive: Arc<DiskArchiveStore>,
    users: Arc<SqliteUserStore>,
}

/// Client-credentials tokens for the tenant's app.
fn token_provider(tenant: &Tenant) -> Result<Arc<dyn TokenProvider>> {
    let cloud = Cloud::custom(&tenant.login, &tenant.graph)?;
    let registration = AppRegistration::new(
        &tenant.tenant,
        &tenant.client_id,
        ClientCredential::secret(tenant.secret.clone()),
        cloud,
    )?;
    Ok(Arc::new(ClientCredentialsProvider::new(
        registration,
        ProviderOptions::default(),
    )?))
}

fn stack(tenant: &Tenant, data: &Path) -> Result<Stack> {
    let tokens = token_provider(tenant)?;
    let graph_root = url::Url::parse(&tenant.graph)?;
    let mail = GraphMailboxSource::new(
        tokens.clone(),
        graph_root.clone(),
        GraphMailboxOptions::default(),
    )?;
    let directory =
        GraphDirectorySource::new(tokens.clone(), graph_root, GraphDirectoryOptions::default())?;
    let users = Arc::new(SqliteUserStore::open(data.join("users.db"))?);
    let archive = Arc::new(DiskArchiveStore::open(
        data.join("archive"),
        StoreOptions::default(),
    )?);
    let engine = Engine::builder()
        .token_provider(tokens)
        .mailbox_source(Arc::new(mail))
        .directory_source(Arc::new(directory))
        .user_store(users.clone())
        .archive_store(archive.clone())
        .checkpoints(CheckpointStore::new(data.join("checkpoints")))
        .options(EngineOptions {
            lock_dir: Some(data.join("locks")),
            history: Some(RunHistory::new(data.join("history"))),
            ..EngineOptions::default()
        })
        .build()?;
    Ok(Stack {
        engine,
        archive,
        users,
    })
}

fn everyone() -> Profile {
    Profile::new(
        "everyone",
        "contoso",
        Source::Multiple {
            select: Select::All,
            users: vec![],
            sync_directory_first: true,
            mailbox_kinds: profile_engine::MailboxKinds::default(),
        },
    )
}

/// `--child-run DIR`: runs the all-mailboxes profile, one `archived` line per message.
pub(super) fn child_run(args: &[String]) -> Result<()> {
    let [dir] = args else {
        bail!("--child-run DIR");
    };
    let tenant = Tenant::decode(&std::env::var(TENANT_ENV).context(TENANT_ENV)?)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let stack = stack(&tenant, Path::new(dir))?;
        let progress = |e: ProgressEvent| {
            if let ProgressEvent::MessageArchived { .. } = e {
                println!("archived");
            }
        };
        let report = stack
            .engine
            .run(&everyone(), &CancellationToken::new(), &progress)
            .await?;
        println!("done {}", serde_json::to_string(&report.status)?);
        Ok(())
    })
}

/// Regular readable mailboxes of the tenant.
fn readable(emu: &Emulator) -> Vec<UserInfo> {
    emu.users()
        .into_iter()
        .filter(|u| u.enabled && !u.guest && u.has_mailbox && !u.access_denied && u.mail.is_some())
        .collect()
}

/// Messages checked, missing or altered, and duplicated entries.
#[derive(Default)]
struct Audit {
    messages: u64,
    lost: u64,
    duplicated: u64,
}

/// Every message of every readable mailbox is in its owner's archive exactly once, byte-exact.
fn audit(emu: &Emulator, stack: &Stack) -> Result<Audit> {
    let stats = stack.archive.stats()?;
    let mut audit = Audit::default();
    for user in readable(emu) {
        let Some(mail) = user.mail.clone() else {
            continue;
        };
        let ids = emu.message_ids(&user.upn);
        let Some(local) = stack.users.find_by_address(&mail)? else {
            eprintln!("   {mail}: not synced; its {} messages are lost", ids.len());
            audit.messages += ids.len() as u64;
            audit.lost += ids.len() as u64;
            continue;
        };
        for id in &ids {
            audit.messages += 1;
            let source = SourceRef {
                mailbox: mail.to_ascii_lowercase(),
                message_id: id.clone(),
            };
            let exact = match stack.archive.find_source(&local.name, &source)? {
                Some(archived) => {
                    let bytes = stack.archive.read_message(&archived).ok();
                    bytes.is_some() && bytes == emu.message_mime(&user.upn, id)
                }
                None => false,
            };
            if !exact {
                audit.lost += 1;
                eprintln!("   {mail}: {id} missing or altered");
            }
        }
        let entries = stats.users.get(&local.name).copied().unwrap_or(0);
        audit.duplicated += entries.saturating_sub(ids.len() as u64);
    }
    Ok(audit)
}

pub(super) async fn run_kills(plan: &Plan, seed: u64) -> Result<Value> {
    let emu = Emulator::start(EmulatorConfig {
        users: plan.run_users,
        messages_per_user: plan.run_messages,
        seed: seed % 1_000_000 + 1,
        time_scale: 20.0,
        ..Default::default()
    })
    .await?;
    let result = run_kills_against(plan, seed, &emu).await;
    emu.shutdown().await;
    result
}

async fn run_kills_against(plan: &Plan, seed: u64, emu: &Emulator) -> Result<Value> {
    let data = tempfile::tempdir()?;
    let tenant = Tenant::of(emu);
    let exe = std::env::current_exe()?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x2B2);
    let total: usize = readable(emu)
        .iter()
        .map(|u| emu.message_count(&u.upn))
        .sum();
    let clock = Instant::now();
    let (mut runs, mut kills, mut finished_early, mut child_failures) = (0u64, 0u64, 0u64, 0u64);
    for _ in 0..plan.run_kills {
        if clock.elapsed() > plan.section_budget {
            break;
        }
        runs += 1;
        // Each killed run gets a little further, so the kills spread over the whole run.
        let kill_after = rng.gen_range(0..=total / (plan.run_kills as usize + 1));
        let mut child = tokio::process::Command::new(&exe)
            .arg("--child-run")
            .arg(data.path())
            .env(TENANT_ENV, tenant.encode())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        let stdout = child.stdout.take().context("child stdout")?;
        let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
        let mut archived = 0usize;
        let mut finished = false;
        let mut reached = false;
        loop {
            let next = tokio::time::timeout(Duration::from_secs(120), lines.next_line()).await;
            let Ok(Ok(Some(line))) = next else { break };
            if line == "archived" {
                archived += 1;
                if archived > kill_after {
                    reached = true;
                    break;
                }
            } else if line.starts_with("done") {
                finished = true;
            }
        }
        if finished {
            finished_early += 1;
        } else {
            child.start_kill()?; // SIGKILL
            if reached {
                kills += 1;
            }
        }
        let status = child.wait().await?;
        if !finished && !reached && status.code().is_some() {
            // Neither killed nor done: the run itself broke off.
            child_failures += 1;
            eprintln!("   run {runs}: the child stopped by itself ({status})");
        }
    }
    // The final run, in this process, to the end.
    let stack = stack(&tenant, data.path())?;
    let report = stack
        .engine
        .run(&everyone(), &CancellationToken::new(), &NoProgress)
        .await?;
    let audit = audit(emu, &stack)?;
    let verify = stack.archive.verify()?;
    Ok(json!({
        "runs": runs + 1, "kills": kills, "finished_before_kill": finished_early,
        "child_failures": child_failures,
        "messages": audit.messages, "lost": audit.lost, "duplicated": audit.duplicated,
        "final_status": report.status, "verify_problems": verify.problems.len() + verify.drift.len(),
    }))
}

pub(super) async fn fault_storm(plan: &Plan, seed: u64) -> Result<Value> {
    let emu = Emulator::start(EmulatorConfig {
        users: plan.storm_users,
        messages_per_user: plan.storm_messages,
        seed: seed % 1_000_000 + 2,
        time_scale: 20.0,
        throttling: true,
        faults: FaultConfig {
            status_503: 0.10,
            status_504: 0.0,
            reset: 0.05,
            truncate: 0.02,
            // Slow answers keep requests in flight long enough to overlap.
            slow_ms: 25,
        },
        ..Default::default()
    })
    .await?;
    let result = fault_storm_against(&emu).await;
    emu.shutdown().await;
    result
}

async fn fault_storm_against(emu: &Emulator) -> Result<Value> {
    // Two independent installations archive the same tenant at once while a noisy
    // neighbour (the same app, two requests at a time per mailbox, at most
    // NEIGHBOUR_REQUESTS each) keeps slots of every mailbox busy: together they exceed Outlook's four concurrent requests per
    // app and mailbox, so Graph throttles them.
    let tenant = Tenant::of(emu);
    let dirs = [tempfile::tempdir()?, tempfile::tempdir()?];
    let stacks = dirs
        .iter()
        .map(|d| stack(&tenant, d.path()))
        .collect::<Result<Vec<_>>>()?;
    let bearer = token_provider(&tenant)?.token().await?.secret().to_owned();
    let graph = url::Url::parse(&tenant.graph)?;
    let stop = CancellationToken::new();
    let client = reqwest::Client::new();
    let mut neighbours = Vec::new();
    for user in readable(emu) {
        let url = graph.join(&format!(
            "v1.0/users/{}/mailFolders/inbox/messages?$top=10",
            user.upn
        ))?;
        for _ in 0..2 {
            let (stop, client, bearer, url) =
                (stop.clone(), client.clone(), bearer.clone(), url.clone());
            neighbours.push(tokio::spawn(async move {
                let mut sent = 0u64;
                while !stop.is_cancelled() && sent < NEIGHBOUR_REQUESTS {
                    sent += 1;
                    if let Ok(response) = client.get(url.clone()).bearer_auth(&bearer).send().await
                    {
                        let _ = response.bytes().await;
                    }
                }
                sent
            }));
        }
    }
    let cancel = CancellationToken::new();
    let profile = everyone();
    let runs = futures::future::join_all(
        stacks
            .iter()
            .map(|s| s.engine.run(&profile, &cancel, &NoProgress)),
    )
    .await;
    stop.cancel();
    let mut neighbour_requests = 0u64;
    for neighbour in neighbours {
        neighbour_requests += neighbour.await.unwrap_or(0);
    }
    let reports = runs.into_iter().collect::<Result<Vec<RunReport>, _>>()?;
    let stats = emu.stats().await;
    let (mut checked, mut lost, mut duplicated, mut verify_problems) = (0, 0, 0, 0);
    for s in &stacks {
        let audit = audit(emu, s)?;
        checked += audit.messages;
        lost += audit.lost;
        duplicated += audit.duplicated;
        let verify = s.archive.verify()?;
        verify_problems += verify.problems.len() + verify.drift.len();
    }
    Ok(json!({
        "runs": reports.len(),
        "neighbour_requests": neighbour_requests,
        "messages": checked,
        "requests": stats.requests_total,
        "faults_injected": stats.faults_total,
        "throttled": stats.throttled_total,
        "max_concurrency": stats.per_mailbox.values().map(|m| m.max_concurrency).max().unwrap_or(0),
        "engine_throttled": reports.iter().map(|r| r.throttled).sum::<u64>(),
        "retries": reports.iter().map(|r| r.retries).sum::<u64>(),
        "messages_failed_in_run": reports.iter().map(|r| r.totals.messages_failed).sum::<u64>(),
        "lost": lost,
        "duplicated": duplicated,
        "verify_problems": verify_problems,
    }))
}
