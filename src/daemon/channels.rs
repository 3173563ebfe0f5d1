//! Every queue and publication between the engine task and the rest of the
//! daemon, made in one place so each has one documented role.
//!
//! ```text
//!   device tasks, front panel, control socket, channels ── inputs ──────────► engine task
//!   D-Bus self-test ───────────────────────────────────── requests ────────► engine task
//!   engine task ── published ──► front panel, control socket, channels, Wi-Fi monitor, video
//!               ── diagnostics ► D-Bus properties
//!               ── app_access ─► BLE / MQTT gate (no store read per frame)
//!               ── events ─────► D-Bus EventLogged, MQTT events, front panel log
//!               ── replies ────► the channel awaiting an `Input::App`
//!               ── notices ────► MQTT (sealed owner notices, alerts)
//!               ── update_cmds ► the update task (RAUC), which answers with inputs
//!   BLE service, Wi-Fi monitor ── health ──► engine task (republishes the diagnostics)
//! ```
use std::sync::Arc;

use tokio::sync::{broadcast, mpsc, watch};

use crate::core::action::UpdateCmd;
use crate::core::users::AppAccess;
use crate::core::{AppResult, Input, Status};
use crate::dbus::Diagnostics;
use crate::link::{
    DaemonCounters, EventRecord, HealthBoard, InputSender, Link, LinkParts, OwnerNotice, Published,
    TaskRequest,
};
use crate::store::{StoreHandle, StoreReads};

/// Capacity of the engine's input queue. Device tasks wait when it is
/// full (back pressure) rather than drop a key press.
pub const INPUT_QUEUE: usize = 256;
/// Logged events a slow subscriber may fall behind by (it then skips to
/// the newest; the store, not the channel, is the record).
const EVENT_BACKLOG: usize = 256;
/// Answers in flight to `Input::App` requests.
const REPLY_BACKLOG: usize = 64;
/// Owner notices a slow subscriber may fall behind by.
const NOTICE_BACKLOG: usize = 64;
/// Self-test requests waiting (the D-Bus service runs one at a time).
const REQUEST_QUEUE: usize = 4;

/// The daemon's channels; the engine task takes the receiving and
/// publishing ends, [`Channels::link`] hands the rest to the channels.
#[derive(Debug)]
pub struct Channels {
    /// Sending end of the engine's one input queue: device tasks, the
    /// front panel, the control socket and every app channel feed it; its
    /// count of sent inputs is the barrier tests and the control socket
    /// wait on.
    pub inputs: InputSender,
    /// Receiving end of the input queue: the engine task.
    pub input_rx: mpsc::Receiver<Input>,
    /// Engine status and daemon counters, published after every input.
    pub published: watch::Sender<Published>,
    /// The technicians' snapshot, published when it changes (D-Bus).
    pub diagnostics: watch::Sender<Diagnostics>,
    /// App keys and guest invites, republished after each commit that
    /// changes them: what the BLE and MQTT gates check a frame against.
    pub app_access: watch::Sender<Arc<AppAccess>>,
    /// Each event as it is logged (D-Bus `EventLogged`, MQTT events, the
    /// front panel's log).
    pub events: broadcast::Sender<EventRecord>,
    /// The engine's answers to `Input::App`, by request id; the channel
    /// that sent the request waits for its id.
    pub replies: broadcast::Sender<(u64, AppResult)>,
    /// Owner notices (doorbell, alarms, duress, an unlock while away).
    pub notices: broadcast::Sender<OwnerNotice>,
    /// Sending end of the requests that are not inputs (D-Bus self-test).
    pub requests: mpsc::Sender<TaskRequest>,
    /// Receiving end: the engine task answers between inputs.
    pub request_rx: mpsc::Receiver<TaskRequest>,
    /// The radio services' own reports (BLE, Wi-Fi): the engine task
    /// republishes the diagnostics when they change.
    pub health: HealthBoard,
    /// What the engine asks of the update task (issue 20). Unbounded: the
    /// engine holds one update and asks at most one command per phase.
    pub update_cmds: mpsc::UnboundedSender<UpdateCmd>,
    /// Receiving end: taken by the update task (`[update]` on); dropped
    /// otherwise, so a command finds no one and fails at once.
    pub update_rx: Option<mpsc::UnboundedReceiver<UpdateCmd>>,
}

impl Channels {
    /// Every channel, the publications starting from the engine's first
    /// status and `app_access` from what the store holds.
    pub fn new(status: Status, app_access: AppAccess) -> Self {
        let (input_tx, input_rx) = mpsc::channel(INPUT_QUEUE);
        let (requests, request_rx) = mpsc::channel(REQUEST_QUEUE);
        let (update_cmds, update_rx) = mpsc::unbounded_channel();
        Channels {
            inputs: InputSender::new(input_tx),
            input_rx,
            published: watch::Sender::new(Published {
                engine: status,
                daemon: DaemonCounters::default(),
            }),
            // The engine task publishes the real one on its first input.
            diagnostics: watch::Sender::new(Diagnostics::default()),
            app_access: watch::Sender::new(Arc::new(app_access)),
            events: broadcast::Sender::new(EVENT_BACKLOG),
            replies: broadcast::Sender::new(REPLY_BACKLOG),
            notices: broadcast::Sender::new(NOTICE_BACKLOG),
            requests,
            request_rx,
            health: HealthBoard::new(),
            update_cmds,
            update_rx: Some(update_rx),
        }
    }

    /// The one handle the channels get to the running lock.
    pub fn link(
        &self,
        clock: &crate::link::Clock,
        store: StoreHandle,
        reads: StoreReads,
        default_language: crate::core::Language,
        bundles: Option<Arc<dyn crate::app::bundle::BundleStore>>,
    ) -> Link {
        Link::new(LinkParts {
            inputs: self.inputs.clone(),
            replies: self.replies.subscribe(),
            published: self.published.subscribe(),
            app_access: self.app_access.subscribe(),
            notices: self.notices.subscribe(),
            events: self.events.subscribe(),
            requests: self.requests.clone(),
            clock: clock.clone(),
            health: self.health.clone(),
            store,
            reads,
            default_language,
            bundles,
        })
    }
}
