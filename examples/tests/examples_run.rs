//! Runs the command-line and archive examples as tests, so CI proves they work.

#[allow(dead_code)]
#[path = "../archive_one_mailbox.rs"]
mod archive_one_mailbox;

#[allow(dead_code)]
#[path = "../search_archive.rs"]
mod search_archive;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archive_one_mailbox_runs() -> anyhow::Result<()> {
    archive_one_mailbox::run().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_archive_runs() -> anyhow::Result<()> {
    search_archive::run().await
}
