//! Following the log: catch-up and live in one loop, shared by the backends whose writers publish
//! a committed head.
//!
//! Wait until the head reaches the next wanted position, read a page from there, yield it.
//! Positions are gap-free and the head is published only after the commit, so a read after the
//! wait always starts exactly at `next`; nothing is skipped and nothing is yielded twice, whether
//! the event was old or just committed.

use std::collections::VecDeque;
use std::sync::Arc;

use futures::StreamExt;
use futures::stream::BoxStream;
use tokio::sync::watch;

use crate::{RecordedEvent, StoreError};

/// Events a subscription reads per page while catching up.
const PAGE: usize = 512;

/// Where a subscription reads its pages from: the backend's `read_all`.
#[async_trait::async_trait]
pub(crate) trait Pages: Send + Sync + 'static {
    async fn page(&self, from_position: u64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError>;
}

/// Every event from `from_position`, in order, each once; ends when every sender of `head` is
/// gone (the store closed) and everything committed has been yielded.
pub(crate) fn follow<P: Pages>(
    pages: Arc<P>,
    head: watch::Receiver<u64>,
    from_position: u64,
) -> BoxStream<'static, Result<RecordedEvent, StoreError>> {
    struct Follow<P> {
        pages: Arc<P>,
        head: watch::Receiver<u64>,
        next: u64,
        page: VecDeque<RecordedEvent>,
        failed: bool,
    }
    let state = Follow { pages, head, next: from_position.max(1), page: VecDeque::new(), failed: false };
    futures::stream::unfold(state, |mut follow| async move {
        loop {
            if let Some(event) = follow.page.pop_front() {
                follow.next = event.position + 1;
                return Some((Ok(event), follow));
            }
            if follow.failed {
                return None;
            }
            let next = follow.next;
            // Fails only once the writer is gone and the head is still below `next`: the store
            // is closed and everything committed has been yielded.
            let head = match follow.head.wait_for(|head| *head >= next).await {
                Ok(head) => *head,
                Err(_) => return None,
            };
            // Never past the published head: a shared store's table may already hold rows other
            // processes committed that this one has not been told of, and nothing downstream
            // (projections, `/readyz`, the ledger's checks) may get ahead of `head()`.
            let limit = usize::try_from(head - next + 1).unwrap_or(PAGE).min(PAGE);
            let page = match follow.pages.page(next, limit).await {
                Ok(page) => page,
                Err(error) => {
                    follow.failed = true;
                    return Some((Err(error), follow));
                }
            };
            // The head said `next` is committed; a page that does not start there means the log
            // has a hole, which must be reported, not skipped.
            let hole = if page.is_empty() {
                Some(next)
            } else {
                page.iter()
                    .zip(next..)
                    .find(|(event, expected)| event.position != *expected)
                    .map(|(_, expected)| expected)
            };
            if let Some(position) = hole {
                follow.failed = true;
                let reason = "committed but missing from a read of the log".to_owned();
                return Some((Err(StoreError::Corrupt { position, reason }), follow));
            }
            follow.page = page.into();
        }
    })
    .boxed()
}
