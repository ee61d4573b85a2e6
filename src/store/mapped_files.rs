//! Local files read in place: the object store a Delta store on a local path reads through.
//!
//! object_store's `LocalFileSystem` reads every range on tokio's blocking pool (one more thread
//! started per concurrent read) into a freshly allocated, zeroed buffer: each 4 KiB of a parquet
//! column chunk costs a new anonymous page (a page fault, the page cleared, then the copy from
//! the page cache). [`MappedFiles`] answers the plain reads instead, on the calling thread:
//!
//! - a request for less than [`MAP_FROM`] bytes (a Delta commit, a parquet footer) is read with
//!   one positioned read into a buffer of its size;
//! - a larger one (column chunks) maps the file and hands out slices of the mapping: the pages
//!   are the page cache's own, mapped sixteen at a time on first access, never copied.
//!
//! A listing of a directory of plainly named regular files (a Delta log: letters, digits, `.`,
//! `_`, `-`) is read on the calling thread too, as the local store lists it, and a read of a
//! missing file fails there with the local store's `NotFound`. Object metadata is the local
//! store's, e-tags included (inode, modification time, size).
//!
//! Everything else (writes, deletes, conditional or versioned reads, `head`, listings of
//! anything else) and any read that fails here for another reason (a directory, a range past
//! the end) goes to the wrapped store, so its results and errors are the wrapped store's.
//!
//! A mapping is only safe while no one shortens the file: reading a page past a truncated end
//! raises SIGBUS. Delta's data files are immutable (written once, then at most deleted, which
//! leaves a mapping valid), and object_store replaces a file by writing a new one and renaming
//! it over the old, never in place; metaxy (Python and ours) writes only through it. A file
//! truncated by hand while a query reads it is the one case this does not survive.

use std::fmt;
use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::FileExt;
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
/// documentation); `inner` (the store delta-rs built for the same root) does everything else.
#[derive(Debug)]
pub struct MappedFiles {
    inner: Arc<dyn ObjectStore>,
    paths: LocalFileSystem,
}

impl MappedFiles {
    /// Wraps `inner`, a store whose paths are absolute file system paths (a `file://` URL's
    /// bucket store).
    pub fn new(inner: Arc<dyn ObjectStore>) -> Self {
        Self {
            inner,
            paths: LocalFileSystem::new(),
        }
    }

    /// Wraps `inner`, a store whose paths are relative to the directory `root`; `None` when
    /// `root` cannot be resolved (it does not exist).
    pub fn under(inner: Arc<dyn ObjectStore>, root: &std::path::Path) -> Option<Self> {
        Some(Self {
            inner,
            paths: LocalFileSystem::new_with_prefix(root).ok()?,
        })
    }

    /// The file at `location`, opened, with its metadata; `None` when it is not a readable
    /// regular file (left to the wrapped store, which says why).
    fn open(&self, location: &Path) -> Option<(File, std::fs::Metadata)> {
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
    fn read(&self, location: &Path, ranges: &[Range<u64>]) -> Option<Vec<Bytes>> {
        let (file, metadata) = self.open(location)?;
        read_ranges(&file, metadata.len(), ranges)
    }

    /// The bytes of `range` of `location` (all of it without one), its metadata and the range
    /// read, or `None` where the wrapped store should answer.
    fn read_one(
        &self,
        location: &Path,
        range: Option<&GetRange>,
    ) -> Option<(Bytes, ObjectMeta, Range<u64>)> {
        let (file, metadata) = self.open(location)?;
        let size = metadata.len();
        let range = match range {
            None => 0..size,
            Some(r) => r.as_range(size).ok()?,
        };
        let bytes = read_ranges(&file, size, std::slice::from_ref(&range))?.pop()?;
        Some((bytes, object_meta(location.clone(), &metadata)?, range))
    }
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
            std::os::unix::fs::MetadataExt::ino(metadata),
            metadata.len()
        )),
        version: None,
    })
}

/// `ranges` of `file` (`size` bytes long): copied when they are small, else slices of a
/// mapping; `None` when a range is not within the file or the read fails.
fn read_ranges(file: &File, size: u64, ranges: &[Range<u64>]) -> Option<Vec<Bytes>> {
    if ranges.iter().any(|r| r.start > r.end || r.end > size) {
        return None;
    }
    let total: u64 = ranges.iter().map(|r| r.end - r.start).sum();
    if total < MAP_FROM {
        let mut parts = Vec::with_capacity(ranges.len());
        for range in ranges {
            let mut buffer = vec![0; usize::try_from(range.end - range.start).ok()?];
            file.read_exact_at(&mut buffer, range.start).ok()?;
            parts.push(Bytes::from(buffer));
        }
        return Some(parts);
    }
    // SAFETY: see the module documentation: the file is not shortened while mapped.
    let map = Bytes::from_owner(unsafe { memmap2::Mmap::map(file) }.ok()?);
    // Within the file (checked above), hence within the mapping; each slice shares it.
    Some(
        ranges
            .iter()
            .map(|r| map.slice(r.start as usize..r.end as usize))
            .collect(),
    )
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
            if let Some((bytes, meta, range)) = self.read_one(location, options.range.as_ref()) {
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
            Some(parts) => Ok(parts),
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
    /// offset and suffix ranges, several ranges at once, copied (small) and mapped (large);
    /// and the same errors for a missing file and a range past the end.
    #[tokio::test]
    async fn reads_equal_the_local_file_system() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let size = 3 * MAP_FROM + 123;
        let data: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
        std::fs::write(dir.join("data.bin"), &data).unwrap();
        std::fs::write(dir.join("small.json"), b"{\"a\":1}").unwrap();
        let local: Arc<dyn ObjectStore> = Arc::new(LocalFileSystem::new());
        let mapped = MappedFiles::new(Arc::clone(&local));
        let at = |name: &str| Path::from_filesystem_path(dir.join(name)).unwrap();
        let (big, small) = (at("data.bin"), at("small.json"));

        for location in [&big, &small] {
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
}
