//! The output files of one run, written as one transaction: every file is replaced,
//! or none is, and a file that existed before is never lost.
//!
//! Before any computation, [`check`] validates every output path: its directory
//! exists, it is not an existing directory, device, FIFO or socket (an existing output
//! must be a regular file, or a symbolic link to one, which is then replaced through
//! the link), and it names a file distinct from every other output and every input
//! (by device and inode for existing files, by canonical directory and name for new
//! ones, so that `d/l.npy` and `d/sub/l.npy` with `sub → .` are one file).
//!
//! [`write_all`] then writes each file as a temporary in its target directory and
//! fsyncs it, keeps every old file under a temporary name (a hard link,
//! `.NAME.xent-PID-K.old`), renames the new files into place, and fsyncs the
//! directories; only when every rename has succeeded are the old files' temporary
//! names removed. On any failure, or on SIGINT/SIGTERM while it runs, the old files
//! are renamed back and every temporary is removed.
//!
//! A SIGKILL cannot be caught, so the new contents are written where a killed process
//! leaves nothing: on Linux, to an unnamed file (`O_TMPFILE`) that the kernel frees
//! with the process, which gets its name (`.NAME.xent-PID-K.tmp`, by `linkat` through
//! `/proc/self/fd`) only just before it is renamed into place. Where that is not
//! available (another OS, a file system without `O_TMPFILE`, no `/proc`), the file is
//! written under its temporary name from the start, and a SIGKILL during the write
//! leaves it behind. A SIGKILL between the links and the renames may leave `.tmp` /
//! `.old` names behind, never in place of an output.

use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use crate::Failure;

/// What identifies the file a path names.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Identity {
    /// An existing file: its device and inode (its canonical path off Unix).
    Existing(FileId),
    /// A file to be created: its canonical directory and its name.
    New(PathBuf, OsString),
}

#[cfg(unix)]
type FileId = (u64, u64);
#[cfg(not(unix))]
type FileId = PathBuf;

#[cfg(unix)]
fn file_id(_path: &Path, m: &fs::Metadata) -> io::Result<FileId> {
    use std::os::unix::fs::MetadataExt;
    Ok((m.dev(), m.ino()))
}

#[cfg(not(unix))]
fn file_id(path: &Path, _m: &fs::Metadata) -> io::Result<FileId> {
    fs::canonicalize(path)
}

/// An output path, resolved.
#[derive(Debug, Clone)]
struct Resolved {
    identity: Identity,
    /// Where the bytes go: the canonical path (through a symbolic link).
    dest: PathBuf,
    /// The permissions of the file it replaces.
    old: Option<fs::Permissions>,
}

/// What kind of thing exists at a path, for messages.
pub(crate) fn kind(t: fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_char_device() {
            return "a character device";
        }
        if t.is_block_device() {
            return "a block device";
        }
        if t.is_fifo() {
            return "a FIFO";
        }
        if t.is_socket() {
            return "a socket";
        }
    }
    if t.is_dir() {
        "a directory"
    } else {
        "not a regular file"
    }
}

/// Resolves an output path, or says why it cannot be written.
fn resolve(path: &Path) -> Result<Resolved, Failure> {
    let shown = path.display();
    let fail = |why: String| Failure::new(format!("cannot write {shown}: {why}"));
    let ends_in_separator = path
        .as_os_str()
        .to_string_lossy()
        .chars()
        .last()
        .is_some_and(std::path::is_separator);
    let Some(name) = path.file_name().filter(|_| !ends_in_separator) else {
        return Err(fail("not a file name".into()));
    };
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let parent = match path.parent() {
                Some(p) if !p.as_os_str().is_empty() => p,
                _ => Path::new("."),
            };
            let dir = fs::canonicalize(parent).map_err(|e| {
                fail(format!(
                    "its directory {} is not there: {e}",
                    parent.display()
                ))
            })?;
            if !fs::metadata(&dir).is_ok_and(|m| m.is_dir()) {
                return Err(fail(format!("{} is not a directory", parent.display())));
            }
            Ok(Resolved {
                dest: dir.join(name),
                identity: Identity::New(dir, name.to_os_string()),
                old: None,
            })
        }
        Err(e) => Err(fail(e.to_string())),
        Ok(link) => {
            let dest = fs::canonicalize(path).map_err(|e| {
                if link.file_type().is_symlink() {
                    fail(format!("it is a symbolic link to a missing file ({e})"))
                } else {
                    fail(e.to_string())
                }
            })?;
            let m = fs::metadata(&dest).map_err(|e| fail(e.to_string()))?;
            if !m.is_file() {
                return Err(fail(format!(
                    "it exists and is {}; xent replaces only regular files",
                    kind(m.file_type())
                )));
            }
            Ok(Resolved {
                identity: Identity::Existing(file_id(&dest, &m).map_err(|e| fail(e.to_string()))?),
                dest,
                old: Some(m.permissions()),
            })
        }
    }
}

/// Validates the outputs (flag, path) before anything is computed: each must be
/// writable as described in the module doc, and no two outputs nor an output and an
/// input (flag, path) may name the same file. Inputs that cannot be read are left to
/// the reader to report.
///
/// # Errors
/// A [`Failure`] naming the flag(s) and the path.
pub(crate) fn check(
    outputs: &[(&str, Option<&Path>)],
    inputs: &[(&str, Option<&Path>)],
) -> Result<(), Failure> {
    // (flag, path, identity, is an input)
    let mut seen: Vec<(&str, &Path, Identity, bool)> = Vec::new();
    for &(flag, path) in inputs {
        let Some(path) = path else { continue };
        if let Ok(m) = fs::metadata(path) {
            if let Ok(id) = file_id(path, &m) {
                seen.push((flag, path, Identity::Existing(id), true));
            }
        }
    }
    for &(flag, path) in outputs {
        let Some(path) = path else { continue };
        let r = resolve(path)?;
        if let Some((other, other_path, _, input)) =
            seen.iter().find(|(_, _, id, _)| *id == r.identity)
        {
            let what = if *input { "the input" } else { "the output" };
            return Err(Failure::new(if *other_path == path {
                format!("{other} and {flag} both name {}", path.display())
            } else {
                format!(
                    "{other} and {flag} both name {} ({what} {} is the same file)",
                    path.display(),
                    other_path.display()
                )
            }));
        }
        seen.push((flag, path, r.identity, false));
    }
    Ok(())
}

/// One file of a transaction and how far it got.
#[derive(Debug)]
struct Entry {
    dest: PathBuf,
    /// The new content's temporary name, while that name exists.
    temp: Option<PathBuf>,
    /// The old content's temporary name, while that name exists.
    backup: Option<PathBuf>,
    /// The old file was moved to `backup` (no hard links here), not linked: `dest` is
    /// missing until the new file is renamed in.
    moved: bool,
    /// The new file is in place.
    installed: bool,
}

/// The transaction in progress, shared with the signal handler's thread. Renames and
/// links happen under its lock; after a rollback the handler keeps the lock until the
/// process ends, so nothing else happens.
static STATE: Mutex<Vec<Entry>> = Mutex::new(Vec::new());

/// One transaction at a time per process ([`STATE`] holds one): held for the whole of
/// [`write_all_with`].
fn one_at_a_time() -> MutexGuard<'static, ()> {
    static ONE: Mutex<()> = Mutex::new(());
    ONE.lock().unwrap_or_else(|e| e.into_inner())
}

fn state() -> MutexGuard<'static, Vec<Entry>> {
    // A panic while holding the lock leaves consistent entries: each field is updated
    // right after the operation it records.
    STATE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Puts every pre-existing file back and removes every temporary. Returns the
/// problems it could not fix, for the message.
fn rollback(entries: &mut Vec<Entry>) -> Vec<String> {
    let mut problems = Vec::new();
    for e in entries.iter_mut() {
        if e.installed || e.moved {
            match &e.backup {
                Some(b) => match fs::rename(b, &e.dest) {
                    Ok(()) => e.backup = None,
                    Err(err) => problems.push(format!(
                        "the previous {} is kept as {} ({err})",
                        e.dest.display(),
                        b.display()
                    )),
                },
                None => {
                    let _ = fs::remove_file(&e.dest);
                }
            }
        } else if let Some(b) = e.backup.take() {
            // A hard link next to the untouched old file.
            let _ = fs::remove_file(b);
        }
        if let Some(t) = e.temp.take() {
            let _ = fs::remove_file(t);
        }
    }
    entries.clear();
    problems
}

/// A fresh name `.NAME.xent-PID-K.EXT` in `dest`'s directory.
fn temp_name(dest: &Path, ext: &str) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let k = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut name = OsString::from(".");
    name.push(dest.file_name().unwrap_or_default());
    name.push(format!(".xent-{}-{k}.{ext}", std::process::id()));
    dest.with_file_name(name)
}

/// The file operations of a commit, replaceable in tests to inject failures.
pub(crate) trait Ops {
    /// `fs::rename`.
    fn rename(&mut self, from: &Path, to: &Path) -> io::Result<()>;
    /// `fs::hard_link`.
    fn hard_link(&mut self, from: &Path, to: &Path) -> io::Result<()>;
}

/// The real file system.
pub(crate) struct Fs;

impl Ops for Fs {
    fn rename(&mut self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }
    fn hard_link(&mut self, from: &Path, to: &Path) -> io::Result<()> {
        fs::hard_link(from, to)
    }
}

/// Writes `files` (path, bytes) as one transaction (see the module doc).
///
/// # Errors
/// A [`Failure`] naming the file that could not be written; every file is then as it
/// was before the call.
pub(crate) fn write_all(files: &[(PathBuf, Vec<u8>)]) -> Result<(), Failure> {
    write_all_with(files, &mut Fs)
}

pub(crate) fn write_all_with(
    files: &[(PathBuf, Vec<u8>)],
    ops: &mut impl Ops,
) -> Result<(), Failure> {
    let _one = one_at_a_time();
    let resolved = files
        .iter()
        .map(|(p, _)| resolve(p))
        .collect::<Result<Vec<_>, _>>()?;
    signals::install();
    let result = commit(files, &resolved, ops);
    let mut st = state();
    match result {
        Ok(()) => {
            // Every new file is in place: the old contents' names go.
            for e in st.iter_mut() {
                if let Some(b) = e.backup.take() {
                    let _ = fs::remove_file(b);
                }
            }
            st.clear();
            Ok(())
        }
        Err(f) => {
            let problems = rollback(&mut st);
            if problems.is_empty() {
                Err(f)
            } else {
                Err(Failure::new(format!(
                    "{}; {}",
                    f.message(),
                    problems.join("; ")
                )))
            }
        }
    }
}

fn commit(
    files: &[(PathBuf, Vec<u8>)],
    resolved: &[Resolved],
    ops: &mut impl Ops,
) -> Result<(), Failure> {
    let fail = |p: &Path, e: io::Error| Failure::new(format!("cannot write {}: {e}", p.display()));
    // 1. The new contents on disk: unnamed where the system can (nothing survives a
    //    SIGKILL), else under their temporary names.
    let mut unnamed: Vec<Option<File>> = Vec::with_capacity(files.len());
    for (i, ((path, bytes), r)) in files.iter().zip(resolved).enumerate() {
        // Recorded before the file exists, so that a signal never leaves it behind.
        state().push(Entry {
            dest: r.dest.clone(),
            temp: None,
            backup: None,
            moved: false,
            installed: false,
        });
        let finish = |f: &mut File| -> io::Result<()> {
            f.write_all(bytes)?;
            if let Some(p) = &r.old {
                f.set_permissions(p.clone())?;
            }
            f.sync_all()
        };
        if let Some(mut f) = anonymous::create(&r.dest) {
            finish(&mut f).map_err(|e| fail(path, e))?;
            unnamed.push(Some(f));
        } else {
            write_named(i, &r.dest, finish).map_err(|e| fail(path, e))?;
            unnamed.push(None);
        }
        debug_assert_eq!(state().len(), i + 1);
    }
    // 2. The old contents under temporary names too (hard links: the outputs stay in
    //    place meanwhile).
    for (i, ((path, _), r)) in files.iter().zip(resolved).enumerate() {
        if r.old.is_none() {
            continue;
        }
        let backup = temp_name(&r.dest, "old");
        let mut st = state();
        match ops.hard_link(&r.dest, &backup) {
            Ok(()) => st[i].backup = Some(backup),
            // No hard links on this file system: moved aside, so the output is missing
            // until step 3 renames the new file in (or a rollback the old one back).
            Err(_) => {
                ops.rename(&r.dest, &backup).map_err(|e| fail(path, e))?;
                st[i].backup = Some(backup);
                st[i].moved = true;
            }
        }
    }
    // 3. The new files into place, each unnamed one named just before.
    for (i, ((path, bytes), f)) in files.iter().zip(&unnamed).enumerate() {
        if let Some(f) = f {
            let temp = temp_name(&resolved[i].dest, "tmp");
            state()[i].temp = Some(temp.clone());
            if let Err(e) = anonymous::link(f, &temp) {
                state()[i].temp = None;
                if e.kind() == io::ErrorKind::AlreadyExists {
                    return Err(fail(path, e));
                }
                // No way to name it here (no /proc): the bytes once more, named.
                write_named(i, &resolved[i].dest, |t| {
                    t.write_all(bytes)?;
                    if let Some(p) = &resolved[i].old {
                        t.set_permissions(p.clone())?;
                    }
                    t.sync_all()
                })
                .map_err(|e| fail(path, e))?;
            }
        }
        let mut st = state();
        let temp = st[i]
            .temp
            .clone()
            .ok_or_else(|| fail(path, io::Error::other("its temporary file has no name")))?;
        ops.rename(&temp, &st[i].dest).map_err(|e| fail(path, e))?;
        st[i].temp = None;
        st[i].installed = true;
    }
    // 4. The renames on disk before the old contents go.
    let mut dirs: Vec<&Path> = resolved.iter().filter_map(|r| r.dest.parent()).collect();
    dirs.sort();
    dirs.dedup();
    for d in dirs {
        // Some file systems cannot fsync a directory; the renames are done either way.
        let _ = File::open(d).and_then(|f| f.sync_all());
    }
    Ok(())
}

/// Creates the `i`-th file of the transaction under a fresh temporary name next to
/// `dest` and fills it with `fill`; the name is recorded in the state first.
fn write_named(
    i: usize,
    dest: &Path,
    fill: impl FnOnce(&mut File) -> io::Result<()>,
) -> io::Result<()> {
    let temp = temp_name(dest, "tmp");
    state()[i].temp = Some(temp.clone());
    let mut f = match File::options().write(true).create_new(true).open(&temp) {
        Ok(f) => f,
        Err(e) => {
            // Not ours: left alone by the rollback.
            state()[i].temp = None;
            return Err(e);
        }
    };
    fill(&mut f)
}

/// Unnamed files (`O_TMPFILE`) and their naming (`linkat` through `/proc/self/fd`).
#[cfg(target_os = "linux")]
mod anonymous {
    use std::fs::File;
    use std::io;
    use std::os::fd::AsRawFd;
    use std::path::Path;

    use rustix::fs::{AtFlags, Mode, OFlags, CWD};

    /// An unnamed regular file in `dest`'s directory, for writing; `None` when the
    /// file system (or the kernel) has no `O_TMPFILE`.
    pub(super) fn create(dest: &Path) -> Option<File> {
        let dir = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let flags = OFlags::WRONLY | OFlags::TMPFILE | OFlags::CLOEXEC;
        rustix::fs::open(dir, flags, Mode::from_raw_mode(0o666))
            .ok()
            .map(File::from)
    }

    /// Gives the unnamed file `f` the name `to`.
    pub(super) fn link(f: &File, to: &Path) -> io::Result<()> {
        let proc_path = format!("/proc/self/fd/{}", f.as_raw_fd());
        rustix::fs::linkat(CWD, proc_path.as_str(), CWD, to, AtFlags::SYMLINK_FOLLOW)
            .map_err(io::Error::from)
    }
}

/// No unnamed files here: every temporary is named from the start.
#[cfg(not(target_os = "linux"))]
mod anonymous {
    use std::fs::File;
    use std::io;
    use std::path::Path;

    pub(super) fn create(_dest: &Path) -> Option<File> {
        None
    }

    pub(super) fn link(_f: &File, _to: &Path) -> io::Result<()> {
        Err(io::Error::from(io::ErrorKind::Unsupported))
    }
}

/// SIGINT and SIGTERM during a transaction roll it back before the process ends.
#[cfg(unix)]
mod signals {
    use std::sync::Once;

    use signal_hook::consts::{SIGINT, SIGTERM};
    use signal_hook::iterator::Signals;

    /// Starts the handler thread (once per process). Until then the signals keep
    /// their default action: before the first temporary file, there is nothing to
    /// clean up.
    pub(super) fn install() {
        static ONCE: Once = Once::new();
        ONCE.call_once(|| {
            let Ok(mut signals) = Signals::new([SIGINT, SIGTERM]) else {
                return;
            };
            let _ = std::thread::Builder::new()
                .name("xent-signals".into())
                .spawn(move || {
                    if let Some(sig) = signals.forever().next() {
                        let mut st = super::state();
                        super::rollback(&mut st);
                        // Ends the process as the signal would have, the lock still
                        // held so that the main thread renames nothing more.
                        let _ = signal_hook::low_level::emulate_default_handler(sig);
                        std::process::exit(128 + sig);
                    }
                });
        });
    }
}

#[cfg(not(unix))]
mod signals {
    pub(super) fn install() {}
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fails the `n`-th rename (0-based) and, when `links` is false, every hard link.
    struct Faulty {
        n: usize,
        renames: usize,
        links: bool,
    }

    impl Ops for Faulty {
        fn rename(&mut self, from: &Path, to: &Path) -> io::Result<()> {
            self.renames += 1;
            if self.renames == self.n + 1 {
                return Err(io::Error::other("injected failure"));
            }
            fs::rename(from, to)
        }
        fn hard_link(&mut self, from: &Path, to: &Path) -> io::Result<()> {
            if self.links {
                fs::hard_link(from, to)
            } else {
                Err(io::Error::other("no hard links"))
            }
        }
    }

    fn listing(dir: &Path) -> Vec<(String, Vec<u8>)> {
        let mut v: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.file_name().to_string_lossy().into_owned(),
                    fs::read(e.path()).unwrap(),
                )
            })
            .collect();
        v.sort();
        v
    }

    /// Every failing rename, with and without hard links, leaves the directory exactly
    /// as it was: old files back with their content, new ones gone, no temporaries.
    #[test]
    fn any_failed_rename_restores_every_file() {
        for links in [true, false] {
            for n in 0..6 {
                let dir = tempfile::tempdir().unwrap();
                let (a, b, c) = (
                    dir.path().join("a.npy"),
                    dir.path().join("b.npy"),
                    dir.path().join("c.npy"),
                );
                fs::write(&a, b"old a").unwrap();
                fs::write(&c, b"old c").unwrap();
                let before = listing(dir.path());
                let files = vec![
                    (a.clone(), b"new a".to_vec()),
                    (b.clone(), b"new b".to_vec()),
                    (c.clone(), b"new c".to_vec()),
                ];
                let mut ops = Faulty {
                    n,
                    renames: 0,
                    links,
                };
                let r = write_all_with(&files, &mut ops);
                // With links, 3 renames; without, 2 more (the old files moved aside).
                let renames = if links { 3 } else { 5 };
                if n < renames {
                    let err = r.unwrap_err().message();
                    assert!(err.contains("injected failure"), "{err}");
                    assert_eq!(listing(dir.path()), before, "links {links}, rename {n}");
                } else {
                    r.unwrap();
                    assert_eq!(
                        listing(dir.path()),
                        vec![
                            ("a.npy".into(), b"new a".to_vec()),
                            ("b.npy".into(), b"new b".to_vec()),
                            ("c.npy".into(), b"new c".to_vec()),
                        ]
                    );
                }
                // Between transactions (another test may be writing), nothing is left.
                let _one = one_at_a_time();
                assert!(state().is_empty());
            }
        }
    }

    #[cfg(unix)]
    #[test]
    fn replaced_files_keep_their_permissions() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.npy");
        fs::write(&a, b"old").unwrap();
        fs::set_permissions(&a, fs::Permissions::from_mode(0o640)).unwrap();
        write_all(&[(a.clone(), b"new".to_vec())]).unwrap();
        assert_eq!(fs::read(&a).unwrap(), b"new");
        assert_eq!(
            fs::metadata(&a).unwrap().permissions().mode() & 0o777,
            0o640
        );
    }
}
