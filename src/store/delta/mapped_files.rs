//! Local files read in place: the object store a Delta store on a local path reads through.
//!
//! object_store's `LocalFileSystem` reads every range on tokio's blocking pool (one more thread
//! started per concurrent read) into a freshly allocated, zeroed buffer: each 4 KiB of a parquet
//! column chunk costs a new anonymous page (a page fault, the page cleared, then the copy from
//! the page cache). [`MappedFiles`] answers the plain reads instead, on the calling thread:
//!
//! - a request for less than [`MAP_FROM`] bytes (a Delta commit, a parquet footer) is read with
//!   one positioned read into a buffer of its size;
//! - a larger one of a Delta data file of the store's own tables (a parquet file in a
//!   `<name>.delta` directory, not under `_delta_log` or any other `_`-directory) maps the
//!   requested span of the file and hands out slices of the mapping: the pages are the page
//!   cache's own, mapped sixteen at a time on first access, never copied. Only on Linux, only
//!   on a local file system (ext2/3/4, XFS, Btrfs, tmpfs, ramfs, overlayfs, ZFS, F2FS,
//!   bcachefs, JFS, ReiserFS, as `fstatfs` reports it), and only when the store allows maps
//!   (its `mmap` option). Every other large read (URL tables, checkpoints, our state blobs,
//!   files on NFS, SMB or FUSE) goes to the wrapped store.
//!
//! A listing of a directory of plainly named regular files (a Delta log: letters, digits, `.`,
//! `_`, `-`) is read on the calling thread too, as the local store lists it, and a read of a
//! missing file fails there with the local store's `NotFound`. Object metadata is the local
//! store's, e-tags included (inode, modification time, size).
//!
//! Everything else (writes, deletes, conditional or versioned reads, `head`, listings of
//! anything else) and any read that fails here for another reason (a directory, a range past
//! the end of a file that is not a data file) goes to the wrapped store, so its results and
//! errors are the wrapped store's. A range past the current end of a data file is an error
//! naming the file: the Delta log recorded a longer file, so it was truncated or rewritten.
//!
//! A mapping is only safe while no one shortens the file: touching a mapped page past a
//! truncated end, or one the disk fails to read, raises SIGBUS. Delta's data files are
//! immutable (written once, then at most deleted, which leaves a mapping valid), object_store
//! replaces a file by writing a new one and renaming it over the old, never in place, and
//! metaxy (Python and ours) writes only through it; the span is checked against the file's
//! length just before it is mapped. A data file truncated by hand while a query reads it, or a
//! failing disk, is what this does not survive: a store set `mmap = false` reads without maps.
//! Outside Unix nothing is read here (every request goes to the wrapped store).

use std::fmt;
use std::fs::File;
use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetRange, GetResult, GetResultPayload, ListResult, MultipartUpload,
    ObjectMeta, ObjectStore, PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions,
    Result,
};

/// Reads of at least this many bytes (in one request) map the file; smaller ones copy.
pub const MAP_FROM: u64 = 64 * 1024;

/// The local file system under `/` or under a directory, read in place (see the module
/// documentation); `inner` does everything else.
#[derive(Debug)]
pub struct MappedFiles {
    inner: Arc<dyn ObjectStore>,
    paths: LocalFileSystem,
    /// The directory (a path of this store) whose Delta tables' data files may be mapped.
    tables: Path,
    /// Whether large reads of data files map them (the store's `mmap` option).
    maps: bool,
}

/// What a read done here answers: `None` leaves the request to the wrapped store.
type Answer<T> = Option<Result<T>>;

impl MappedFiles {
    /// Wraps `inner`, a store whose paths are absolute file system paths (a `file://` URL's
    /// bucket store); data files of Delta tables anywhere may be mapped until
    /// [`MappedFiles::tables_under`] narrows it.
    pub fn new(inner: Arc<dyn ObjectStore>) -> Self {
        Self {
            inner,
            paths: LocalFileSystem::new(),
            tables: Path::default(),
            maps: true,
        }
    }

    /// Wraps `inner`, a store whose paths are relative to the directory `root`; `None` when
    /// `root` cannot be resolved (it does not exist).
    pub fn under(inner: Arc<dyn ObjectStore>, root: &std::path::Path) -> Option<Self> {
        Some(Self {
            paths: LocalFileSystem::new_with_prefix(root).ok()?,
            ..Self::new(inner)
        })
    }

    /// Maps only the data files of the Delta tables under `dir` (a path of this store: the
    /// store root).
    pub fn tables_under(self, dir: Path) -> Self {
        Self {
            tables: dir,
            ..self
        }
    }

    /// Whether large reads of data files map them (`false`: every large read goes to the
    /// wrapped store).
    pub fn with_maps(self, maps: bool) -> Self {
        Self { maps, ..self }
    }

    /// Whether `location` is a data file of a Delta table under the tables' directory
    /// ([`MappedFiles::tables_under`]): a `.parquet` file inside a `<name>.delta` directory,
    /// where no directory from the table's down starts with `_` or `.` (`_delta_log`, …).
    pub fn is_data_file(&self, location: &Path) -> bool {
        let Some(rest) = location.prefix_match(&self.tables) else {
            return false;
        };
        let parts: Vec<String> = rest.map(|p| p.as_ref().to_string()).collect();
        let Some(table) = parts.iter().position(|p| p.ends_with(".delta")) else {
            return false;
        };
        let inside = &parts[table + 1..];
        inside.last().is_some_and(|name| name.ends_with(".parquet"))
            && inside.iter().all(|p| !p.starts_with(['_', '.']))
    }

    /// The file at `location`, opened, with its metadata; `None` when it is not a readable
    /// regular file (left to the wrapped store, which says why), and always outside Unix.
    fn open(&self, location: &Path) -> Option<(File, std::fs::Metadata)> {
        if !cfg!(unix) {
            return None;
        }
        let path = self.paths.path_to_filesystem(location).ok()?;
        let file = File::open(path).ok()?;
        let metadata = file.metadata().ok()?;
        metadata.is_file().then_some((file, metadata))
    }

    /// The local store's error for a read of `location` when no file is there; `None` when
    /// there is one (or it cannot be told).
    fn not_found(&self, location: &Path) -> Option<object_store::Error> {
        let path = self.paths.path_to_filesystem(location).ok()?;
        match std::fs::symlink_metadata(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Some(object_store::Error::NotFound {
                    path: path.to_string_lossy().into_owned(),
                    source: Box::new(e),
                })
            }
            _ => None,
        }
    }

    /// The error of a read of `location` that failed here: for a data file the error itself
    /// (naming the file), for anything else `None` (the wrapped store answers).
    fn failed<T>(&self, location: &Path, data: bool, what: String) -> Answer<T> {
        data.then(|| {
            let path = self
                .paths
                .path_to_filesystem(location)
                .map_or_else(|_| location.to_string(), |p| p.display().to_string());
            Err(object_store::Error::Generic {
                store: "MappedFiles",
                source: format!("{path}: {what}").into(),
            })
        })
    }

    /// The files directly in the directory `prefix` when it holds only plainly named regular
    /// files (none when it is missing); `None` for anything else (left to the wrapped store).
    fn list_flat(&self, prefix: Option<&Path>) -> Option<Vec<ObjectMeta>> {
        let prefix = prefix?;
        let dir = self.paths.path_to_filesystem(prefix).ok()?;
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Some(Vec::new()),
            Err(_) => return None,
        };
        let mut listed = Vec::new();
        for entry in entries {
            let entry = entry.ok()?;
            let name = entry.file_name().into_string().ok()?;
            let plain = name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
            if !plain || name.starts_with('.') || !entry.file_type().ok()?.is_file() {
                return None;
            }
            let metadata = entry.metadata().ok()?;
            listed.push(object_meta(prefix.clone().join(name.as_str()), &metadata)?);
        }
        Some(listed)
    }

    /// The bytes of `ranges` of `location`, or `None` where the wrapped store should answer.
    fn read(&self, location: &Path, ranges: &[Range<u64>]) -> Answer<Vec<Bytes>> {
        let (file, metadata) = self.open(location)?;
        self.read_open(location, &file, metadata.len(), ranges)
    }

    /// The bytes of `ranges` of `location`, open as `file` of `size` bytes: copied when they
    /// are small, slices of a mapping when they are large and the file may be mapped; `None`
    /// where the wrapped store should answer.
    fn read_open(
        &self,
        location: &Path,
        file: &File,
        size: u64,
        ranges: &[Range<u64>],
    ) -> Answer<Vec<Bytes>> {
        let data = self.is_data_file(location);
        if let Some(r) = ranges.iter().find(|r| r.start > r.end || r.end > size) {
            return self.failed(location, data, past_end(r, size));
        }
        let total: u64 = ranges.iter().map(|r| r.end - r.start).sum();
        if total < MAP_FROM {
            let mut parts = Vec::with_capacity(ranges.len());
            for range in ranges {
                let mut buffer = vec![0; usize::try_from(range.end - range.start).ok()?];
                if let Err(e) = read_exact_at(file, &mut buffer, range.start) {
                    return self.failed(location, data, format!("reading {range:?}: {e}"));
                }
                parts.push(Bytes::from(buffer));
            }
            return Some(Ok(parts));
        }
        if !(data && self.maps && local_file_system(file)) {
            return None;
        }
        let start = ranges.iter().map(|r| r.start).min()?;
        let end = ranges.iter().map(|r| r.end).max()?;
        let len = usize::try_from(end - start).ok()?;
        // A data file of a Delta table of the store is written once, replaced only by a rename,
        // never in place; it is on a local file system, and the span lies within its length as
        // of the metadata just read (checked above). One truncated by hand while mapped is the
        // case this does not survive (module documentation; `mmap = false` turns maps off).
        // SAFETY: the mapping stays valid while no one shortens the file (above).
        let mapped = unsafe { memmap2::MmapOptions::new().offset(start).len(len).map(file) };
        let map = match mapped {
            Ok(map) => Bytes::from_owner(map),
            Err(e) => return self.failed(location, data, format!("mapping it: {e}")),
        };
        // Within the span (checked above), hence within the mapping; each slice shares it.
        let at = |offset: u64| (offset - start) as usize;
        Some(Ok(ranges
            .iter()
            .map(|r| map.slice(at(r.start)..at(r.end)))
            .collect()))
    }

    /// The bytes of `range` of `location` (all of it without one), its metadata and the range
    /// read, or `None` where the wrapped store should answer.
    fn read_one(
        &self,
        location: &Path,
        range: Option<&GetRange>,
    ) -> Answer<(Bytes, ObjectMeta, Range<u64>)> {
        let (file, metadata) = self.open(location)?;
        let size = metadata.len();
        let data = self.is_data_file(location);
        let range = match range {
            None => 0..size,
            // A data file is as long as its table says: a bounded range past its end means
            // it changed, not a request to clamp.
            Some(GetRange::Bounded(r)) if data && r.end > size => {
                return self.failed(location, data, past_end(r, size))
            }
            Some(r) => match r.as_range(size) {
                Ok(range) => range,
                Err(e) => return self.failed(location, data, e.to_string()),
            },
        };
        let meta = object_meta(location.clone(), &metadata)?;
        let read = self.read_open(location, &file, size, std::slice::from_ref(&range))?;
        Some(read.map(|mut parts| (parts.pop().unwrap_or_default(), meta, range)))
    }
}

/// What a range past the end of a data file says.
fn past_end(range: &Range<u64>, size: u64) -> String {
    format!(
        "bytes {}..{} were requested but the file has {size} bytes: it was truncated or \
         rewritten after the table recorded it",
        range.start, range.end
    )
}

/// Fills `buffer` from `file` at `offset` (a positioned read).
#[cfg(unix)]
fn read_exact_at(file: &File, buffer: &mut [u8], offset: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, buffer, offset)
}

/// Positioned reads are Unix's here ([`MappedFiles::open`] opens nothing elsewhere).
#[cfg(not(unix))]
fn read_exact_at(_: &File, _: &mut [u8], _: u64) -> std::io::Result<()> {
    Err(std::io::ErrorKind::Unsupported.into())
}

/// A file's inode number, part of the local store's e-tags (`None` outside Unix).
#[cfg(unix)]
fn inode(metadata: &std::fs::Metadata) -> Option<u64> {
    Some(std::os::unix::fs::MetadataExt::ino(metadata))
}

#[cfg(not(unix))]
fn inode(_: &std::fs::Metadata) -> Option<u64> {
    None
}

/// Whether `file` lies on a local file system a mapping may be trusted on: one `fstatfs`
/// names as a disk, memory or overlay file system; a network (NFS, SMB/CIFS, 9p, Ceph) or
/// FUSE file system, or anything unknown, is not mapped.
#[cfg(target_os = "linux")]
fn local_file_system(file: &File) -> bool {
    use std::os::fd::AsRawFd;
    /// `f_type` magic numbers (linux/magic.h): ext2/3/4, XFS, Btrfs, tmpfs, ramfs, overlayfs,
    /// ZFS, F2FS, bcachefs, JFS, ReiserFS.
    const LOCAL: [u32; 11] = [
        0xEF53,
        0x5846_5342,
        0x9123_683E,
        0x0102_1994,
        0x8584_58F6,
        0x794C_7630,
        0x2FC1_2FC1,
        0xF2F5_2010,
        0xCA45_1A4E,
        0x3153_464A,
        0x5265_4973,
    ];
    let mut stat = std::mem::MaybeUninit::<libc::statfs>::uninit();
    // SAFETY: `fstatfs` reads the descriptor `file` keeps open for the call and writes one
    // `statfs` into `stat`, which is valid for that write.
    if unsafe { libc::fstatfs(file.as_raw_fd(), stat.as_mut_ptr()) } != 0 {
        return false;
    }
    // SAFETY: `fstatfs` returned 0, so it filled `stat`.
    let kind = unsafe { stat.assume_init() }.f_type;
    // The magic numbers are 32-bit; `f_type`'s width and sign vary by target.
    LOCAL.contains(&(kind as u32))
}

/// Outside Linux the file system is not checked, so nothing is mapped.
#[cfg(not(target_os = "linux"))]
fn local_file_system(_: &File) -> bool {
    false
}

/// A file's object metadata as the local store gives it: modification time, size, and its
/// e-tag scheme (inode, modification time in microseconds, size, in hex).
fn object_meta(location: Path, metadata: &std::fs::Metadata) -> Option<ObjectMeta> {
    let modified = metadata.modified().ok()?;
    let micros = modified
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros();
    Some(ObjectMeta {
        location,
        last_modified: modified.into(),
        size: metadata.len(),
        e_tag: Some(format!(
            "{:x}-{micros:x}-{:x}",
            inode(metadata)?,
            metadata.len()
        )),
        version: None,
    })
}

impl fmt::Display for MappedFiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MappedFiles({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for MappedFiles {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let plain = !options.head
            && options.if_match.is_none()
            && options.if_none_match.is_none()
            && options.if_modified_since.is_none()
            && options.if_unmodified_since.is_none()
            && options.version.is_none();
        if plain {
            if let Some(read) = self.read_one(location, options.range.as_ref()) {
                let (bytes, meta, range) = read?;
                return Ok(GetResult {
                    payload: GetResultPayload::Stream(
                        futures::stream::once(async move { Ok(bytes) }).boxed(),
                    ),
                    meta,
                    range,
                    attributes: Default::default(),
                });
            }
            if let Some(missing) = self.not_found(location) {
                return Err(missing);
            }
        }
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        match self.read(location, ranges) {
            Some(parts) => parts,
            None => self.inner.get_ranges(location, ranges).await,
        }
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        match self.list_flat(prefix) {
            Some(listed) => futures::stream::iter(listed.into_iter().map(Ok)).boxed(),
            None => self.inner.list(prefix),
        }
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        self.inner.rename_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use object_store::local::LocalFileSystem;
    use object_store::path::Path;
    use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt};

    use super::{MappedFiles, MAP_FROM};

    /// Every read answers what object_store's own local store answers: whole files, bounded,
    /// offset and suffix ranges, several ranges at once, copied (small) and mapped (large, of
    /// a data file) or left to the wrapped store (large, of another file); and the same errors
    /// for a missing file and a range past the end.
    #[tokio::test]
    async fn reads_equal_the_local_file_system() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let size = 3 * MAP_FROM + 123;
        let data: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
        std::fs::create_dir(dir.join("t.delta")).unwrap();
        std::fs::write(dir.join("t.delta/part-0.parquet"), &data).unwrap();
        std::fs::write(dir.join("data.bin"), &data).unwrap();
        std::fs::write(dir.join("small.json"), b"{\"a\":1}").unwrap();
        let local: Arc<dyn ObjectStore> = Arc::new(LocalFileSystem::new());
        let mapped = MappedFiles::new(Arc::clone(&local));
        let at = |name: &str| Path::from_filesystem_path(dir.join(name)).unwrap();
        let (big, other, small) = (
            at("t.delta/part-0.parquet"),
            at("data.bin"),
            at("small.json"),
        );
        assert!(mapped.is_data_file(&big) && !mapped.is_data_file(&other));
        let whole = 0..size;
        let whole = std::slice::from_ref(&whole);
        assert_eq!(
            mapped.get_ranges(&other, whole).await.unwrap(),
            local.get_ranges(&other, whole).await.unwrap()
        );

        for location in [&big, &other, &small] {
            let want = local.get(location).await.unwrap();
            let (want_range, want_size) = (want.range.clone(), want.meta.size);
            let want_meta = want.meta.clone();
            let want = want.bytes().await.unwrap();
            let got = mapped.get(location).await.unwrap();
            assert_eq!(got.meta, want_meta);
            assert_eq!((got.range.clone(), got.meta.size), (want_range, want_size));
            assert_eq!(got.bytes().await.unwrap(), want);
        }
        let ranges = [
            GetRange::Bounded(0..8),
            GetRange::Bounded(5..MAP_FROM + 7),
            GetRange::Bounded(size - MAP_FROM - 1..size),
            GetRange::Offset(size - 10),
            GetRange::Offset(1),
            GetRange::Suffix(8),
            GetRange::Suffix(MAP_FROM * 2),
            GetRange::Suffix(size + 100),
        ];
        for range in ranges {
            let options = || GetOptions {
                range: Some(range.clone()),
                ..Default::default()
            };
            let want = local.get_opts(&big, options()).await.unwrap();
            let got = mapped.get_opts(&big, options()).await.unwrap();
            assert_eq!(got.range, want.range, "{range:?}");
            assert_eq!(
                got.bytes().await.unwrap(),
                want.bytes().await.unwrap(),
                "{range:?}"
            );
        }
        for ranges in [
            vec![0..10, 100..200],
            vec![0..MAP_FROM, MAP_FROM..2 * MAP_FROM + 3, size - 1..size],
            vec![7..7, 3..MAP_FROM * 2],
        ] {
            assert_eq!(
                mapped.get_ranges(&big, &ranges).await.unwrap(),
                local.get_ranges(&big, &ranges).await.unwrap(),
                "{ranges:?}"
            );
        }

        let missing = Path::from_filesystem_path(dir)
            .unwrap()
            .join("missing.parquet");
        let err = mapped.get(&missing).await.unwrap_err();
        assert!(matches!(err, object_store::Error::NotFound { .. }), "{err}");
        if let (
            object_store::Error::NotFound { path: a, .. },
            Err(object_store::Error::NotFound { path: b, .. }),
        ) = (&err, local.get(&missing).await)
        {
            assert_eq!(a, &b);
        } else {
            panic!("the local store finds {missing}");
        }

        let past = [size - 1..size + 1, 0..1];
        assert_eq!(
            mapped.get_ranges(&big, &past).await.is_err(),
            local.get_ranges(&big, &past).await.is_err()
        );
    }

    /// Listings equal the local store's: a flat directory (read here), one with a
    /// subdirectory and one with an odd name (left to the wrapped store), a missing one.
    #[tokio::test]
    async fn listings_equal_the_local_file_system() {
        use futures::TryStreamExt;

        let tmp = tempfile::tempdir().unwrap();
        let log = tmp.path().join("t.delta").join("_delta_log");
        std::fs::create_dir_all(&log).unwrap();
        for (name, bytes) in [
            ("00000000000000000000.json", &b"{}"[..]),
            ("00000000000000000001.json", b"{\"add\":{}}"),
            ("_last_checkpoint", b"x"),
        ] {
            std::fs::write(log.join(name), bytes).unwrap();
        }
        let local: Arc<dyn ObjectStore> = Arc::new(LocalFileSystem::new());
        let mapped = MappedFiles::new(Arc::clone(&local));
        let listing = |store: &dyn ObjectStore, prefix: Path| {
            let stream = store.list(Some(&prefix));
            async move {
                let mut metas: Vec<_> = stream.try_collect().await.unwrap();
                metas.sort_by(|a, b| a.location.cmp(&b.location));
                metas
            }
        };
        let prefix = || Path::from_filesystem_path(&log).unwrap();
        let flat = listing(&mapped, prefix()).await;
        assert_eq!(flat.len(), 3);
        assert_eq!(flat, listing(local.as_ref(), prefix()).await);
        assert!(mapped.list_flat(Some(&prefix())).is_some());

        std::fs::create_dir(log.join("_commits")).unwrap();
        std::fs::write(log.join("_commits").join("a.json"), b"{}").unwrap();
        std::fs::write(log.join("odd name.json"), b"{}").unwrap();
        assert!(mapped.list_flat(Some(&prefix())).is_none());
        let nested = listing(&mapped, prefix()).await;
        assert_eq!(nested.len(), 5);
        assert_eq!(nested, listing(local.as_ref(), prefix()).await);

        let gone = Path::from_filesystem_path(tmp.path())
            .unwrap()
            .join("missing");
        assert!(listing(&mapped, gone.clone()).await.is_empty());
        assert!(listing(local.as_ref(), gone).await.is_empty());
    }

    /// Data files are the parquet files of the `.delta` tables under the tables' directory:
    /// not their logs, not our state, not files outside it.
    #[test]
    fn data_files_are_the_parquet_files_of_the_tables() {
        let local: Arc<dyn ObjectStore> = Arc::new(LocalFileSystem::new());
        let mapped = MappedFiles::new(local).tables_under(Path::from("srv/store"));
        for (path, data) in [
            (
                "srv/store/example/video.delta/part-00000-1-c000.snappy.parquet",
                true,
            ),
            ("srv/store/video.delta/sub/part-1.parquet", true),
            (
                "srv/store/example/video.delta/_delta_log/00000000000000000010.checkpoint.parquet",
                false,
            ),
            (
                "srv/store/example/video.delta/_delta_log/00000000000000000000.json",
                false,
            ),
            (
                "srv/store/example/video.delta/_change_data/cdc-1.parquet",
                false,
            ),
            ("srv/store/example/video.delta/.hidden/x.parquet", false),
            ("srv/store/example/video.delta", false),
            (
                "srv/store/_metaxy/resolve/keys/example.video.parquet",
                false,
            ),
            ("srv/store/loose.parquet", false),
            ("srv/other/example/video.delta/part-1.parquet", false),
            ("tmp/input.parquet", false),
        ] {
            assert_eq!(mapped.is_data_file(&Path::from(path)), data, "{path}");
        }
    }

    /// A data file shorter than the range read (truncated after its table recorded it) is an
    /// error naming the file, from every kind of read, small or large; never a mapping.
    #[tokio::test]
    async fn a_truncated_data_file_is_an_error_naming_it() {
        let tmp = tempfile::tempdir().unwrap();
        let table = tmp.path().join("t.delta");
        std::fs::create_dir_all(&table).unwrap();
        let file = table.join("part-0.parquet");
        std::fs::write(&file, vec![1u8; 3 * MAP_FROM as usize]).unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&file)
            .unwrap()
            .set_len(MAP_FROM / 2)
            .unwrap();
        let mapped = MappedFiles::new(Arc::new(LocalFileSystem::new()));
        let at = Path::from_filesystem_path(&file).unwrap();
        let errors = [
            mapped
                .get_ranges(&at, std::slice::from_ref(&(0..3 * MAP_FROM)))
                .await
                .unwrap_err(),
            mapped
                .get_ranges(&at, std::slice::from_ref(&(MAP_FROM..MAP_FROM + 8)))
                .await
                .unwrap_err(),
            mapped
                .get_range(&at, 2 * MAP_FROM..3 * MAP_FROM)
                .await
                .unwrap_err(),
            mapped.get_range(&at, 0..MAP_FROM).await.unwrap_err(),
        ];
        for e in errors {
            let e = e.to_string();
            assert!(
                e.contains(file.to_str().unwrap()) && e.contains("truncated"),
                "{e}"
            );
        }
        // What is there is still read.
        assert_eq!(mapped.get_range(&at, 0..8).await.unwrap(), vec![1u8; 8]);
    }
}
