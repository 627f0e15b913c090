//! Folder display paths: display names joined by `/`, with a `/` or `\` inside a name
//! escaped as `\/` or `\\`, so that `Projects/2024` (one folder) and `Projects` › `2024`
//! (two folders) never share a path and every path splits back into its exact names.

/// Escapes one display name for use as a path segment.
pub fn escape_segment(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if c == '/' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Appends the escaped `name` to the path of its parent (`""` for the root).
pub fn child_path(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        escape_segment(name)
    } else {
        format!("{parent}/{}", escape_segment(name))
    }
}

/// Joins display names into a path.
pub fn join_path<S: AsRef<str>>(names: &[S]) -> String {
    names
        .iter()
        .map(|n| escape_segment(n.as_ref()))
        .collect::<Vec<_>>()
        .join("/")
}

/// Splits a path back into display names, undoing the escapes.
///
/// Lenient with hand-written paths (profiles): a `\` before any other character, or a
/// trailing `\`, stands for itself.
pub fn split_path(path: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut current = String::new();
    let mut chars = path.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.peek() {
                Some('/') | Some('\\') => {
                    if let Some(next) = chars.next() {
                        current.push(next);
                    }
                }
                _ => current.push('\\'),
            },
            '/' => names.push(std::mem::take(&mut current)),
            other => current.push(other),
        }
    }
    names.push(current);
    names
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn check(names: &[&str], path: &str) {
        assert_eq!(join_path(names), path);
        assert_eq!(split_path(path), names);
    }

    #[test]
    fn plain_names_join_with_slashes() {
        check(&["Inbox"], "Inbox");
        check(&["Inbox", "Projects", "2024"], "Inbox/Projects/2024");
    }

    #[test]
    fn slash_inside_a_name_is_escaped() {
        check(&["Inbox", "Q1/Q2 reports"], "Inbox/Q1\\/Q2 reports");
        check(&["a/b"], "a\\/b");
    }

    #[test]
    fn backslash_inside_a_name_is_escaped() {
        check(&["C:\\temp"], "C:\\\\temp");
        check(&["trail\\", "x"], "trail\\\\/x");
    }

    #[test]
    fn unicode_names_pass_through() {
        check(
            &["Posteingang", "Überweisungen", "日本語"],
            "Posteingang/Überweisungen/日本語",
        );
    }

    #[test]
    fn child_path_of_root_is_the_escaped_name() {
        assert_eq!(child_path("", "a/b"), "a\\/b");
        assert_eq!(child_path("Inbox", "a/b"), "Inbox/a\\/b");
    }

    #[test]
    fn lone_backslash_in_hand_written_path_stands_for_itself() {
        assert_eq!(split_path("a\\b/c\\"), vec!["a\\b", "c\\"]);
    }

    proptest! {
        #[test]
        fn split_undoes_join(names in prop::collection::vec(".*", 1..6)) {
            let path = join_path(&names);
            prop_assert_eq!(split_path(&path), names);
        }

        #[test]
        fn distinct_name_lists_give_distinct_paths(
            a in prop::collection::vec("[a/\\\\]{0,4}", 1..4),
            b in prop::collection::vec("[a/\\\\]{0,4}", 1..4),
        ) {
            if a != b {
                prop_assert_ne!(join_path(&a), join_path(&b));
            }
        }

        #[test]
        fn split_never_panics(path in ".*") {
            let _ = split_path(&path);
        }
    }
}
