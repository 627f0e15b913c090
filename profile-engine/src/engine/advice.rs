//! What to tell an administrator whose app Graph refused: the application
//! permissions a profile needs, from what it does.

use crate::profile::{DeletionMode, Profile, Source};

/// The Graph application permissions `profile` needs: Mail.Read to archive (Mail.ReadWrite
/// when it deletes archived mail), and with `sync_directory_first` User.Read.All for the
/// directory and MailboxSettings.Read for the mailbox kinds.
pub fn required_permissions(profile: &Profile) -> Vec<&'static str> {
    let mut permissions = vec![if profile.deletion.mode == DeletionMode::Never {
        "Mail.Read"
    } else {
        "Mail.ReadWrite"
    }];
    if let Source::Multiple {
        sync_directory_first: true,
        ..
    } = profile.source
    {
        permissions.extend(["User.Read.All", "MailboxSettings.Read"]);
    }
    permissions
}

/// Advice for a mailbox Graph refused (403) while running `profile`.
pub fn access_denied_advice(profile: &Profile) -> String {
    let mail = if profile.deletion.mode == DeletionMode::Never {
        "Mail.Read (this profile deletes nothing; Mail.ReadWrite works too)"
    } else {
        "Mail.ReadWrite (this profile deletes archived mail)"
    };
    let mut advice = format!(
        "profile {} needs the application permission {mail}",
        profile.name
    );
    if let Source::Multiple {
        sync_directory_first: true,
        ..
    } = profile.source
    {
        advice.push_str(
            ", and for its directory sync User.Read.All and MailboxSettings.Read (mailbox kinds)",
        );
    }
    advice.push_str(
        ", granted with an administrator's consent; if the app has it, an Exchange application \
         access policy (or RBAC for Applications) leaves this mailbox out of the app's scope",
    );
    advice
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::Select;
    use directory_sync::MailboxKinds;

    fn check(mode: DeletionMode, sync: bool, expected: &[&str]) {
        let mut profile = Profile::new(
            "p",
            "c",
            Source::Multiple {
                select: Select::All,
                users: vec![],
                sync_directory_first: sync,
                mailbox_kinds: MailboxKinds::default(),
            },
        );
        profile.deletion.mode = mode;
        assert_eq!(required_permissions(&profile), expected);
        let advice = access_denied_advice(&profile);
        for permission in expected {
            assert!(advice.contains(permission), "{advice}");
        }
        if mode == DeletionMode::Never {
            assert!(advice.contains("Mail.Read ("), "{advice}");
        }
    }

    #[test]
    fn the_permissions_follow_what_the_profile_does() {
        check(DeletionMode::Never, false, &["Mail.Read"]);
        check(DeletionMode::SoftDelete, false, &["Mail.ReadWrite"]);
        check(
            DeletionMode::Never,
            true,
            &["Mail.Read", "User.Read.All", "MailboxSettings.Read"],
        );
    }
}
