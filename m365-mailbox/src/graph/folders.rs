//! The folder tree of a mailbox: the survey `$batch` (well-known folder ids, the top
//! level, the first page of `mailFolders/delta`), the probe that rides on it, and the walk
//! over `childFolders` where the folder delta leaves folders out or `$batch` is refused.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{self, StreamExt};
use reqwest::StatusCode;

use super::batch::segment;
use super::op::{Failure, Op, Target};
use super::{Inner, MailboxCtx, lock};
use crate::wire::{self, BatchItem, BatchRequestItem};
use crate::{Folder, MailboxError, paths};
use m365_auth::transport::Refusal;

/// Well-known folder names resolved to ids for [`Folder::well_known_name`] (the root,
/// `msgfolderroot`, is not part of the tree and is not asked for).
pub const WELL_KNOWN_FOLDERS: &[&str] = &[
    "archive",
    "clutter",
    "conflicts",
    "conversationhistory",
    "deleteditems",
    "drafts",
    "inbox",
    "junkemail",
    "localfailures",
    "outbox",
    "recoverableitemsdeletions",
    "scheduled",
    "searchfolders",
    "sentitems",
    "serverfailures",
    "syncissues",
];

/// A first listing page asked in a survey and when (`None`: the folder does not exist).
pub(super) type KeptPage = (std::time::Instant, Option<wire::Page<wire::MailFolder>>);

/// The well-known name of the Recoverable Items root, asked for its children.
const RECOVERABLE_ROOT: &str = "RecoverableItemsRoot";

/// Which tree a walk lists: where its paths start, whether it is Recoverable Items,
/// and the mailbox's well-known folder ids.
struct Tree<'a> {
    base: &'a str,
    recoverable: bool,
    well_known: &'a HashMap<String, String>,
}

/// `Prefer: odata.maxpagesize` of the folder delta: the whole tree in one page where the
/// service allows it (larger trees continue over nextLinks).
const FOLDER_DELTA_PAGE_SIZE: u32 = 1000;
/// How long a folder survey made by `probe` is reused by the following `folders` call
/// instead of asking again.
const SURVEY_REUSE: Duration = Duration::from_secs(120);

/// What one `$batch` tells about a mailbox: its well-known folders, the first page of its
/// top-level folders and the first page of its folder delta (the flat list of every folder
/// with its parent).
#[derive(Debug)]
pub(super) struct Survey {
    /// Well-known folder ids → names.
    well_known: Arc<HashMap<String, String>>,
    /// First page of `GET mailFolders` (the top level, hidden folders included).
    top: Option<wire::Page<wire::MailFolder>>,
    /// First page of `mailFolders/delta`, when the service answered it.
    tree: Option<wire::Page<wire::MailFolder>>,
}

/// Whether a failed well-known folder lookup only means the mailbox lacks that folder
/// (not every mailbox has every well-known folder; some names are refused with 400).
fn lacks_folder(failure: &Failure, name: &str) -> bool {
    match failure {
        Failure::Error(MailboxError::FolderGone { .. } | MailboxError::MessageGone { .. }) => true,
        Failure::Error(MailboxError::Refused { status: 400, .. }) => name != "inbox",
        Failure::SyncReset(_) | Failure::AlreadyDone => true,
        Failure::Error(_) => false,
    }
}

/// Whether a survey error means the service does not serve `$batch` here (the caller
/// then asks one request at a time), as opposed to an error of the mailbox.
fn batch_refused(error: &MailboxError) -> bool {
    matches!(
        error,
        MailboxError::Refused { .. }
            | MailboxError::Malformed { .. }
            | MailboxError::Protocol { .. }
    ) && !error.is_mailbox_wide()
}

impl Inner {
    /// Can the mailbox be read: the survey `folders` needs anyway answers it (its inbox
    /// lookup carries the mailbox's errors) and is kept briefly for that call.
    pub(super) async fn probe(&self, ctx: &MailboxCtx) -> Result<(), MailboxError> {
        if crate::is_archive_mailbox_id(&ctx.mailbox) {
            // Archive mailboxes know no well-known names: their top level answers.
            let op = Op::RootFolders;
            return self
                .json::<wire::Page<wire::MailFolder>>(ctx, &op, &Target::Mailbox)
                .await
                .map(|_| ())
                .map_err(|f| f.into_error(ctx, &op));
        }
        if self.options.batch {
            match self.survey(ctx).await {
                Ok(survey) => {
                    lock(&self.surveys).insert(
                        ctx.mailbox.to_lowercase(),
                        (std::time::Instant::now(), survey),
                    );
                    return Ok(());
                }
                Err(e) if batch_refused(&e) => {
                    tracing::info!(mailbox = %ctx.mailbox, error = %e, "$batch refused; probing the inbox alone");
                }
                Err(e) => return Err(e),
            }
        }
        let op = Op::WellKnownFolder("inbox".into());
        self.json::<wire::IdOnly>(ctx, &op, &Target::Mailbox)
            .await
            .map(|_| ())
            .map_err(|f| f.into_error(ctx, &op))
    }

    /// Ids of the well-known folders of a mailbox (id → name), asked once per mailbox.
    async fn well_known(
        &self,
        ctx: &MailboxCtx,
    ) -> Result<Arc<HashMap<String, String>>, MailboxError> {
        let key = ctx.mailbox.to_lowercase();
        if let Some(cached) = lock(&self.well_known).get(&key) {
            return Ok(cached.clone());
        }
        if crate::is_archive_mailbox_id(&ctx.mailbox) {
            return Ok(Arc::new(HashMap::new()));
        }
        let lookups = WELL_KNOWN_FOLDERS.iter().map(|name| async move {
            let op = Op::WellKnownFolder((*name).to_string());
            let target = Target::Folder((*name).to_string());
            match self.json::<wire::IdOnly>(ctx, &op, &target).await {
                Ok(found) => Ok(Some((found.id, (*name).to_string()))),
                Err(f) if lacks_folder(&f, name) => Ok(None),
                Err(f) => Err(f.into_error(ctx, &op)),
            }
        });
        let mut map = HashMap::new();
        for result in futures::future::join_all(lookups).await {
            if let Some((id, name)) = result? {
                map.insert(id, name);
            }
        }
        let map = Arc::new(map);
        lock(&self.well_known).insert(key, map.clone());
        Ok(map)
    }

    /// One `$batch` asking for every well-known folder id, the top-level folders and the
    /// first page of the folder delta. Inner 429s (and 5xx) are asked again after their
    /// `Retry-After`; the inbox answers for the mailbox (its errors are the mailbox's).
    async fn survey(&self, ctx: &MailboxCtx) -> Result<Survey, MailboxError> {
        let user = segment(&ctx.mailbox);
        let page = self.options.page_size.max(1);
        let mut requests: Vec<BatchRequestItem> = WELL_KNOWN_FOLDERS
            .iter()
            .map(|name| {
                BatchRequestItem::get(
                    format!("wk-{name}"),
                    format!("/users/{user}/mailFolders/{name}?$select=id"),
                    &self.prefer(1),
                )
            })
            .collect();
        requests.push(BatchRequestItem::get(
            "top",
            format!("/users/{user}/mailFolders?includeHiddenFolders=true&$top={page}"),
            &self.prefer(page),
        ));
        requests.push(BatchRequestItem::get(
            "tree",
            format!("/users/{user}/mailFolders/delta"),
            &self.prefer(FOLDER_DELTA_PAGE_SIZE),
        ));
        requests.push(BatchRequestItem::get(
            "recoverable",
            format!(
                "/users/{user}/mailFolders/{RECOVERABLE_ROOT}/childFolders?includeHiddenFolders=true&$top={page}"
            ),
            &self.prefer(page),
        ));
        let answers = self.batch_answered(ctx, requests).await?;
        let mut well_known = HashMap::new();
        let mut top = None;
        let mut tree = None;
        for (id, item) in answers {
            if let Some(name) = id.strip_prefix("wk-") {
                if let Some((id, name)) = self.well_known_answer(ctx, name, &item)? {
                    well_known.insert(id, name);
                }
            } else if id == "recoverable" {
                // Kept for `recoverable_folders`; anything but a page or a 404 is asked
                // again there.
                let first = if item.is_success() {
                    item.body_as::<wire::Page<wire::MailFolder>>().map(Some)
                } else if item.status == 404 {
                    Some(None)
                } else {
                    None
                };
                if let Some(first) = first {
                    lock(&self.recoverable_first).insert(
                        ctx.mailbox.to_lowercase(),
                        (std::time::Instant::now(), first),
                    );
                }
            } else if item.is_success() {
                let page = item.body_as::<wire::Page<wire::MailFolder>>();
                if id == "top" {
                    top = page;
                } else {
                    tree = page;
                }
            } else {
                tracing::debug!(mailbox = %ctx.mailbox, request = %id, status = item.status, "folder listing in the batch refused; asking alone");
            }
        }
        let well_known = Arc::new(well_known);
        lock(&self.well_known).insert(ctx.mailbox.to_lowercase(), well_known.clone());
        Ok(Survey {
            well_known,
            top,
            tree,
        })
    }

    /// The id of a well-known folder from its inner answer; `None` when the mailbox
    /// lacks the folder; an error when the answer is the mailbox's (the inbox's).
    fn well_known_answer(
        &self,
        ctx: &MailboxCtx,
        name: &str,
        item: &BatchItem,
    ) -> Result<Option<(String, String)>, MailboxError> {
        if item.is_success() {
            return Ok(item
                .body_as::<wire::IdOnly>()
                .map(|found| (found.id, name.to_string())));
        }
        let status = StatusCode::from_u16(item.status).unwrap_or(StatusCode::BAD_GATEWAY);
        let op = Op::WellKnownFolder(name.to_string());
        let target = if name == "inbox" {
            Target::Mailbox
        } else {
            Target::Folder(name.to_string())
        };
        let failure = super::classify::classify(
            &ctx.mailbox,
            &op,
            &target,
            Refusal::new(status, item.error()),
        );
        if lacks_folder(&failure, name) {
            Ok(None)
        } else {
            Err(failure.into_error(ctx, &op))
        }
    }

    /// The survey a recent probe made (taken: used once), or a new one; `None` when the
    /// service refuses `$batch` (the caller then asks one by one).
    async fn fresh_survey(&self, ctx: &MailboxCtx) -> Result<Option<Survey>, MailboxError> {
        if !self.options.batch || crate::is_archive_mailbox_id(&ctx.mailbox) {
            return Ok(None);
        }
        let key = ctx.mailbox.to_lowercase();
        let kept = lock(&self.surveys).remove(&key);
        if let Some((made, survey)) = kept
            && made.elapsed() < SURVEY_REUSE
        {
            return Ok(Some(survey));
        }
        match self.survey(ctx).await {
            Ok(s) => Ok(Some(s)),
            Err(e) if batch_refused(&e) => {
                tracing::info!(mailbox = %ctx.mailbox, error = %e, "$batch refused; listing folders one request at a time");
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// All pages of a listing whose first page is in hand; `None` when a later page
    /// fails for a reason that is not the mailbox's (the caller then asks otherwise).
    async fn rest_of(
        &self,
        ctx: &MailboxCtx,
        first: &wire::Page<wire::MailFolder>,
    ) -> Result<Option<Vec<wire::MailFolder>>, MailboxError> {
        let mut items = first.value.clone();
        let mut next = first.next_link.clone();
        while let Some(link) = next {
            let op = Op::Link(self.check_link(ctx, &link)?);
            match self
                .json::<wire::Page<wire::MailFolder>>(ctx, &op, &Target::Mailbox)
                .await
            {
                Ok(page) => {
                    items.extend(page.value);
                    next = page.next_link;
                }
                Err(Failure::Error(e)) if e.is_mailbox_wide() => return Err(e),
                Err(f) => {
                    let e = f.into_error(ctx, &op);
                    tracing::info!(mailbox = %ctx.mailbox, error = %e, "folder listing page failed; asking otherwise");
                    return Ok(None);
                }
            }
        }
        Ok(Some(items))
    }

    /// Every folder of the delta (all pages) grouped by parent id.
    async fn delta_children(
        &self,
        ctx: &MailboxCtx,
        first: &wire::Page<wire::MailFolder>,
    ) -> Result<HashMap<String, Vec<wire::MailFolder>>, MailboxError> {
        let mut children: HashMap<String, Vec<wire::MailFolder>> = HashMap::new();
        for folder in self.rest_of(ctx, first).await?.unwrap_or_default() {
            if let Some(parent) = folder.parent_folder_id.clone() {
                children.entry(parent).or_default().push(folder);
            }
        }
        Ok(children)
    }

    /// The whole folder tree, parents before children, siblings by path.
    pub(super) async fn list_folders(&self, ctx: &MailboxCtx) -> Result<Vec<Folder>, MailboxError> {
        let survey = self.fresh_survey(ctx).await?;
        let well_known = match &survey {
            Some(s) => s.well_known.clone(),
            None => self.well_known(ctx).await?,
        };
        // Children from the folder delta; a parent whose childFolderCount says the delta
        // missed some (it leaves out search folders) is asked for its children.
        let known = match survey.as_ref().and_then(|s| s.tree.as_ref()) {
            Some(first) => Some(self.delta_children(ctx, first).await?),
            None => None,
        };
        let top = match survey.as_ref().and_then(|s| s.top.as_ref()) {
            Some(first) => self.rest_of(ctx, first).await?,
            None => None,
        };
        let roots: Vec<wire::MailFolder> = match top {
            Some(top) => top,
            None => {
                let op = Op::RootFolders;
                self.collect_pages(ctx, op.clone(), &Target::Mailbox)
                    .await
                    .map_err(|f| f.into_error(ctx, &op))?
            }
        };
        let tree = Tree {
            base: "",
            recoverable: false,
            well_known: &well_known,
        };
        self.walk(ctx, roots, &tree, known).await
    }

    /// The Recoverable Items tree: the children of `RecoverableItemsRoot` (hidden
    /// folders included) and theirs; empty when the mailbox has no such root.
    pub(super) async fn list_recoverable(
        &self,
        ctx: &MailboxCtx,
    ) -> Result<Vec<Folder>, MailboxError> {
        let op = Op::ChildFolders(RECOVERABLE_ROOT.into());
        let target = Target::Folder(RECOVERABLE_ROOT.into());
        // The folder survey asked for the first page already (taken: used once).
        let kept = lock(&self.recoverable_first)
            .remove(&ctx.mailbox.to_lowercase())
            .filter(|(made, _)| made.elapsed() < SURVEY_REUSE)
            .map(|(_, first)| first);
        let listed = match kept {
            Some(None) => return Ok(Vec::new()),
            Some(Some(first)) => self.rest_of(ctx, &first).await?,
            None => None,
        };
        let roots: Vec<wire::MailFolder> = match listed {
            Some(roots) => roots,
            None => match self.collect_pages(ctx, op.clone(), &target).await {
                Ok(roots) => roots,
                Err(Failure::Error(MailboxError::FolderGone { .. })) => return Ok(Vec::new()),
                Err(f) => return Err(f.into_error(ctx, &op)),
            },
        };
        // Ids known from the folder survey, when one was made; the fixed system names
        // tell the rest (see `to_folder`).
        let well_known = lock(&self.well_known)
            .get(&ctx.mailbox.to_lowercase())
            .cloned()
            .unwrap_or_default();
        let tree = Tree {
            base: crate::RECOVERABLE_ITEMS_PATH,
            recoverable: true,
            well_known: &well_known,
        };
        self.walk(ctx, roots, &tree, None).await
    }

    /// Walks a tree from its top level, parents before children, siblings by path:
    /// children come from the folder delta (`known`) where it lists them all, else from
    /// `childFolders`.
    async fn walk(
        &self,
        ctx: &MailboxCtx,
        roots: Vec<wire::MailFolder>,
        tree: &Tree<'_>,
        mut known: Option<HashMap<String, Vec<wire::MailFolder>>>,
    ) -> Result<Vec<Folder>, MailboxError> {
        let level_of = |kids: Vec<wire::MailFolder>, parent: Option<&Folder>| {
            let mut level: Vec<(Folder, bool)> = kids
                .into_iter()
                .map(|w| to_folder(w, parent, tree))
                .collect();
            level.sort_by(|a, b| a.0.path.cmp(&b.0.path));
            level
        };
        let mut level = level_of(roots, None);
        let mut all: Vec<Folder> = Vec::new();
        let mut seen: HashSet<String> = HashSet::new();
        while !level.is_empty() {
            // A folder listed twice (or a cycle in a broken answer) is kept once.
            level.retain(|(f, _)| seen.insert(f.id.clone()));
            let mut next_level: Vec<(Folder, bool)> = Vec::new();
            let mut parents: Vec<Folder> = Vec::new();
            for (folder, more) in &level {
                if !*more {
                    continue;
                }
                let listed = known
                    .as_mut()
                    .and_then(|children| children.remove(folder.id.as_str()))
                    .filter(|kids| kids.len() as u64 >= folder.child_folders);
                match listed {
                    Some(kids) => next_level.extend(level_of(kids, Some(folder))),
                    None => parents.push(folder.clone()),
                }
            }
            all.extend(level.drain(..).map(|(f, _)| f));
            let children = stream::iter(parents.into_iter().map(|parent| async move {
                let op = Op::ChildFolders(parent.id.clone());
                let target = Target::Folder(parent.id.clone());
                let found: Result<Vec<wire::MailFolder>, Failure> =
                    self.collect_pages(ctx, op, &target).await;
                (parent, found)
            }))
            .buffered(self.options.limits.max_in_flight.max(1))
            .collect::<Vec<_>>()
            .await;
            for (parent, found) in children {
                match found {
                    Ok(kids) => next_level.extend(level_of(kids, Some(&parent))),
                    Err(Failure::Error(MailboxError::FolderGone { folder_id, .. })) => {
                        tracing::info!(mailbox = %ctx.mailbox, folder = %folder_id, "folder vanished while listing; skipped");
                    }
                    Err(f) => {
                        return Err(f.into_error(ctx, &Op::ChildFolders(parent.id.clone())));
                    }
                }
            }
            level = next_level;
        }
        Ok(all)
    }
}

/// A listed folder as a [`Folder`], and whether its children must be asked for (unless
/// Graph said it has none).
fn to_folder(w: wire::MailFolder, parent: Option<&Folder>, tree: &Tree<'_>) -> (Folder, bool) {
    let name = w.display_name.clone().unwrap_or_default();
    let may_have_children = w.child_folder_count.is_none_or(|n| n > 0);
    // Recoverable Items folders are system folders with fixed names; their well-known
    // names are asked of the service only for Deletions.
    let well_known = tree.well_known.get(&w.id).cloned().or_else(|| {
        if !tree.recoverable || parent.is_some() {
            return None;
        }
        crate::RECOVERABLE_FOLDERS
            .iter()
            .find(|(_, display)| display.eq_ignore_ascii_case(&name))
            .map(|(wk, _)| (*wk).to_string())
    });
    let folder = Folder {
        path: paths::child_path(parent.map_or(tree.base, |p| p.path.as_str()), &name),
        well_known_name: well_known,
        parent_id: parent.map(|p| p.id.clone()),
        total_items: w.total_item_count.unwrap_or(0),
        unread_items: w.unread_item_count.unwrap_or(0),
        child_folders: w.child_folder_count.unwrap_or(0),
        hidden: tree.recoverable || w.is_hidden.unwrap_or(false),
        search_folder: w.is_search_folder(),
        display_name: name,
        id: w.id,
    };
    (folder, may_have_children)
}
