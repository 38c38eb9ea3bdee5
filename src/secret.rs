//! Secrets (access tokens, remote-write passwords) and the one rule about them:
//! they never reach a log line, an error message, a metric label or `--output json`,
//! not whole and not in part.
//!
//! A [`Secret`] only hands out its value through [`Secret::expose`], which callers
//! use at the single point where the value goes on the wire (an `Authorization`
//! header). `Debug` and `Display` print a fixed placeholder, so a secret that ends up
//! inside a logged struct or an error by accident still shows nothing.
//!
//! Every secret the process holds is also registered process-wide, the way CI
//! systems mask registered secrets in every log line: [`scrub`] replaces every
//! piece of [`PIECE`] or more characters of any of them in a text, and the logs
//! go through [`ScrubbedStderr`], so text a server echoed back (an error body, a
//! close reason) or that a library logs cannot carry one out either. Texts are
//! scrubbed *before* they are cut to a length ([`shorten`]): a cut first could
//! leave a piece too short to be recognised.
//!
//! A secret read from a file can follow that file ([`Secret::following`]): a
//! rotated Kubernetes Secret (its volume's files swapped atomically) is picked up
//! without a restart.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use aho_corasick::AhoCorasick;

/// Shown instead of a secret or any piece of one.
pub const REDACTED: &str = "<redacted>";

/// The length of the shortest piece of a secret that [`scrub`] recognises. Eight
/// characters of a token are too many to show (they narrow a guess a lot) and too
/// few to occur by chance in ordinary text.
pub const PIECE: usize = 8;

/// Secrets shorter than this are not scrubbed at all: replacing every `abc` in
/// every text would only garble it. No real token or password is that short.
const SHORTEST_SCRUBBED: usize = 4;

/// A value that must never be printed.
#[derive(Clone)]
pub struct Secret(Arc<Inner>);

struct Inner {
    /// The value in use. Values are interned for the life of the process (see
    /// [`intern`]), which is what lets [`Secret::expose`] hand out a plain `&str`
    /// while a rotation swaps the value underneath.
    current: Mutex<&'static str>,
    file: Option<Followed>,
}

/// A file a secret was read from, looked at again every `every`.
struct Followed {
    path: PathBuf,
    every: Duration,
    last_looked: Mutex<Instant>,
}

impl Secret {
    /// Wraps a value. Surrounding whitespace (a trailing newline in a token file)
    /// is removed, since no real token contains it.
    pub fn new(value: impl Into<String>) -> Self {
        let value = value.into();
        Secret(Arc::new(Inner { current: Mutex::new(intern(value.trim())), file: None }))
    }

    /// A secret read from `path` (its contents now are `value`) that reads the file
    /// again when [`expose`](Self::expose) is called `every` or more after the last
    /// look, and uses the new contents when they differ. A file that is missing,
    /// unreadable or empty at a look keeps the value in use (and says so in the log):
    /// a half-done rotation must not take the probe's token away.
    pub fn following(value: impl Into<String>, path: impl Into<PathBuf>, every: Duration) -> Self {
        let value = value.into();
        Secret(Arc::new(Inner {
            current: Mutex::new(intern(value.trim())),
            file: Some(Followed { path: path.into(), every, last_looked: Mutex::new(Instant::now()) }),
        }))
    }

    /// The value itself, for the one place it is sent. For a secret that follows a
    /// file, this is where the file is looked at again when it is due.
    pub fn expose(&self) -> &str {
        if let Some(file) = &self.0.file {
            file.look_again_if_due(&self.0.current);
        }
        *lock(&self.0.current)
    }

    /// Whether the value is empty (an empty token file, an empty variable).
    pub fn is_empty(&self) -> bool {
        lock(&self.0.current).is_empty()
    }
}

impl Followed {
    fn look_again_if_due(&self, current: &Mutex<&'static str>) {
        {
            let mut last = lock(&self.last_looked);
            if last.elapsed() < self.every {
                return;
            }
            *last = Instant::now();
        }
        match std::fs::read_to_string(&self.path) {
            Ok(text) if !text.trim().is_empty() => {
                let value = intern(text.trim());
                let mut current = lock(current);
                if *current != value {
                    *current = value;
                    tracing::info!(file = %self.path.display(), "the secret in this file changed; using the new one");
                }
            }
            Ok(_) => {
                tracing::warn!(file = %self.path.display(), "the secret file is empty now; keeping the secret read before")
            }
            Err(e) => {
                tracing::warn!(file = %self.path.display(), error = %e, "cannot read the secret file again; keeping the secret read before")
            }
        }
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        self.expose() == other.expose()
    }
}

impl Eq for Secret {}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Every secret value this process has held, and a matcher for their pieces.
#[derive(Default)]
struct Registry {
    values: HashSet<&'static str>,
    /// Built on the first scrub after a change; `None` until then.
    matcher: Option<Arc<AhoCorasick>>,
}

static REGISTRY: LazyLock<RwLock<Registry>> = LazyLock::new(RwLock::default);

/// Registers `value` and returns it with a process lifetime. Each distinct value is
/// stored once, so the memory this keeps is bounded by the secrets a process ever
/// sees (its tokens, and each rotation's new ones). Old values stay registered on
/// purpose: a response to a request made just before a rotation can still echo one.
fn intern(value: &str) -> &'static str {
    if let Some(known) = REGISTRY.read().unwrap_or_else(|p| p.into_inner()).values.get(value) {
        return known;
    }
    let mut registry = REGISTRY.write().unwrap_or_else(|p| p.into_inner());
    if let Some(known) = registry.values.get(value) {
        return known;
    }
    let leaked: &'static str = Box::leak(value.to_owned().into_boxed_str());
    registry.values.insert(leaked);
    registry.matcher = None;
    leaked
}

/// The matcher for every piece of [`PIECE`] characters of every registered secret
/// (the whole value for shorter ones); `None` when there is nothing to look for.
fn matcher() -> Option<Arc<AhoCorasick>> {
    if let Some(m) = &REGISTRY.read().unwrap_or_else(|p| p.into_inner()).matcher {
        return Some(m.clone());
    }
    let mut registry = REGISTRY.write().unwrap_or_else(|p| p.into_inner());
    let mut patterns: Vec<&str> = Vec::new();
    for value in &registry.values {
        patterns.extend(pieces(value));
    }
    if patterns.is_empty() {
        return None;
    }
    patterns.sort_unstable();
    patterns.dedup();
    let built = Arc::new(AhoCorasick::new(patterns).ok()?);
    registry.matcher = Some(built.clone());
    Some(built)
}

/// The pieces of `value` a text must not contain: every run of [`PIECE`]
/// characters, or the whole value when it is shorter.
fn pieces(value: &str) -> Vec<&str> {
    let count = value.chars().count();
    if count < SHORTEST_SCRUBBED {
        return Vec::new();
    }
    if count <= PIECE {
        return vec![value];
    }
    let starts: Vec<usize> = value.char_indices().map(|(i, _)| i).chain([value.len()]).collect();
    starts.windows(PIECE + 1).map(|w| &value[w[0]..w[PIECE]]).collect()
}

/// `text` with every piece of a registered secret (see [`PIECE`]) replaced by
/// [`REDACTED`]; overlapping and adjacent pieces become one placeholder, so a
/// whole token shows as one `<redacted>`.
pub fn scrub(text: &str) -> Cow<'_, str> {
    let Some(matcher) = matcher() else { return Cow::Borrowed(text) };
    let mut spans: Vec<(usize, usize)> = Vec::new();
    for m in matcher.find_overlapping_iter(text) {
        match spans.last_mut() {
            Some((_, end)) if m.start() <= *end => *end = (*end).max(m.end()),
            _ => spans.push((m.start(), m.end())),
        }
    }
    if spans.is_empty() {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for (start, end) in spans {
        out.push_str(&text[at..start]);
        out.push_str(REDACTED);
        at = end;
    }
    out.push_str(&text[at..]);
    Cow::Owned(out)
}

/// Scrubs `text` in place (see [`scrub`]).
pub fn scrub_in_place(text: &mut String) {
    if let Cow::Owned(clean) = scrub(text) {
        *text = clean;
    }
}

/// `text` scrubbed, then cut to `max_chars` characters with `…` when longer.
pub fn shorten(text: &str, max_chars: usize) -> String {
    let clean = scrub(text);
    match clean.char_indices().nth(max_chars) {
        None => clean.into_owned(),
        Some((cut, _)) => format!("{}…", &clean[..cut]),
    }
}

/// The first `max_bytes` bytes of `bytes` as text (invalid UTF-8 replaced), scrubbed
/// before the cut: for showing how a body starts.
pub fn start_of(bytes: &[u8], max_bytes: usize) -> String {
    // The whole body is scrubbed, not only what is shown: a secret straddling the
    // cut is only recognisable whole.
    let clean = scrub(&String::from_utf8_lossy(bytes)).into_owned();
    let mut cut = clean.len().min(max_bytes);
    while !clean.is_char_boundary(cut) {
        cut -= 1;
    }
    clean[..cut].to_owned()
}

/// Where log lines go: standard error, each event scrubbed (see [`scrub`]) before
/// it is written. The formatter hands over each event whole; the writer keeps what
/// it is given until the event is done, so a secret split across two writes is
/// still one text to scrub.
#[derive(Debug, Clone, Copy, Default)]
pub struct ScrubbedStderr;

/// One event being written by [`ScrubbedStderr`].
#[derive(Debug, Default)]
pub struct ScrubbedEvent(Vec<u8>);

impl std::io::Write for ScrubbedEvent {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for ScrubbedEvent {
    fn drop(&mut self) {
        use std::io::Write as _;
        if self.0.is_empty() {
            return;
        }
        let text = String::from_utf8_lossy(&self.0);
        let clean = scrub(&text);
        let held = HELD_LINES.with_borrow_mut(|held| match held {
            Some(lines) => {
                lines.extend_from_slice(clean.as_bytes());
                true
            }
            None => false,
        });
        if !held {
            let _ = std::io::stderr().lock().write_all(clean.as_bytes());
        }
    }
}

thread_local! {
    /// This thread's scrubbed lines while [`ScrubbedStderr::together`] holds them.
    static HELD_LINES: std::cell::RefCell<Option<Vec<u8>>> = const { std::cell::RefCell::new(None) };
}

impl ScrubbedStderr {
    /// Runs `f` with the log lines this thread writes meanwhile held, then writes
    /// them to standard error at once, in order (also if `f` panics): the agent
    /// logs a batch of runs with one system call instead of one per run. Lines from
    /// other threads are not held; a nested call joins the outer one.
    pub fn together<T>(f: impl FnOnce() -> T) -> T {
        /// Writes the held lines when dropped.
        struct Release;
        impl Drop for Release {
            fn drop(&mut self) {
                use std::io::Write as _;
                if let Some(lines) = HELD_LINES.with_borrow_mut(Option::take)
                    && !lines.is_empty()
                {
                    let _ = std::io::stderr().lock().write_all(&lines);
                }
            }
        }
        if HELD_LINES.with_borrow(Option::is_some) {
            return f();
        }
        HELD_LINES.with_borrow_mut(|held| *held = Some(Vec::new()));
        let _release = Release;
        f()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for ScrubbedStderr {
    type Writer = ScrubbedEvent;

    fn make_writer(&'a self) -> Self::Writer {
        ScrubbedEvent::default()
    }
}

/// Makes `dir` (created when missing) private to the probe's user: 0700, also when
/// it existed before with a looser mode. For directories the probe writes secrets
/// or samples into.
pub fn private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Makes every file directly in `dir` private (0600): files an earlier version or
/// another tool left with looser modes in a directory that holds only the probe's
/// own files (the spool).
pub fn private_files_in(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for entry in std::fs::read_dir(dir)?.flatten() {
            if entry.file_type().is_ok_and(|kind| kind.is_file()) {
                std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(0o600))?;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Options that create a file readable and writable by its owner only (0600). A
/// file that already exists keeps its mode when opened: use [`private_file`] for
/// one that may exist.
pub fn private_open_options() -> std::fs::OpenOptions {
    let mut options = std::fs::OpenOptions::new();
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
}

/// Writes `contents` to `path` as a private file (0600), fixing the mode of a file
/// that was already there.
pub fn private_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut file = private_open_options().write(true).create(true).truncate(true).open(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    file.write_all(contents)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_value() {
        let secret = Secret::new("tok-123456\n");
        assert_eq!(secret.expose(), "tok-123456");
        assert!(!format!("{secret:?}").contains("tok-123456"));
        assert!(!format!("{secret}").contains("tok-123456"));
        assert!(!format!("{:?}", Some(&secret)).contains("tok-123456"));
    }

    #[test]
    fn scrub_replaces_the_whole_secret_and_every_piece_of_eight_characters() {
        let token = "scrubtest-7Qm2xW9pLk4RtY8vN3bZc5";
        let _secret = Secret::new(token);
        assert_eq!(scrub(&format!("Bearer {token}!")), "Bearer <redacted>!");
        // A piece from the middle, as a server quoting part of a header would show it.
        assert_eq!(scrub(&format!("saw …{}…", &token[6..20])), "saw …<redacted>…");
        // Exactly eight characters is a piece; seven is not.
        assert_eq!(scrub(&format!("x{}x", &token[10..18])), "x<redacted>x");
        assert_eq!(scrub(&format!("x{}x", &token[10..17])), format!("x{}x", &token[10..17]));
        assert_eq!(scrub("nothing secret here"), "nothing secret here");
    }

    #[test]
    fn shorten_scrubs_before_cutting() {
        let token = "shortentest-A1b2C3d4E5f6G7h8I9j0K1l2";
        let _secret = Secret::new(token);
        // Cut at 20 characters first, the text would keep 13 of the token's
        // characters, too few for a scrub of the whole token to find afterwards.
        let text = format!("error: bad {token} given");
        let shown = shorten(&text, 20);
        assert!(!shown.contains(&token[..PIECE]), "{shown}");
        assert_eq!(shown, "error: bad <redacted…");
        let start = start_of(text.as_bytes(), 20);
        assert!(!start.contains(&token[..PIECE]), "{start}");
        // Pieces shorter than a piece at the very end of a cut: the scrub before the
        // cut saw the whole token there, so not even those few characters show.
        for max in 11..text.len() {
            let shown = start_of(text.as_bytes(), max);
            assert!(!shown.contains(&token[..3]), "{max}: {shown}");
        }
    }

    #[test]
    fn a_secret_following_a_file_uses_the_new_contents_once_due() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("main.token");
        std::fs::write(&path, "rotation-old-0123456789\n").unwrap();
        let secret = Secret::following("rotation-old-0123456789", &path, Duration::ZERO);
        assert_eq!(secret.expose(), "rotation-old-0123456789");
        std::fs::write(&path, "rotation-new-9876543210\n").unwrap();
        assert_eq!(secret.expose(), "rotation-new-9876543210");
        // A missing or empty file keeps the value in use.
        std::fs::write(&path, "").unwrap();
        assert_eq!(secret.expose(), "rotation-new-9876543210");
        std::fs::remove_file(&path).unwrap();
        assert_eq!(secret.expose(), "rotation-new-9876543210");
        // The old value stays registered: a late echo of it is still scrubbed.
        assert_eq!(scrub("rotation-old-0123456789"), REDACTED);
    }

    #[test]
    fn a_secret_following_a_file_does_not_look_before_it_is_due() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("main.token");
        std::fs::write(&path, "notdue-old-0123456789").unwrap();
        let secret = Secret::following("notdue-old-0123456789", &path, Duration::from_secs(3600));
        std::fs::write(&path, "notdue-new-0123456789").unwrap();
        assert_eq!(secret.expose(), "notdue-old-0123456789");
    }

    #[cfg(unix)]
    #[test]
    fn private_dir_and_file_fix_modes_that_were_looser() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let spool = dir.path().join("spool");
        std::fs::create_dir(&spool).unwrap();
        std::fs::set_permissions(&spool, std::fs::Permissions::from_mode(0o755)).unwrap();
        let old = spool.join("old.bin");
        std::fs::write(&old, b"x").unwrap();
        std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o644)).unwrap();
        private_dir(&spool).unwrap();
        private_files_in(&spool).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&spool), 0o700);
        assert_eq!(mode(&old), 0o600);
        let token = spool.join("main.token");
        std::fs::write(&token, b"x").unwrap();
        std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).unwrap();
        private_file(&token, b"y").unwrap();
        assert_eq!(mode(&token), 0o600);
        assert_eq!(std::fs::read(&token).unwrap(), b"y");
    }

    #[test]
    fn lines_held_together_are_scrubbed_kept_in_order_and_released() {
        use std::io::Write as _;
        use tracing_subscriber::fmt::MakeWriter as _;
        let _secret = Secret::new("hunter2-held-secret");
        let event = |text: &str| {
            let mut event = ScrubbedStderr.make_writer();
            event.write_all(text.as_bytes()).unwrap();
        };
        let held = ScrubbedStderr::together(|| {
            event("first hunter2-held-secret\n");
            // A nested call joins the outer one: nothing is written early.
            ScrubbedStderr::together(|| event("second\n"));
            HELD_LINES.with_borrow(Clone::clone)
        });
        assert_eq!(held.as_deref(), Some(format!("first {REDACTED}\nsecond\n").as_bytes()));
        assert!(HELD_LINES.with_borrow(Option::is_none), "released at the end");
        // Released when the closure panics, too.
        let panicked = std::panic::catch_unwind(|| ScrubbedStderr::together(|| panic!("mid-batch")));
        assert!(panicked.is_err());
        assert!(HELD_LINES.with_borrow(Option::is_none), "released after a panic");
    }
}
