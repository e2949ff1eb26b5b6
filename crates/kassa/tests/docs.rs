//! The documents stay true to the code: `docs/risks.md`'s table of where each risk id's tests
//! are must equal what the test names say, and every link between the documents must lead to a
//! file that exists.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn rust_files(dir: &Path, found: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, found);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            found.push(path);
        }
    }
}

/// `risk_g3_risk_g5_…` names G3 and G5.
fn ids_in_test_name(name: &str) -> Vec<String> {
    name.split("risk_")
        .skip(1)
        .filter_map(|part| {
            let id = part.split('_').next()?;
            let mut chars = id.chars();
            let letter = chars.next()?;
            (letter.is_ascii_lowercase()
                && !chars.as_str().is_empty()
                && chars.as_str().chars().all(|c| c.is_ascii_digit()))
            .then(|| id.to_ascii_uppercase())
        })
        .collect()
}

/// Each id the tests name, with the files whose `fn risk_…` names it.
fn ids_in_tests(root: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(&root.join("crates"), &mut files);
    let mut ids: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("readable source");
        let relative = file
            .strip_prefix(root)
            .expect("inside the repository")
            .to_string_lossy()
            .into_owned();
        for line in text.lines() {
            let Some(at) = line.find("fn risk_") else {
                continue;
            };
            let name: String = line[at + 3..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            for id in ids_in_test_name(&name) {
                ids.entry(id).or_default().insert(relative.clone());
            }
        }
    }
    ids
}

#[test]
fn the_risk_catalogue_says_where_every_ids_tests_are() {
    let root = repository();
    let catalogue = std::fs::read_to_string(root.join("docs/risks.md")).expect("docs/risks.md");
    let (_, table) = catalogue
        .split_once("## Where the tests are")
        .expect("the table of tests");
    let mut listed: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for row in table.lines().filter(|line| line.starts_with("| ")) {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let (Some(id), Some(tests)) = (cells.get(1), cells.get(2)) else {
            continue;
        };
        if *id == "id" {
            continue;
        }
        let files = tests
            .split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_owned)
            .collect();
        listed.insert((*id).to_owned(), files);
    }
    let tested = ids_in_tests(&root);
    for (id, files) in &tested {
        assert_eq!(
            listed.get(id),
            Some(files),
            "docs/risks.md's row for {id} must list exactly the files with its tests"
        );
    }
    for (id, files) in &listed {
        if !files.is_empty() {
            assert!(
                tested.contains_key(id),
                "{id} is listed with tests but has none"
            );
        }
        assert!(
            catalogue.contains(&format!("| {id} | ")),
            "{id} is in the catalogue"
        );
    }
}

#[test]
fn links_between_the_documents_lead_somewhere() {
    let root = repository();
    let mut documents = vec![root.join("README.md"), root.join("ARCHITECTURE.md")];
    for dir in ["docs", "docs/guides"] {
        for entry in std::fs::read_dir(root.join(dir)).expect("docs").flatten() {
            if entry.path().extension().is_some_and(|ext| ext == "md") {
                documents.push(entry.path());
            }
        }
    }
    for document in documents {
        let text = std::fs::read_to_string(&document).expect("readable");
        for target in text
            .split("](")
            .skip(1)
            .filter_map(|rest| rest.split(')').next())
        {
            if target.starts_with("http") || target.starts_with('#') {
                continue;
            }
            let path = target.split('#').next().unwrap_or_default();
            let base = document.parent().expect("a folder");
            assert!(
                base.join(path).exists(),
                "{} links to {target}, which does not exist",
                document.display()
            );
        }
    }
}
