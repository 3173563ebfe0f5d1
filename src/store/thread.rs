//! The one writer: the [`Store`] on a thread of its own, reached from async
//! code through a clonable [`StoreHandle`].
//!
//! ```text
//!   engine task ─┐  StoreHandle::apply(changes).await
//!   MQTT service ┼─► job ─► std mpsc ─► store thread ─► Store::apply … fsync
//!   (counters)   ┘                          │ result
//!          ◄────────────── oneshot ◄────────┘
//! ```
//!
//! Why a thread: a commit with `synchronous=FULL` waits for the flash
//! (tens to hundreds of milliseconds on eMMC). On a tokio worker that wait
//! would stall every task scheduled there — the motor's stall sampling
//! among them — and a `std::sync::Mutex<Store>` taken from async code would
//! stall the other worker too. Here only the caller's task waits; the
//! workers keep running.
//!
//! Jobs run one at a time, in the order they were sent, so a caller that
//! awaits each call (as the engine task does) gets its writes committed in
//! its own order. [`StoreThread::stop`] runs what was queued before it,
//! closes the database (SQLite checkpoints the WAL) and joins the thread;
//! a call after that fails with [`StoreError::Stopped`].
use std::panic::AssertUnwindSafe;
use std::sync::mpsc;

use tokio::sync::oneshot;

use super::events::EventId;
use super::{StorageHealth, Store, StoreError};
use crate::core::event::Event;
use crate::core::types::{Change, Persisted};

type Job = Box<dyn FnOnce(&mut Store) + Send>;

enum Message {
    Run(Job),
    Stop,
}

/// Sends work to the store thread. Cheap to clone.
#[derive(Clone, Debug)]
pub struct StoreHandle {
    tx: mpsc::Sender<Message>,
}

/// The running store thread; [`StoreThread::stop`] ends it.
#[derive(Debug)]
pub struct StoreThread {
    tx: mpsc::Sender<Message>,
    thread: std::thread::JoinHandle<()>,
}

impl StoreHandle {
    /// Move `store` onto its own thread.
    pub fn spawn(store: Store) -> Result<(StoreHandle, StoreThread), StoreError> {
        let (tx, rx) = mpsc::channel::<Message>();
        let thread = std::thread::Builder::new()
            .name("latchd-store".into())
            .spawn(move || serve(store, rx))
            .map_err(|source| StoreError::Thread { source })?;
        Ok((StoreHandle { tx: tx.clone() }, StoreThread { tx, thread }))
    }

    /// Run `f` on the store thread and wait (asynchronously) for its result.
    pub async fn call<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        F: FnOnce(&mut Store) -> R + Send + 'static,
        R: Send + 'static,
    {
        let (reply, result) = oneshot::channel();
        let job: Job = Box::new(move |store| {
            // The caller may have given up; the work is done either way.
            let _ = reply.send(f(store));
        });
        self.tx
            .send(Message::Run(job))
            .map_err(|_| StoreError::Stopped {
                detail: "the store thread has stopped".into(),
            })?;
        result.await.map_err(|_| StoreError::Stopped {
            detail: "the store thread dropped the request (it stopped or the job panicked)".into(),
        })
    }

    /// [`StoreHandle::call`] for a caller that is not async: the Matter
    /// node's persistence and its Door Lock reads are synchronous calls on
    /// the node's own thread. That thread waits for the job; the daemon's
    /// runtime does not. The reply comes over a std channel, as tokio's
    /// blocking receive may not run inside the node's runtime.
    pub fn call_blocking<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        F: FnOnce(&mut Store) -> R + Send + 'static,
        R: Send + 'static,
    {
        let (reply, result) = mpsc::sync_channel(1);
        let job: Job = Box::new(move |store| {
            let _ = reply.send(f(store));
        });
        self.tx
            .send(Message::Run(job))
            .map_err(|_| StoreError::Stopped {
                detail: "the store thread has stopped".into(),
            })?;
        result.recv().map_err(|_| StoreError::Stopped {
            detail: "the store thread dropped the request (it stopped or the job panicked)".into(),
        })
    }

    /// [`Store::apply`] on the writer: committed (fsynced) when this returns `Ok`.
    pub async fn apply(&self, changes: Vec<Change>) -> Result<(), StoreError> {
        self.call(move |s| s.apply(&changes)).await?
    }

    /// [`Store::append_events`] on the writer.
    pub async fn append_events(&self, events: Vec<Event>) -> Result<Vec<EventId>, StoreError> {
        self.call(move |s| s.append_events(&events)).await?
    }

    /// [`Store::load`] on the writer (sees every commit made so far).
    pub async fn load(&self) -> Result<Persisted, StoreError> {
        self.call(|s| s.load()).await?
    }

    /// [`Store::get_counter`] on the writer.
    pub async fn get_counter(&self, name: &str) -> Result<Option<u64>, StoreError> {
        let name = name.to_owned();
        self.call(move |s| s.get_counter(&name)).await?
    }

    /// [`Store::put_counter`] on the writer.
    pub async fn put_counter(&self, name: &str, value: u64) -> Result<(), StoreError> {
        let name = name.to_owned();
        self.call(move |s| s.put_counter(&name, value)).await?
    }

    /// Read a counter, add one and store it, in one step on the writer;
    /// returns the new value (1 for a counter never stored).
    pub async fn next_counter(&self, name: &str) -> Result<u64, StoreError> {
        let name = name.to_owned();
        self.call(move |s| {
            let next = s.get_counter(&name)?.unwrap_or(0).saturating_add(1);
            s.put_counter(&name, next)?;
            Ok(next)
        })
        .await?
    }

    /// [`Store::health`]; a stopped store reports itself unhealthy.
    pub async fn health(&self) -> StorageHealth {
        match self.call(|s| s.health()).await {
            Ok(h) => h,
            Err(e) => StorageHealth {
                ok: false,
                detail: e.to_string(),
                db_bytes: 0,
                events: 0,
            },
        }
    }
}

impl StoreThread {
    /// Run what was queued, close the database and join the thread.
    /// Blocks until then; call it from a blocking context (shutdown does
    /// it through `spawn_blocking`).
    pub fn stop(self) {
        // Already gone (a job panicked the thread): nothing to stop.
        let _ = self.tx.send(Message::Stop);
        if self.thread.join().is_err() {
            tracing::error!("the store thread panicked");
        }
    }
}

fn serve(mut store: Store, rx: mpsc::Receiver<Message>) {
    while let Ok(message) = rx.recv() {
        match message {
            Message::Run(job) => {
                // A panicking job must not take the writer down with it:
                // its caller sees the request dropped, the next job runs.
                if std::panic::catch_unwind(AssertUnwindSafe(|| job(&mut store))).is_err() {
                    tracing::error!("a store job panicked; the store keeps serving");
                }
            }
            Message::Stop => break,
        }
    }
    // Dropping the store closes the connection (WAL checkpointed).
    drop(store);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreOptions;

    #[tokio::test]
    async fn calls_run_in_order_and_stop_closes_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _key) = Store::open(dir.path(), StoreOptions::default()).unwrap();
        let (handle, thread) = StoreHandle::spawn(store).unwrap();
        for i in 1..=5 {
            assert_eq!(handle.next_counter("t.count").await.unwrap(), i);
        }
        assert_eq!(handle.get_counter("t.count").await.unwrap(), Some(5));
        let panicked = handle.call(|_| -> u8 { panic!("boom") }).await;
        assert!(matches!(panicked, Err(StoreError::Stopped { .. })));
        assert_eq!(handle.get_counter("t.count").await.unwrap(), Some(5));
        handle.put_counter("t.count", 40).await.unwrap();
        assert_eq!(handle.get_counter("t.count").await.unwrap(), Some(40));
        tokio::task::spawn_blocking(move || thread.stop())
            .await
            .unwrap();
        assert!(matches!(
            handle.get_counter("t.count").await,
            Err(StoreError::Stopped { .. })
        ));
        // Closed: a fresh open sees what was written.
        let (store, _key) = Store::open(dir.path(), StoreOptions::default()).unwrap();
        assert_eq!(store.get_counter("t.count").unwrap(), Some(40));
    }
}
