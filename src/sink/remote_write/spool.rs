//! The on-disk spool: where samples wait while the receiver is unreachable, so that
//! they survive the process and a later flush (or a later CronJob run) sends them.
//!
//! # Format
//!
//! One file per batch, named `<sequence>.spool` with a zero-padded sequence number
//! that grows with creation time, so that name order is age order. A file is:
//!
//! ```text
//! header   "FPRWSPL\0" (8 bytes) | version u16 LE (=1) | reserved u16 (=0) | record count u32 LE
//! record*  payload length u32 LE | CRC-32 of payload u32 LE | payload
//! ```
//!
//! Each payload is one sample, encoded as a protobuf `TimeSeries` with one sample
//! (the same message remote-write sends). Files are written atomically: to
//! `<name>.tmp`, fsynced, renamed, and the directory fsynced; a leftover `*.tmp`
//! (a crash mid-write) is deleted when the spool is opened, under the lock.
//!
//! # Versions
//!
//! This is format version 1, the one every fediprobe release so far writes; a
//! later release keeps reading it. A file of a *newer* version (a downgrade after
//! an upgrade wrote it) is refused with an error naming it and left in place,
//! untouched, for the newer release to send: it is neither deleted nor counted.
//!
//! # One process per directory
//!
//! [`Spool::open`] takes an advisory lock on `<dir>/.lock` for as long as the
//! [`Spool`] lives; a second process opening the same directory gets
//! [`OpenError::Locked`], which names the directory and what to do. The lock is
//! released by the kernel when the process dies, even by SIGKILL.
//!
//! # Damage
//!
//! Reading never panics on a bad file. A file with a wrong header, a corrupt or
//! truncated record, or fewer records than its header announces is reported with a
//! `tracing::warn!` naming it and renamed to `<name>.corrupt` so it is not retried
//! forever; the records before the damage are kept (written back under the
//! original name) and delivered as usual.

use std::collections::VecDeque;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use prost::Message;

use super::encode::proto;
use crate::sink::Sample;

const MAGIC: &[u8; 8] = b"FPRWSPL\0";
const VERSION: u16 = 1;
const HEADER_LEN: usize = 16;
const RECORD_HEADER_LEN: usize = 8;
const EXTENSION: &str = "spool";
/// Largest record accepted when reading; a length above it means a corrupt prefix.
const MAX_RECORD_BYTES: usize = 16 * 1024 * 1024;

/// One spool file, as the spool's index knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolFile {
    /// Where it is.
    pub path: PathBuf,
    /// How many samples its header announces.
    pub samples: u64,
    /// Its size on disk.
    pub bytes: u64,
    /// The oldest and newest sample timestamps it holds (ms since the epoch);
    /// `None` for a file that could not be read when indexed.
    pub time_range_ms: Option<(i64, i64)>,
}

/// What reading one spool file gave.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadFile {
    /// The samples read, in file order (all of them for an intact file; those before
    /// the damage for a damaged one).
    pub samples: Vec<Sample>,
    /// What was wrong with the file, if anything.
    pub damage: Option<String>,
}

/// The name of the lock file inside a spool directory.
pub const LOCK_FILE: &str = ".lock";

/// Why a spool directory could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// Another process holds the directory's lock.
    #[error(
        "the spool directory {} is in use by another fediprobe process (it holds {}); \
         give each process its own `spool_dir`, or stop the other one",
        dir.display(),
        dir.join(LOCK_FILE).display()
    )]
    Locked {
        /// The directory.
        dir: PathBuf,
    },
    /// The directory cannot be created, locked or listed (not a directory, no
    /// space, no permission).
    #[error("cannot open the spool directory {}: {source}", dir.display())]
    Io {
        /// The directory.
        dir: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
}

/// The spool directory and an index of its files, oldest first.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    files: VecDeque<SpoolFile>,
    next_sequence: u64,
    /// The open lock file; the advisory lock lasts as long as it is open. `None`
    /// for an [`unavailable`](Self::unavailable) spool.
    _lock: Option<File>,
}

impl Spool {
    /// Opens (creating it if needed, private: 0700) the spool in `dir`: takes the
    /// directory's lock, makes its files private (0600) and deletes `*.tmp` files a
    /// crashed writer left (both safe under the lock: no live process writes
    /// there), and indexes the files already there (left by an earlier run),
    /// oldest first.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Spool, OpenError> {
        let io_error = |source| OpenError::Io { dir: dir.to_owned(), source };
        // Samples name the probe's accounts and instances: 0700/0600, fixed if looser.
        crate::secret::private_dir(dir).map_err(io_error)?;
        let lock = crate::secret::private_open_options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(LOCK_FILE))
            .map_err(io_error)?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Err(OpenError::Locked { dir: dir.to_owned() }),
            Err(fs::TryLockError::Error(source)) => return Err(io_error(source)),
        }
        crate::secret::private_files_in(dir).map_err(io_error)?;
        let mut found: Vec<(u64, SpoolFile)> = Vec::new();
        for entry in fs::read_dir(dir).map_err(io_error)? {
            let path = entry.map_err(io_error)?.path();
            match path.extension().and_then(|ext| ext.to_str()) {
                Some("tmp") => {
                    tracing::warn!(file = %path.display(), "deleting a spool file left half-written by an earlier run");
                    let _ = fs::remove_file(&path);
                }
                Some(EXTENSION) => {
                    let Some(sequence) =
                        path.file_stem().and_then(|stem| stem.to_str()).and_then(|stem| stem.parse::<u64>().ok())
                    else {
                        continue;
                    };
                    if let Some(file) = index_file(path) {
                        found.push((sequence, file));
                    }
                }
                _ => {}
            }
        }
        found.sort_by_key(|(sequence, _)| *sequence);
        let next_sequence = found.last().map_or(0, |(sequence, _)| sequence + 1);
        Ok(Spool {
            dir: dir.to_owned(),
            max_bytes,
            files: found.into_iter().map(|(_, file)| file).collect(),
            next_sequence,
            _lock: Some(lock),
        })
    }

    /// A spool on a directory that could not be opened (not creatable, not a
    /// directory, no space): it indexes nothing, and every write tries the
    /// directory again and fails while it is still unusable (the sink keeps the
    /// samples in memory meanwhile), so a directory that comes back is used again.
    pub fn unavailable(dir: &Path, max_bytes: u64) -> Spool {
        Spool { dir: dir.to_owned(), max_bytes, files: VecDeque::new(), next_sequence: 0, _lock: None }
    }

    /// Every sample in the spool files of `dir`, oldest file first, read without
    /// the lock and without changing anything: for looking at a spool another
    /// process is using (tests, an operator's inspection). Damaged files give what
    /// they can; files of a newer format give nothing.
    pub fn peek(dir: &Path) -> Vec<Sample> {
        let mut files: Vec<PathBuf> = fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|entry| entry.path())
            .filter(|path| path.extension().and_then(|ext| ext.to_str()) == Some(EXTENSION))
            .collect();
        files.sort();
        files.iter().flat_map(|path| Spool::read(path).samples).collect()
    }

    /// The oldest sample timestamp in the spool (ms since the epoch), if any.
    pub fn oldest_ms(&self) -> Option<i64> {
        self.files.iter().filter_map(|file| file.time_range_ms).map(|(oldest, _)| oldest).min()
    }

    /// Deletes the files whose every sample is older than `cutoff_ms`; returns
    /// how many samples they held (the caller counts them as expired).
    pub fn expire_files_before(&mut self, cutoff_ms: i64) -> u64 {
        let mut expired = 0;
        let (old, kept): (Vec<SpoolFile>, Vec<SpoolFile>) =
            self.files.drain(..).partition(|file| file.time_range_ms.is_some_and(|(_, newest)| newest < cutoff_ms));
        self.files = kept.into();
        for file in old {
            match fs::remove_file(&file.path) {
                Err(error) if error.kind() != io::ErrorKind::NotFound => {
                    tracing::warn!(file = %file.path.display(), %error, "cannot delete an expired spool file");
                    self.files.push_front(file);
                }
                _ => expired += file.samples,
            }
        }
        self.files.make_contiguous().sort_by(|a, b| a.path.cmp(&b.path));
        expired
    }

    /// The spool's files, oldest first.
    pub fn files(&self) -> impl Iterator<Item = &SpoolFile> {
        self.files.iter()
    }

    /// The oldest file, if any.
    pub fn oldest(&self) -> Option<&SpoolFile> {
        self.files.front()
    }

    /// Bytes the spool's files take.
    pub fn total_bytes(&self) -> u64 {
        self.files.iter().map(|file| file.bytes).sum()
    }

    /// Samples the spool's files hold, by their headers.
    pub fn total_samples(&self) -> u64 {
        self.files.iter().map(|file| file.samples).sum()
    }

    /// Writes `samples` as a new file (atomically), then deletes the oldest files
    /// while the spool is over its size limit. Returns the files deleted that way,
    /// whose samples are lost (possibly including the new file itself, if it alone
    /// exceeds the limit).
    pub fn write(&mut self, samples: &[Sample]) -> io::Result<Vec<SpoolFile>> {
        let sequence = self.next_sequence.max(now_micros());
        self.next_sequence = sequence + 1;
        let path = self.dir.join(format!("{sequence:020}.{EXTENSION}"));
        let bytes = write_atomically(&path, samples)?;
        self.files.push_back(SpoolFile {
            path,
            samples: samples.len() as u64,
            bytes,
            time_range_ms: time_range(samples),
        });
        let mut evicted = Vec::new();
        while self.total_bytes() > self.max_bytes {
            let Some(oldest) = self.files.pop_front() else {
                break;
            };
            if let Err(error) = fs::remove_file(&oldest.path) {
                tracing::warn!(file = %oldest.path.display(), %error, "could not delete an evicted spool file");
            }
            evicted.push(oldest);
        }
        Ok(evicted)
    }

    /// Reads one file. Never fails: damage is reported in [`ReadFile::damage`].
    pub fn read(path: &Path) -> ReadFile {
        match fs::read(path) {
            Ok(bytes) => decode_file(&bytes),
            Err(error) => ReadFile { samples: Vec::new(), damage: Some(format!("cannot read: {error}")) },
        }
    }

    /// Deletes a file whose samples were accepted (or rejected for good).
    pub fn remove(&mut self, path: &Path) -> io::Result<()> {
        self.files.retain(|file| file.path != path);
        match fs::remove_file(path) {
            Err(error) if error.kind() != io::ErrorKind::NotFound => Err(error),
            _ => Ok(()),
        }
    }

    /// Handles a damaged file: renames it to `*.corrupt` and, if some samples could
    /// be read before the damage, writes them back under the original name.
    pub fn quarantine(&mut self, path: &Path, damage: &str, recovered: &[Sample]) -> io::Result<()> {
        let corrupt = path.with_extension(format!("{EXTENSION}.corrupt"));
        tracing::warn!(
            file = %path.display(),
            renamed_to = %corrupt.display(),
            damage,
            recovered_samples = recovered.len(),
            "spool file is damaged; keeping the samples before the damage"
        );
        fs::rename(path, &corrupt)?;
        let Some(index) = self.files.iter().position(|file| file.path == path) else {
            return Ok(());
        };
        if recovered.is_empty() {
            self.files.remove(index);
            return Ok(());
        }
        match write_atomically(path, recovered) {
            Ok(bytes) => {
                self.files[index].samples = recovered.len() as u64;
                self.files[index].bytes = bytes;
                self.files[index].time_range_ms = time_range(recovered);
                Ok(())
            }
            Err(error) => {
                // The samples remain readable in the `.corrupt` file; the index must
                // not point at a file that no longer exists.
                self.files.remove(index);
                Err(error)
            }
        }
    }
}

/// The oldest and newest timestamps of `samples`.
fn time_range(samples: &[Sample]) -> Option<(i64, i64)> {
    let oldest = samples.iter().map(|sample| sample.timestamp_ms).min()?;
    let newest = samples.iter().map(|sample| sample.timestamp_ms).max()?;
    Some((oldest, newest))
}

/// Indexes one `*.spool` file found at open: its sample count and time range from
/// its contents. A file of a newer format version is refused (logged, left in
/// place, not indexed); a damaged one is indexed as it is, and quarantined when a
/// delivery reads it.
fn index_file(path: PathBuf) -> Option<SpoolFile> {
    let bytes = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    if let Ok(Some(version)) = read_header_version(&path)
        && version > VERSION
    {
        tracing::error!(
            file = %path.display(),
            version,
            supported = VERSION,
            "this spool file was written by a newer fediprobe; it is left as it is: run the newer release \
             on this spool directory to send it, or move the file away"
        );
        return None;
    }
    let read = Spool::read(&path);
    let samples = if read.damage.is_some() {
        read_header_count(&path).unwrap_or(read.samples.len() as u64)
    } else {
        read.samples.len() as u64
    };
    Some(SpoolFile { path, samples, bytes, time_range_ms: time_range(&read.samples) })
}

fn now_micros() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| u64::try_from(since.as_micros()).unwrap_or(u64::MAX))
}

/// The bytes of a spool file holding `samples`.
pub fn encode_file(samples: &[Sample]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + samples.len() * 64);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&u32::try_from(samples.len()).unwrap_or(u32::MAX).to_le_bytes());
    for sample in samples {
        let record = proto::TimeSeries {
            labels: sample
                .labels
                .iter()
                .map(|(name, value)| proto::Label { name: name.clone(), value: value.clone() })
                .collect(),
            samples: vec![proto::Sample { value: sample.value, timestamp: sample.timestamp_ms }],
        }
        .encode_to_vec();
        out.extend_from_slice(&u32::try_from(record.len()).unwrap_or(u32::MAX).to_le_bytes());
        out.extend_from_slice(&crc32fast::hash(&record).to_le_bytes());
        out.extend_from_slice(&record);
    }
    out
}

/// Reads the bytes of a spool file; never panics.
pub fn decode_file(bytes: &[u8]) -> ReadFile {
    let damaged = |samples, damage: String| ReadFile { samples, damage: Some(damage) };
    if bytes.len() < HEADER_LEN || &bytes[..8] != MAGIC {
        return damaged(Vec::new(), "not a spool file (bad or missing header)".to_owned());
    }
    let version = u16::from_le_bytes([bytes[8], bytes[9]]);
    if version != VERSION {
        return damaged(
            Vec::new(),
            format!("spool format version {version} is not one this release reads (version {VERSION})"),
        );
    }
    let announced = u32::from_le_bytes([bytes[12], bytes[13], bytes[14], bytes[15]]) as usize;
    let mut samples = Vec::with_capacity(announced.min(100_000));
    let mut rest = &bytes[HEADER_LEN..];
    while !rest.is_empty() {
        if rest.len() < RECORD_HEADER_LEN {
            return damaged(samples, "truncated record header".to_owned());
        }
        let length = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let checksum = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
        if length > MAX_RECORD_BYTES {
            return damaged(samples, format!("record length {length} is implausible"));
        }
        let Some(payload) = rest.get(RECORD_HEADER_LEN..RECORD_HEADER_LEN + length) else {
            return damaged(samples, "truncated record".to_owned());
        };
        let index = samples.len();
        if crc32fast::hash(payload) != checksum {
            return damaged(samples, format!("checksum mismatch in record {index}"));
        }
        let series = match proto::TimeSeries::decode(payload) {
            Ok(series) => series,
            Err(error) => {
                return damaged(samples, format!("record {index} does not decode: {error}"));
            }
        };
        let labels: Vec<(String, String)> = series.labels.into_iter().map(|label| (label.name, label.value)).collect();
        for sample in series.samples {
            samples.push(Sample { labels: labels.clone(), value: sample.value, timestamp_ms: sample.timestamp });
        }
        rest = &rest[RECORD_HEADER_LEN + length..];
    }
    if samples.len() != announced {
        let found = samples.len();
        return damaged(samples, format!("header announces {announced} samples, file holds {found}"));
    }
    ReadFile { samples, damage: None }
}

/// The format version in a file's header; `None` when it has no spool header.
fn read_header_version(path: &Path) -> io::Result<Option<u16>> {
    use std::io::Read;
    let mut header = [0u8; HEADER_LEN];
    File::open(path)?.read_exact(&mut header)?;
    if &header[..8] != MAGIC {
        return Ok(None);
    }
    Ok(Some(u16::from_le_bytes([header[8], header[9]])))
}

fn read_header_count(path: &Path) -> io::Result<u64> {
    use std::io::Read;
    let mut header = [0u8; HEADER_LEN];
    File::open(path)?.read_exact(&mut header)?;
    if &header[..8] != MAGIC {
        return Ok(0);
    }
    Ok(u64::from(u32::from_le_bytes([header[12], header[13], header[14], header[15]])))
}

/// Writes `samples` to `path` through `path.tmp`, fsync and rename; returns the size.
fn write_atomically(path: &Path, samples: &[Sample]) -> io::Result<u64> {
    let bytes = encode_file(samples);
    // The process id in the name keeps two writers (which the lock prevents, but a
    // spool opened without one could meet) from ever sharing a temporary file.
    let tmp = path.with_extension(format!("{EXTENSION}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut file = crate::secret::private_open_options().write(true).create(true).truncate(true).open(&tmp)?;
        file.write_all(&bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        // Make the rename itself durable. Directories cannot be fsynced on every
        // platform; the rename is already atomic, so a failure here is not an error.
        if let Some(dir) = path.parent()
            && let Ok(dir) = File::open(dir)
        {
            let _ = dir.sync_all();
        }
        Ok(bytes.len() as u64)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples(count: i64) -> Vec<Sample> {
        (0..count).map(|i| Sample::new("m", [("i", i.to_string())], i as f64 + 0.5, 1_700_000_000_000 + i)).collect()
    }

    #[test]
    fn round_trips_samples_exactly() {
        let original = samples(50);
        let read = decode_file(&encode_file(&original));
        assert_eq!(read.damage, None);
        assert_eq!(read.samples, original);
    }

    #[test]
    fn keeps_the_records_before_a_truncation_or_a_flipped_byte() {
        let original = samples(10);
        let bytes = encode_file(&original);
        let truncated = decode_file(&bytes[..bytes.len() - 3]);
        assert_eq!(truncated.samples, original[..9]);
        assert!(truncated.damage.unwrap().contains("truncated"));

        let mut flipped = bytes.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 0xff;
        let read = decode_file(&flipped);
        assert_eq!(read.samples, original[..9]);
        assert!(read.damage.unwrap().contains("checksum"));
    }

    #[test]
    fn reports_garbage_and_missing_records_without_panicking() {
        assert!(decode_file(b"").damage.is_some());
        assert!(decode_file(b"garbage garbage garbage").damage.is_some());
        let original = samples(3);
        let bytes = encode_file(&original);
        // Cut exactly at a record boundary: only the header's count tells.
        let one_record = HEADER_LEN + (bytes.len() - HEADER_LEN) / 3;
        let read = decode_file(&bytes[..one_record]);
        assert_eq!(read.samples, original[..1]);
        assert!(read.damage.is_some());
        let mut huge = bytes.clone();
        huge[HEADER_LEN..HEADER_LEN + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode_file(&huge).damage.is_some());
    }

    #[test]
    fn writes_atomically_reopens_in_age_order_and_evicts_oldest_when_full() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(dir.path(), u64::MAX).unwrap();
        spool.write(&samples(5)).unwrap();
        spool.write(&samples(7)).unwrap();
        fs::write(dir.path().join("00000000000000000001.spool.tmp"), b"half").unwrap();
        let both_files = spool.total_bytes();
        drop(spool);

        let mut reopened = Spool::open(dir.path(), both_files + 10).unwrap();
        let counts: Vec<u64> = reopened.files().map(|file| file.samples).collect();
        assert_eq!(counts, [5, 7]);
        assert!(!dir.path().join("00000000000000000001.spool.tmp").exists());
        let evicted = reopened.write(&samples(5)).unwrap();
        assert_eq!(evicted.len(), 1);
        assert_eq!(evicted[0].samples, 5);
        assert_eq!(reopened.total_samples(), 12);
        for file in reopened.files() {
            assert_eq!(Spool::read(&file.path).damage, None);
        }
    }

    #[test]
    fn a_second_open_of_a_locked_directory_is_refused_and_leaves_its_files_alone() {
        let dir = tempfile::tempdir().unwrap();
        let mut first = Spool::open(dir.path(), u64::MAX).unwrap();
        first.write(&samples(3)).unwrap();
        // The first process is in the middle of writing a file.
        let writing = dir.path().join("00000000000000000009.spool.4242.tmp");
        fs::write(&writing, b"half").unwrap();

        let error = Spool::open(dir.path(), u64::MAX).unwrap_err();
        assert!(matches!(error, OpenError::Locked { .. }), "{error:?}");
        let message = error.to_string();
        assert!(message.contains(&dir.path().display().to_string()), "{message}");
        assert!(message.contains("another fediprobe process") && message.contains("own `spool_dir`"), "{message}");
        assert!(writing.exists(), "the other process's temporary file is not touched");
        assert_eq!(first.total_samples(), 3);

        // Once the first one is gone (closed, or killed: the kernel drops the lock),
        // the directory opens, and the dead writer's temporary file is cleared.
        drop(first);
        let second = Spool::open(dir.path(), u64::MAX).unwrap();
        assert_eq!(second.total_samples(), 3);
        assert!(!writing.exists());
    }

    /// The bytes of a version-1 file as fediprobe 0.1 wrote them (two samples);
    /// every later release must read them.
    const VERSION_1_FILE: &str = concat!(
        "4650525753504c00010000000200000029000000187803110a0d0a085f5f6e616d655f5f12016d0a060a0169120130121009",
        "000000000000e03f1080d095ffbc31290000008ccba51a0a0d0a085f5f6e616d655f5f12016d0a060a016912013112100900",
        "0000000000f83f1081d095ffbc31",
    );

    #[test]
    fn reads_files_written_by_format_version_1() {
        let bytes: Vec<u8> = (0..VERSION_1_FILE.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&VERSION_1_FILE[i..i + 2], 16).unwrap())
            .collect();
        assert_eq!(encode_file(&samples(2)), bytes, "format version 1 is what this release writes");
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("00000000000000000001.spool"), &bytes).unwrap();
        let spool = Spool::open(dir.path(), u64::MAX).unwrap();
        assert_eq!(spool.total_samples(), 2);
        assert_eq!(spool.oldest_ms(), Some(1_700_000_000_000));
        assert_eq!(Spool::read(&spool.oldest().unwrap().path), ReadFile { samples: samples(2), damage: None });
    }

    #[test]
    fn a_file_of_a_newer_format_is_refused_and_left_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = encode_file(&samples(2));
        bytes[8..10].copy_from_slice(&2u16.to_le_bytes());
        let newer = dir.path().join("00000000000000000001.spool");
        fs::write(&newer, &bytes).unwrap();
        let spool = Spool::open(dir.path(), u64::MAX).unwrap();
        assert_eq!(spool.files().count(), 0, "not indexed, so never sent nor quarantined");
        assert_eq!(fs::read(&newer).unwrap(), bytes, "left exactly as it was");
        assert!(Spool::read(&newer).damage.unwrap().contains("version 2 is not one this release reads"));
    }

    #[test]
    fn expiry_deletes_only_files_whose_every_sample_is_older_than_the_cutoff() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(dir.path(), u64::MAX).unwrap();
        spool.write(&samples(3)).unwrap(); // 1_700_000_000_000 ..= +2
        let newer: Vec<Sample> = samples(3)
            .into_iter()
            .map(|mut s| {
                s.timestamp_ms += 10;
                s
            })
            .collect(); // +10 ..= +12
        spool.write(&newer).unwrap();
        assert_eq!(spool.expire_files_before(1_700_000_000_011), 3, "the first file only");
        assert_eq!(spool.total_samples(), 3);
        assert_eq!(spool.oldest_ms(), Some(1_700_000_000_010));
    }

    #[test]
    fn quarantine_renames_the_damaged_file_and_keeps_what_was_readable() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(dir.path(), u64::MAX).unwrap();
        spool.write(&samples(4)).unwrap();
        let path = spool.oldest().unwrap().path.clone();
        let bytes = fs::read(&path).unwrap();
        fs::write(&path, &bytes[..bytes.len() - 1]).unwrap();
        let read = Spool::read(&path);
        spool.quarantine(&path, read.damage.as_deref().unwrap(), &read.samples).unwrap();
        assert!(path.with_extension("spool.corrupt").exists());
        assert_eq!(Spool::read(&path).samples, samples(3));
        assert_eq!(spool.total_samples(), 3);
    }
}
