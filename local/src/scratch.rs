//! Throwaway directories that outlive no process. An in-memory stack keeps its S3 objects in
//! one; dropping the stack removes it, but a process can end without dropping it: a test
//! binary's shared stack lives in a `static` (never dropped), and a `forum-local --in-memory`
//! stopped by a signal never unwinds. Each such run left its directory behind (146 of them,
//! 730 MB, in this machine's temp directory after a few weeks of test runs). So each directory
//! holds a lock file, locked for as long as its process runs (the OS releases it however the
//! process ends), and creating one first removes every directory of its kind whose lock is
//! free.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

const LOCK_FILE: &str = "owner.lock";

/// A directory of the kind without a lock file was made by a build from before the locks;
/// younger than this, its run may still be going.
const UNLOCKED_GRACE: Duration = Duration::from_secs(600);

/// A directory under the system's temp directory, removed when dropped, or by the next
/// [`ScratchDir::create`] of its kind after its process ended.
pub struct ScratchDir {
    path: PathBuf,
    /// Held open, and so locked, for as long as the directory is in use.
    _lock: File,
}

impl ScratchDir {
    /// Creates `<temp>/<prefix><ulid>`, after removing every `<temp>/<prefix>*` no live process
    /// holds.
    pub fn create(prefix: &str) -> io::Result<ScratchDir> {
        let temp = std::env::temp_dir();
        sweep(&temp, prefix);
        // Made and locked under a name no sweep matches, then renamed into place: a sweep in
        // between would have found it unlocked (the lock stays with the file across a rename).
        let name = format!("{prefix}{}", ulid::Ulid::new());
        let making = temp.join(format!(".{name}"));
        std::fs::create_dir(&making)?;
        let lock = File::create(making.join(LOCK_FILE))?;
        lock.lock()?;
        let path = temp.join(name);
        std::fs::rename(&making, &path)?;
        Ok(ScratchDir { path, _lock: lock })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Removes the directories of `prefix` under `temp` that no process holds. Best effort: one
/// that cannot be read or removed is left for the next sweep.
fn sweep(temp: &Path, prefix: &str) {
    let Ok(entries) = std::fs::read_dir(temp) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        let ours = entry.file_name().to_str().is_some_and(|name| name.starts_with(prefix));
        if ours && path.is_dir() && abandoned(&path) {
            match std::fs::remove_dir_all(&path) {
                Ok(()) => tracing::debug!(path = %path.display(), "removed a scratch directory its process left"),
                Err(e) => tracing::debug!(path = %path.display(), error = %e, "a left scratch directory stays"),
            }
        }
    }
}

fn abandoned(dir: &Path) -> bool {
    match File::open(dir.join(LOCK_FILE)) {
        // Locked: its process still runs. Taken here, the lock is released when `lock` drops.
        Ok(lock) => lock.try_lock().is_ok(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => std::fs::metadata(dir)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|modified| SystemTime::now().duration_since(modified).ok())
            .is_some_and(|age| age > UNLOCKED_GRACE),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_directory_stays_and_one_whose_owner_is_gone_is_removed() {
        let prefix = format!("forum-scratch-test-{}-", ulid::Ulid::new());
        let held = ScratchDir::create(&prefix).unwrap();
        // What a process that ended without dropping its directory leaves: an unlocked lock.
        let left = std::env::temp_dir().join(format!("{prefix}left"));
        std::fs::create_dir_all(left.join("s3")).unwrap();
        File::create(left.join(LOCK_FILE)).unwrap();
        // One without a lock file (an older build's), made recently, is left alone too.
        let new = std::env::temp_dir().join(format!("{prefix}new"));
        std::fs::create_dir_all(&new).unwrap();

        let second = ScratchDir::create(&prefix).unwrap();
        assert!(held.path().is_dir(), "a directory its process holds stays");
        assert!(!left.exists(), "a directory nobody holds is removed");
        assert!(new.is_dir(), "a directory younger than the grace period stays");

        let (held_path, second_path) = (held.path().to_path_buf(), second.path().to_path_buf());
        drop(held);
        drop(second);
        assert!(!held_path.exists() && !second_path.exists(), "dropped, each is removed");
        std::fs::remove_dir_all(new).unwrap();
    }
}
