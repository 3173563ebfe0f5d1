//! How inputs reach the engine: the one queue every device task, front
//! panel and channel feeds, with a count of what was sent.
//!
//! ```text
//!   device task / channel ── InputSender::send (waits when full) ──┐
//!   sync code ───────────── InputSender::try_send (drops, says so) ┼─► mpsc<Input> ─► engine task
//!   engine-task callbacks ─ OrderedSender::push ─► forwarder task ─┘
//!                     every send counted on one `sent` counter (the barrier's target)
//! ```
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::core::Input;

/// The one way device tasks hand inputs to the engine: an
/// `mpsc::Sender<Input>` plus a count of inputs sent, so the control socket
/// can wait until the engine has handled everything sent before it
/// (the "barrier": the published `processed` count reaching `sent`).
#[derive(Debug, Clone)]
pub struct InputSender {
    tx: mpsc::Sender<Input>,
    sent: Arc<AtomicU64>,
}

impl InputSender {
    pub fn new(tx: mpsc::Sender<Input>) -> Self {
        InputSender {
            tx,
            sent: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Queue `input` for the engine. Waits while the queue is full (back
    /// pressure), and returns `false` only when the engine has stopped.
    pub async fn send(&self, input: Input) -> bool {
        // Counted before the send so a barrier never passes an input that
        // is in flight.
        self.sent.fetch_add(1, Ordering::SeqCst);
        if self.tx.send(input).await.is_err() {
            self.sent.fetch_sub(1, Ordering::SeqCst);
            return false;
        }
        true
    }

    /// Queue an input from synchronous code; `false` when the queue is full
    /// or the engine has stopped (the input is dropped and the caller logs).
    pub fn try_send(&self, input: Input) -> bool {
        self.sent.fetch_add(1, Ordering::SeqCst);
        if self.tx.try_send(input).is_err() {
            self.sent.fetch_sub(1, Ordering::SeqCst);
            return false;
        }
        true
    }

    /// How many inputs have been queued so far, by every clone.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::SeqCst)
    }
}

/// An unbounded, order-preserving queue in front of an [`InputSender`],
/// for code that must hand over inputs without awaiting — a device
/// command called from the engine task itself (which must never wait on
/// its own queue), or a simulated button pressed from the front panel.
///
/// Inputs are counted on the shared [`InputSender::sent`] counter when they
/// are pushed, not when they reach the engine, so a barrier never passes
/// an input waiting here. One forwarding task keeps them in push order.
#[derive(Debug, Clone)]
pub struct OrderedSender {
    tx: mpsc::UnboundedSender<Input>,
    sent: Arc<AtomicU64>,
}

impl OrderedSender {
    /// Start the forwarding task (it ends when every `OrderedSender` clone
    /// is dropped or the engine has stopped).
    pub fn spawn(inputs: InputSender) -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<Input>();
        let sent = inputs.sent.clone();
        let engine = inputs.tx.clone();
        tokio::spawn(async move {
            while let Some(input) = rx.recv().await {
                if engine.send(input).await.is_err() {
                    break;
                }
            }
        });
        OrderedSender { tx, sent }
    }

    /// Queue `input`; `false` when the engine has stopped.
    pub fn push(&self, input: Input) -> bool {
        self.sent.fetch_add(1, Ordering::SeqCst);
        if self.tx.send(input).is_err() {
            self.sent.fetch_sub(1, Ordering::SeqCst);
            return false;
        }
        true
    }
}
