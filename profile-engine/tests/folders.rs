//! Folder selection (`[folders]` include/exclude, subfolders, search folders),
//! property-tested over random folder trees and rules.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use m365_mailbox::Folder;
use profile_engine::{FolderRules, select_folders};
use proptest::prelude::*;

const WELL_KNOWN: &[&str] = &["inbox", "sentitems", "deleteditems", "junkemail", "archive"];

/// A random tree: folder `i` has parent `parents[i] < i` (or none).
fn tree(parents: &[Option<usize>], search: &[bool]) -> Vec<Folder> {
    let mut folders: Vec<Folder> = Vec::new();
    for (i, parent) in parents.iter().enumerate() {
        let parent = parent.filter(|p| *p < i);
        let name = format!("F{i}");
        let path = match parent {
            Some(p) => format!("{}/{name}", folders[p].path),
            None => name.clone(),
        };
        folders.push(Folder {
            id: format!("id{i}"),
            path,
            display_name: name,
            well_known_name: (parent.is_none() && i < WELL_KNOWN.len())
                .then(|| WELL_KNOWN[i].to_owned()),
            parent_id: parent.map(|p| format!("id{p}")),
            total_items: 0,
            unread_items: 0,
            child_folders: 0,
            hidden: false,
            search_folder: search.get(i).copied().unwrap_or(false),
        });
    }
    folders
}

fn ancestors<'a>(folders: &'a [Folder], f: &'a Folder) -> Vec<&'a Folder> {
    let mut out = Vec::new();
    let mut current = f.parent_id.as_deref();
    while let Some(id) = current {
        let parent = folders.iter().find(|x| x.id == id).unwrap();
        out.push(parent);
        current = parent.parent_id.as_deref();
    }
    out
}

fn matches(f: &Folder, patterns: &[String]) -> bool {
    patterns.iter().any(|p| {
        p.eq_ignore_ascii_case(&f.path)
            || f.well_known_name
                .as_deref()
                .is_some_and(|w| w.eq_ignore_ascii_case(p))
    })
}

fn pattern_for(folders: &[Folder], pick: usize, use_well_known: bool, upper: bool) -> String {
    let f = &folders[pick % folders.len()];
    let p = match (&f.well_known_name, use_well_known) {
        (Some(w), true) => w.clone(),
        _ => f.path.clone(),
    };
    if upper { p.to_uppercase() } else { p }
}

proptest! {
    #[test]
    fn selection_follows_the_rules(
        parents in proptest::collection::vec(proptest::option::of(0usize..20), 1..20),
        search in proptest::collection::vec(proptest::bool::weighted(0.1), 20),
        include in proptest::collection::vec((0usize..20, any::<bool>(), any::<bool>()), 0..3),
        exclude in proptest::collection::vec((0usize..20, any::<bool>(), any::<bool>()), 0..3),
        subfolders in any::<bool>(),
    ) {
        let folders = tree(&parents, &search);
        let rules = FolderRules {
            include: include.iter().map(|(i, w, u)| pattern_for(&folders, *i, *w, *u)).collect(),
            exclude: exclude.iter().map(|(i, w, u)| pattern_for(&folders, *i, *w, *u)).collect(),
            include_subfolders: subfolders,
            ..FolderRules::default()
        };
        let selected: Vec<&str> = select_folders(&folders, &rules).iter().map(|f| f.id.as_str()).collect();
        for f in &folders {
            let up = ancestors(&folders, f);
            let searchy = f.search_folder || up.iter().any(|a| a.search_folder);
            let included = rules.include.is_empty()
                || matches(f, &rules.include)
                || (subfolders && up.iter().any(|a| matches(a, &rules.include)));
            let excluded = matches(f, &rules.exclude) || up.iter().any(|a| matches(a, &rules.exclude));
            let expected = !searchy && included && !excluded;
            prop_assert_eq!(selected.contains(&f.id.as_str()), expected, "{} with {:?}", f.path, rules);
        }
        // Parents before children, as the tree was given.
        let order: Vec<usize> = selected.iter().map(|id| folders.iter().position(|f| f.id == *id).unwrap()).collect();
        prop_assert!(order.windows(2).all(|w| w[0] < w[1]));
    }
}

#[test]
fn well_known_names_and_paths_select_as_documented() {
    let folders = tree(
        &[None, None, Some(0), Some(2), None],
        &[false, false, false, false, true],
    );
    let pick = |include: &[&str], exclude: &[&str], sub: bool| -> Vec<String> {
        let rules = FolderRules {
            include: include.iter().map(|s| s.to_string()).collect(),
            exclude: exclude.iter().map(|s| s.to_string()).collect(),
            include_subfolders: sub,
            ..FolderRules::default()
        };
        select_folders(&folders, &rules)
            .iter()
            .map(|f| f.path.clone())
            .collect()
    };
    assert_eq!(
        pick(&[], &[], true),
        vec!["F0", "F1", "F0/F2", "F0/F2/F3"],
        "search folder F4 never"
    );
    assert_eq!(pick(&["inbox"], &[], true), vec!["F0", "F0/F2", "F0/F2/F3"]);
    assert_eq!(pick(&["inbox"], &[], false), vec!["F0"]);
    assert_eq!(pick(&["/f0/f2/"], &[], false), vec!["F0/F2"]);
    assert_eq!(pick(&[], &["F0/F2"], true), vec!["F0", "F1"]);
    assert_eq!(
        pick(&["sentitems"], &["sentitems"], true),
        Vec::<String>::new(),
        "exclude wins"
    );
}
