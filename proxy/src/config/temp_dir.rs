//! `server.temp_dir`: the directory for request bodies buffered beyond memory. `weir -t`
//! checks that weir can write there (or create it) without creating anything itself.

use std::path::Path;

/// `Ok` when `dir` is a writable directory, or does not exist yet and its nearest existing
/// parent is one (weir creates it when it starts). The reason otherwise.
pub fn check(dir: &Path) -> Result<(), String> {
    let existing = dir
        .ancestors()
        .find(|d| d.exists())
        .unwrap_or(Path::new("/"));
    if !existing.is_dir() {
        return Err(format!("{} is not a directory", existing.display()));
    }
    // An unnamed temp file (O_TMPFILE where the file system has it): nothing is left behind.
    match tempfile::tempfile_in(existing) {
        Ok(_) => Ok(()),
        Err(e) if existing == dir => Err(format!("cannot write in {}: {e}", dir.display())),
        Err(e) => Err(format!(
            "cannot create {}: cannot write in {}: {e}",
            dir.display(),
            existing.display()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_existing_writable_directory_passes() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(check(dir.path()), Ok(()));
    }

    #[test]
    fn a_missing_directory_under_a_writable_one_passes_and_is_not_created() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("a/b");
        assert_eq!(check(&missing), Ok(()));
        assert!(!missing.exists());
    }

    #[test]
    fn a_file_in_the_way_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"x").unwrap();
        let err = check(&file.join("tmp")).unwrap_err();
        assert!(err.contains("is not a directory"), "{err}");
    }
}
