//! An object store wrapper that fails the first reads with a transient error, and can fail or
//! cancel a task at its Nth write or copy.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};
use tokio_util::sync::CancellationToken;

/// Fails the first `failures` reads (HEAD and GET) with a generic (retryable) error; with
/// [`FlakyStore::failing_put`], [`FlakyStore::failing_copy`] or [`FlakyStore::cancelling_put`]
/// it also fails, or cancels a token at, the Nth write or copy (counted from 1).
#[derive(Debug)]
pub struct FlakyStore {
    inner: Arc<dyn ObjectStore>,
    failures: usize,
    reads: AtomicUsize,
    puts: AtomicUsize,
    copies: AtomicUsize,
    fail_put: Option<usize>,
    fail_copy: Option<usize>,
    cancel_put: Option<(usize, CancellationToken)>,
}

impl FlakyStore {
    pub fn new(inner: Arc<dyn ObjectStore>, failures: usize) -> Self {
        Self {
            inner,
            failures,
            reads: AtomicUsize::new(0),
            puts: AtomicUsize::new(0),
            copies: AtomicUsize::new(0),
            fail_put: None,
            fail_copy: None,
            cancel_put: None,
        }
    }

    /// The `n`th write fails (nothing is written).
    pub fn failing_put(mut self, n: usize) -> Self {
        self.fail_put = Some(n);
        self
    }

    /// The `n`th copy fails (nothing is copied).
    pub fn failing_copy(mut self, n: usize) -> Self {
        self.fail_copy = Some(n);
        self
    }

    /// The `n`th write is made, then `token` is cancelled.
    pub fn cancelling_put(mut self, n: usize, token: CancellationToken) -> Self {
        self.cancel_put = Some((n, token));
        self
    }

    pub fn reads(&self) -> usize {
        self.reads.load(Ordering::SeqCst)
    }
}

impl fmt::Display for FlakyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FlakyStore({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for FlakyStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        let n = self.puts.fetch_add(1, Ordering::SeqCst) + 1;
        if self.fail_put == Some(n) {
            return Err(injected());
        }
        let result = self.inner.put_opts(location, payload, opts).await;
        if let Some((_, token)) = self.cancel_put.as_ref().filter(|(at, _)| *at == n) {
            token.cancel();
        }
        result
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        if self.reads.fetch_add(1, Ordering::SeqCst) < self.failures {
            return Err(injected());
        }
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        if self.fail_copy == Some(self.copies.fetch_add(1, Ordering::SeqCst) + 1) {
            return Err(injected());
        }
        self.inner.copy_opts(from, to, options).await
    }
}

fn injected() -> object_store::Error {
    object_store::Error::Generic {
        store: "flaky",
        source: "503 Service Unavailable (injected)".into(),
    }
}
