//! Every configuration in `examples/` is valid and listed in `examples/README.md`.
//! The directory is read at test time, so a new example is covered as soon as it
//! is added.

use std::path::{Path, PathBuf};

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples")
}

/// Every `examples/*.toml`, sorted so failures come in a stable order.
fn example_files() -> Vec<PathBuf> {
    let dir = examples_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|ext| ext == "toml"))
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "no *.toml files in {}: expected at least one example",
        dir.display()
    );
    files
}

#[test]
fn every_example_passes_check() {
    let mut failures = Vec::new();
    for path in example_files() {
        let path_string = path.display().to_string();
        let source = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {path_string}: {e}"));
        if let Err(errors) = strait::check(&path_string, &source, &strait::CustomRegistry::new()) {
            failures.push(errors.to_string());
        }
    }
    assert!(
        failures.is_empty(),
        "examples that fail `strait check`:\n{}",
        failures.join("\n")
    );
}

#[test]
fn every_example_is_listed_in_the_readme() {
    let readme_path = examples_dir().join("README.md");
    let readme = std::fs::read_to_string(&readme_path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", readme_path.display()));
    let missing: Vec<String> = example_files()
        .iter()
        .filter_map(|p| p.file_name()?.to_str().map(str::to_owned))
        .filter(|name| !readme.contains(name.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "examples/README.md does not mention {missing:?}: expected one line per example"
    );
}
