//! Who holds a running run: an OS advisory lock per running run, so that a run whose
//! process died is noticed at once instead of when its lease expires.
//!
//! When a store opens run `N` it creates `<database>.runs/N.lock` beside the database file
//! and holds an exclusive advisory lock on it (`flock` on Unix, `LockFileEx` on Windows)
//! until the run commits or is ended; the file names the holder's process id and, on
//! Linux, the machine's boot id. The kernel drops the lock when the process dies, however
//! it dies (`kill -9` included). A store that finds run `N` running with a lease that has
//! not expired tries to take the lock: if it gets it, the holder is dead and the run is
//! abandoned with [`RunEnd::holder_died`](sync_core::RunEnd::holder_died).
//!
//! The lock belongs to an open file description, not to a process: another store in the
//! same process opens its own description and sees the lock held, exactly as another
//! process does. When the file is missing (a run opened by an older version), cannot be
//! opened, or names another machine's boot, the store cannot tell and the lease decides,
//! as it always did.

use std::collections::HashMap;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

/// The locks this store holds, and where lock files live.
#[derive(Debug)]
pub(crate) struct Holders {
    dir: PathBuf,
    held: Mutex<HashMap<i64, File>>,
    boot: Option<String>,
}

/// The lock of a run whose holder was seen dead, held until the run is marked abandoned.
#[derive(Debug)]
pub(crate) struct DeadHolder {
    file: File,
    path: PathBuf,
}

impl DeadHolder {
    /// Removes the lock file of the run, now ended, then lets the lock go.
    pub(crate) fn clear(self) {
        remove(&self.path);
        drop(self.file);
    }
}

fn remove(path: &Path) {
    if let Err(e) = std::fs::remove_file(path)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::debug!(path = %path.display(), error = %e, "could not remove a run's lock file");
    }
}

/// The directory of the lock files of the database at `db`: `<db>.runs`.
pub(crate) fn lock_dir(db: &Path) -> PathBuf {
    let mut dir = db.as_os_str().to_owned();
    dir.push(".runs");
    PathBuf::from(dir)
}

/// This boot of this machine, where the OS says (Linux).
fn boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

impl Holders {
    /// The holders of runs of the database at `db`.
    pub(crate) fn new(db: &Path) -> Self {
        // Absolute, as SQLite keeps the database's path: a later change of the working
        // directory does not move the lock files.
        let db = std::path::absolute(db).unwrap_or_else(|_| db.to_path_buf());
        Self {
            dir: lock_dir(&db),
            held: Mutex::new(HashMap::new()),
            boot: boot_id(),
        }
    }

    fn held(&self) -> MutexGuard<'_, HashMap<i64, File>> {
        self.held
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    fn path(&self, run: i64) -> PathBuf {
        self.dir.join(format!("{run}.lock"))
    }

    /// Takes the lock of the new run `run` and keeps it until [`release`](Self::release).
    /// Best effort: when the lock cannot be taken, the run is held by its lease alone (and
    /// a crash of this process is noticed when the lease expires).
    pub(crate) fn hold(&self, run: i64) {
        match self.lock_new(run) {
            Ok(file) => {
                self.held().insert(run, file);
            }
            Err(e) => tracing::warn!(
                run,
                dir = %self.dir.display(),
                error = %e,
                "could not lock the run's lock file; if this process dies, the run is abandoned when its lease expires"
            ),
        }
    }

    fn lock_new(&self, run: i64) -> std::io::Result<File> {
        std::fs::create_dir_all(&self.dir)?;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(self.path(run))?;
        file.try_lock().map_err(|e| match e {
            TryLockError::WouldBlock => std::io::Error::new(
                std::io::ErrorKind::WouldBlock,
                "another process holds a lock file of the same name",
            ),
            TryLockError::Error(e) => e,
        })?;
        file.set_len(0)?;
        let boot = self.boot.as_deref().unwrap_or("-");
        write!(file, "pid {}\nboot {boot}\n", std::process::id())?;
        Ok(file)
    }

    /// Lets the lock of `run` go and removes its file: the run has ended, or this store no
    /// longer holds it.
    pub(crate) fn release(&self, run: i64) {
        if let Some(file) = self.held().remove(&run) {
            remove(&self.path(run));
            drop(file);
        }
    }

    /// The lock of the running run `run` when its holder is provably dead: its lock file
    /// exists, names this machine (where the OS tells), and nobody holds its lock. `None`
    /// when the holder lives or the store cannot tell.
    pub(crate) fn dead_holder(&self, run: i64) -> Option<DeadHolder> {
        if self.held().contains_key(&run) {
            return None;
        }
        let path = self.path(run);
        let mut file = match OpenOptions::new().read(true).write(true).open(&path) {
            Ok(file) => file,
            Err(e) => {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::debug!(run, error = %e, "cannot open a run's lock file; the lease decides");
                }
                return None;
            }
        };
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return None,
            Err(TryLockError::Error(e)) => {
                tracing::debug!(run, error = %e, "cannot lock a run's lock file; the lease decides");
                return None;
            }
        }
        let mut text = String::new();
        if file.read_to_string(&mut text).is_err() {
            return None;
        }
        let recorded = text
            .lines()
            .find_map(|l| l.strip_prefix("boot "))
            .filter(|b| *b != "-");
        if let (Some(recorded), Some(ours)) = (recorded, self.boot.as_deref())
            && recorded != ours
        {
            // Written on another machine (a shared file system) or before a reboot: its
            // lock says nothing here.
            return None;
        }
        Some(DeadHolder { file, path })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lock_is_held_against_other_handles_of_the_same_process() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("x.db");
        let (a, b) = (Holders::new(&db), Holders::new(&db));
        a.hold(7);
        assert!(lock_dir(&db).join("7.lock").exists());
        assert!(a.dead_holder(7).is_none(), "its own run");
        assert!(
            b.dead_holder(7).is_none(),
            "another handle sees the lock held"
        );
        assert!(b.dead_holder(8).is_none(), "no lock file: cannot tell");

        drop(a);
        let dead = b.dead_holder(7).expect("the holder is gone");
        dead.clear();
        assert!(!lock_dir(&db).join("7.lock").exists());

        b.hold(9);
        b.release(9);
        assert!(!lock_dir(&db).join("9.lock").exists());
    }

    #[test]
    fn a_lock_file_of_another_boot_is_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("x.db");
        let holders = Holders {
            boot: Some("this-boot".into()),
            ..Holders::new(&db)
        };
        std::fs::create_dir_all(lock_dir(&db)).unwrap();
        std::fs::write(lock_dir(&db).join("3.lock"), "pid 1\nboot other-boot\n").unwrap();
        assert!(holders.dead_holder(3).is_none());
        std::fs::write(lock_dir(&db).join("4.lock"), "pid 1\nboot this-boot\n").unwrap();
        assert!(holders.dead_holder(4).is_some());
    }
}
