//! MIME download: `GET messages/{id}/$value` streamed into memory or, past the spool
//! threshold, a private temporary file; checked against the size cap and the announced
//! length, so a truncated body is asked again and never returned.

use std::path::PathBuf;

use bytes::BytesMut;
use m365_auth::transport::{BodyError, RequestCounters, check_length, next_chunk};
use tokio::io::AsyncWriteExt;

use super::op::{Failure, Op, ReadAnswer, Target};
use super::{Inner, MailboxCtx};
use crate::{MailboxError, MimeContent};

/// How a MIME body is read: the size cap and where large bodies go.
struct MimeRead {
    threshold: u64,
    max_bytes: u64,
    spool_dir: Option<PathBuf>,
    message_id: String,
}

/// Where MIME bytes go while they arrive.
enum Sink {
    Memory(BytesMut),
    File {
        writer: tokio::io::BufWriter<tokio::fs::File>,
        path: tempfile::TempPath,
    },
}

impl Inner {
    /// The raw MIME bytes of message `id`, at most `max_bytes`.
    pub(super) async fn fetch(
        &self,
        ctx: &MailboxCtx,
        id: &str,
        max_bytes: u64,
    ) -> Result<MimeContent, MailboxError> {
        let op = Op::Mime(id.to_string());
        let target = Target::Message(id.to_string());
        let read = MimeRead {
            threshold: self.options.spool_threshold,
            max_bytes,
            spool_dir: self.options.spool_dir.clone(),
            message_id: id.to_string(),
        };
        self.run(ctx, &op, &target, read)
            .await
            .map_err(|f| f.into_error(ctx, &op))
    }
}

impl ReadAnswer for MimeRead {
    type Output = MimeContent;

    async fn read(
        &self,
        ctx: &MailboxCtx,
        _op: &Op,
        mut response: reqwest::Response,
        counters: &RequestCounters,
    ) -> Result<MimeContent, BodyError<Failure>> {
        let too_large = |size: u64| {
            BodyError::Fatal(Failure::Error(MailboxError::TooLarge {
                mailbox: ctx.mailbox.clone(),
                message_id: self.message_id.clone(),
                size,
                limit: self.max_bytes,
            }))
        };
        let io_error = |source: std::io::Error| {
            BodyError::Fatal(Failure::Error(MailboxError::Io {
                mailbox: ctx.mailbox.clone(),
                doing: format!("spooling message {}", self.message_id),
                source,
            }))
        };
        let expected = response.content_length();
        if let Some(n) = expected
            && n > self.max_bytes
        {
            return Err(too_large(n));
        }
        let mut sink = if expected.is_some_and(|n| n > self.threshold) {
            self.spool_file().map_err(io_error)?
        } else {
            Sink::Memory(BytesMut::with_capacity(
                expected.map_or(64 << 10, |n| n as usize),
            ))
        };
        let mut received: u64 = 0;
        while let Some(chunk) = next_chunk(&mut response, ctx.timeout, counters)
            .await
            .map_err(BodyError::Retry)?
        {
            received += chunk.len() as u64;
            if received > self.max_bytes {
                return Err(too_large(received));
            }
            if let Sink::Memory(buf) = &mut sink
                && received > self.threshold
            {
                let mut file = self.spool_file().map_err(io_error)?;
                if let Sink::File { writer, .. } = &mut file {
                    writer.write_all(buf).await.map_err(io_error)?;
                }
                sink = file;
            }
            match &mut sink {
                Sink::Memory(buf) => buf.extend_from_slice(&chunk),
                Sink::File { writer, .. } => writer.write_all(&chunk).await.map_err(io_error)?,
            }
        }
        check_length(expected, received).map_err(BodyError::Retry)?;
        match sink {
            Sink::Memory(buf) => Ok(MimeContent::Memory(buf.freeze())),
            Sink::File { mut writer, path } => {
                writer.flush().await.map_err(io_error)?;
                drop(writer);
                Ok(MimeContent::Spooled(path))
            }
        }
    }
}

impl MimeRead {
    fn spool_file(&self) -> std::io::Result<Sink> {
        let named = match &self.spool_dir {
            Some(dir) => tempfile::Builder::new().prefix("mime-").tempfile_in(dir)?,
            None => tempfile::Builder::new().prefix("mime-").tempfile()?,
        };
        let (file, path) = named.into_parts();
        let writer = tokio::io::BufWriter::with_capacity(1 << 20, tokio::fs::File::from_std(file));
        Ok(Sink::File { writer, path })
    }
}
