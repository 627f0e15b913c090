//! Graph's refusals (HTTP status + Graph error body) and exhausted retries turned into
//! [`MailboxError`]s a caller can act on, or into a delta reset.

use std::time::Duration;

use m365_auth::transport::{Fault, GaveUp, Refusal};
use reqwest::StatusCode;

use super::op::{Failure, Op, Target};
use crate::MailboxError;

/// Whether a refusal of `$value` says the service cannot render the item as MIME: Graph
/// answers "text does not support structured data" (Exchange's conversion error codes
/// say the same), the same every time.
pub(super) fn is_unconvertible(refusal: &Refusal) -> bool {
    let code = refusal.code();
    let message = refusal.message().to_ascii_lowercase();
    message.contains("does not support structured data")
        || code.eq_ignore_ascii_case("ErrorMimeContentConversionFailed")
        || code.eq_ignore_ascii_case("ErrorContentConversionFailed")
}

/// Turns a final refusal into an error (or a delta reset).
pub(super) fn classify(mailbox: &str, op: &Op, target: &Target, refusal: Refusal) -> Failure {
    if refusal.is_sync_reset() {
        return Failure::SyncReset(refusal);
    }
    if let Op::Mime(id) = op
        && is_unconvertible(&refusal)
    {
        return Failure::Error(MailboxError::Unconvertible {
            mailbox: mailbox.to_string(),
            message_id: id.clone(),
            code: refusal.code().to_string(),
            message: refusal.message().to_string(),
        });
    }
    Failure::Error(refusal_error(mailbox, &op.label(), target, refusal))
}

/// The error for a final refusal of any request, reads and writes alike (`operation`
/// names the request in [`MailboxError::Refused`]).
pub(super) fn refusal_error(
    mailbox: &str,
    operation: &str,
    target: &Target,
    refusal: Refusal,
) -> MailboxError {
    let mailbox = mailbox.to_string();
    let folder_gone = |mailbox: String| MailboxError::FolderGone {
        mailbox,
        folder_id: match target {
            Target::Folder(id) => id.clone(),
            _ => String::new(),
        },
    };
    let code = refusal.code().to_string();
    let message = refusal.message().to_string();
    match refusal.status {
        StatusCode::UNAUTHORIZED => MailboxError::TokenRejected {
            mailbox,
            code,
            message,
        },
        StatusCode::FORBIDDEN => MailboxError::AccessDenied {
            mailbox,
            code,
            message,
        },
        StatusCode::NOT_FOUND => match code.as_str() {
            "MailboxNotEnabledForRESTAPI"
            | "MailboxNotSupportedForRESTAPI"
            | "ErrorNonExistentMailbox" => MailboxError::NoMailbox { mailbox },
            "ErrorInvalidUser" | "Request_ResourceNotFound" | "UserNotFound" => {
                MailboxError::UnknownUser { mailbox, code }
            }
            "ErrorFolderNotFound" => folder_gone(mailbox),
            _ => match target {
                Target::Message(id) => MailboxError::MessageGone {
                    mailbox,
                    message_id: id.clone(),
                },
                Target::Folder(_) => folder_gone(mailbox),
                Target::Mailbox => MailboxError::NoMailbox { mailbox },
            },
        },
        status => MailboxError::Refused {
            mailbox,
            operation: operation.to_string(),
            status: status.as_u16(),
            code,
            message,
        },
    }
}

/// The error when the retry limits ran out: a timeout when the last attempt timed out.
pub(super) fn gave_up(
    mailbox: &str,
    operation: &str,
    timeout: Duration,
    gave_up: GaveUp,
) -> MailboxError {
    let last = match &gave_up.last {
        Fault::Timeout(_) => {
            return MailboxError::Timeout {
                mailbox: mailbox.to_string(),
                operation: operation.to_string(),
                after: timeout,
                attempts: gave_up.attempts,
            };
        }
        Fault::Refused(r) if r.status == StatusCode::TOO_MANY_REQUESTS => {
            format!("still throttled after {} 429 answers", gave_up.throttled)
        }
        other => other.to_string(),
    };
    MailboxError::RetriesExhausted {
        mailbox: mailbox.to_string(),
        operation: operation.to_string(),
        attempts: gave_up.attempts,
        last,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use m365_auth::transport::GraphError;

    /// What a refusal became, as a short name.
    fn outcome(f: &Failure) -> String {
        match f {
            Failure::Error(e) => {
                let debug = format!("{e:?}");
                debug
                    .split([' ', '{', '('])
                    .next()
                    .unwrap_or_default()
                    .to_string()
            }
            Failure::SyncReset(_) => "SyncReset".into(),
            Failure::AlreadyDone => "AlreadyDone".into(),
        }
    }

    fn check(target: Target, status: u16, code: &str, expected: &str) {
        let error = (!code.is_empty()).then(|| GraphError::new(code, "m"));
        let refusal = Refusal::new(StatusCode::from_u16(status).unwrap(), error);
        let got = classify("a@x", &Op::RootFolders, &target, refusal);
        assert_eq!(outcome(&got), expected, "{status} {code:?} on {target:?}");
    }

    #[test]
    fn refusals_map_to_actionable_errors() {
        let folder = || Target::Folder("F".into());
        let message = || Target::Message("M".into());
        for (target, status, code, expected) in [
            (
                Target::Mailbox,
                404,
                "MailboxNotEnabledForRESTAPI",
                "NoMailbox",
            ),
            (
                Target::Mailbox,
                404,
                "MailboxNotSupportedForRESTAPI",
                "NoMailbox",
            ),
            (Target::Mailbox, 404, "ErrorNonExistentMailbox", "NoMailbox"),
            (Target::Mailbox, 404, "ResourceNotFound", "NoMailbox"),
            (Target::Mailbox, 404, "", "NoMailbox"),
            (Target::Mailbox, 404, "ErrorInvalidUser", "UnknownUser"),
            (message(), 404, "Request_ResourceNotFound", "UnknownUser"),
            (Target::Mailbox, 403, "ErrorAccessDenied", "AccessDenied"),
            (
                Target::Mailbox,
                401,
                "InvalidAuthenticationToken",
                "TokenRejected",
            ),
            (folder(), 404, "ErrorFolderNotFound", "FolderGone"),
            (message(), 404, "ErrorFolderNotFound", "FolderGone"),
            (folder(), 404, "ErrorItemNotFound", "FolderGone"),
            (message(), 404, "ErrorItemNotFound", "MessageGone"),
            (folder(), 410, "", "SyncReset"),
            (folder(), 400, "syncStateNotFound", "SyncReset"),
            (folder(), 400, "SyncStateInvalid", "SyncReset"),
            (folder(), 400, "resyncRequired", "SyncReset"),
            (Target::Mailbox, 400, "BadRequest", "Refused"),
            (Target::Mailbox, 400, "", "Refused"),
            (Target::Mailbox, 405, "", "Refused"),
            (message(), 413, "ErrorMessageSizeExceeded", "Refused"),
        ] {
            check(target, status, code, expected);
        }
    }

    #[test]
    fn an_item_without_mime_is_unconvertible_whatever_the_status() {
        for (status, code, message) in [
            (
                500,
                "ErrorInternalServerError",
                "Text does not support structured data.",
            ),
            (
                400,
                "ErrorInvalidRequest",
                "text does not support structured data",
            ),
            (500, "ErrorMimeContentConversionFailed", "conversion failed"),
        ] {
            let refusal = Refusal::new(
                StatusCode::from_u16(status).unwrap(),
                Some(GraphError::new(code, message)),
            );
            let got = classify(
                "a@x",
                &Op::Mime("M".into()),
                &Target::Message("M".into()),
                refusal,
            );
            let Failure::Error(e @ MailboxError::Unconvertible { .. }) = &got else {
                panic!("{status} {code}: {}", outcome(&got));
            };
            assert!(e.is_permanent() && !e.is_transient() && !e.is_mailbox_wide());
        }
        // The same words on another request are not about an item.
        let refusal = Refusal::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            Some(GraphError::new(
                "x",
                "text does not support structured data",
            )),
        );
        let got = classify("a@x", &Op::RootFolders, &Target::Mailbox, refusal);
        assert_eq!(outcome(&got), "Refused");
    }

    #[test]
    fn refused_keeps_status_and_code() {
        let refusal = Refusal::new(
            StatusCode::BAD_REQUEST,
            Some(GraphError::new("ErrorInvalidIdMalformed", "bad id")),
        );
        let Failure::Error(MailboxError::Refused { status, code, .. }) =
            classify("a@x", &Op::RootFolders, &Target::Mailbox, refusal)
        else {
            panic!("not Refused");
        };
        assert_eq!((status, code.as_str()), (400, "ErrorInvalidIdMalformed"));
    }

    #[test]
    fn exhausted_retries_name_the_last_failure() {
        let op = Op::Mime("M".into()).label();
        let timeout = Duration::from_secs(5);
        let give = |last: Fault| {
            gave_up(
                "a@x",
                &op,
                timeout,
                GaveUp {
                    attempts: 3,
                    throttled: 2,
                    last,
                },
            )
        };
        assert!(matches!(
            give(Fault::Timeout(timeout)),
            MailboxError::Timeout { attempts: 3, .. }
        ));
        let throttled = give(Fault::Refused(Refusal::new(
            StatusCode::TOO_MANY_REQUESTS,
            None,
        )));
        assert!(throttled.is_transient());
        assert!(
            throttled.to_string().contains("2 429 answers"),
            "{throttled}"
        );
        let fault = give(Fault::Network("connection reset".into()));
        assert!(matches!(
            &fault,
            MailboxError::RetriesExhausted { last, .. } if last == "connection reset"
        ));
    }
}
