//! Wi-Fi state into the engine, and the engine's Wi-Fi setting onto the
//! radio (B-9.1, B-9.7, B-10.7).
//!
//! ```text
//!   engine settings.wifi (published) ──changed──► backend.set_enabled(on)
//!   every `period`, after a setting change,   ──► backend.status()
//!   at once when the Wi-Fi service (re)starts      │
//!   (then, as at start, FOLLOW_UPS until up),      │
//!   and after every Improv join (Reporting)        │ differs from the last sent?
//!                                                   ▼
//!                                          Input::Wifi{connected, rssi} ─► engine
//!                                          (status report, D-Bus, MQTT, weak-signal)
//!   a join under way (backend state, or an Improv join in progress)
//!                                      ──► HealthBoard: WifiState `connecting`
//! ```
//!
//! Only changes reach the engine, so a quiet link costs the engine no
//! wake-ups; the poll itself is one D-Bus call per `period` to the network
//! service (RSSI has no change signal in wpa_supplicant's API).
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::{WifiBackend, WifiError, WifiFuture, WifiStatus};
use crate::core::input::WifiStatus as CoreWifi;
use crate::core::Input;
use crate::link::{HealthBoard, InputSender};

/// How often the link is read by default.
pub const DEFAULT_PERIOD: Duration = Duration::from_secs(60);

/// At start and after the Wi-Fi service (re)started: the pauses between
/// the polls that follow the first, until one finds the link up. A new wpa_supplicant
/// manages no interface until a poll has it created, and then needs a
/// scan and a join: the engine hears of the link in seconds, not at the
/// next period.
pub const FOLLOW_UPS: [Duration; 4] = [
    Duration::from_secs(5),
    Duration::from_secs(10),
    Duration::from_secs(20),
    Duration::from_secs(40),
];

/// The engine's view of a link reading.
pub fn to_core(s: &WifiStatus) -> CoreWifi {
    CoreWifi {
        connected: s.enabled && s.connected,
        rssi: s.rssi_dbm.unwrap_or(0),
    }
}

/// Sends a reading to the engine only when it differs from the last one
/// sent (shared between the monitor and [`Reporting`]).
#[derive(Debug, Clone)]
pub struct Reporter {
    inputs: InputSender,
    last: Arc<Mutex<Option<CoreWifi>>>,
    /// Where a join under way is told (`WifiState` `connecting`, issue
    /// 22); the engine has no use for it.
    health: Option<HealthBoard>,
}

impl Reporter {
    pub fn new(inputs: InputSender) -> Self {
        Reporter {
            inputs,
            last: Arc::new(Mutex::new(None)),
            health: None,
        }
    }

    /// Also tell `health` whether the backend is joining a network.
    pub fn with_health(mut self, health: HealthBoard) -> Self {
        self.health = Some(health);
        self
    }

    /// A join was asked for (Improv): `connecting` until its result.
    pub fn joining(&self) {
        if let Some(h) = &self.health {
            h.set_wifi_connecting(true);
        }
    }

    /// The join asked for ended in a failure.
    pub fn joined_or_failed(&self) {
        if let Some(h) = &self.health {
            h.set_wifi_connecting(false);
        }
    }

    /// Report a reading; returns whether it was new to the engine.
    pub async fn report(&self, s: &WifiStatus) -> bool {
        if let Some(h) = &self.health {
            h.set_wifi_connecting(s.enabled && !s.connected && s.connecting);
        }
        let reading = to_core(s);
        {
            let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
            if *last == Some(reading) {
                return false;
            }
            *last = Some(reading);
        }
        self.inputs.send(Input::Wifi(reading)).await
    }
}

/// A backend whose successful joins are reported at once (Improv over
/// BLE): the app sees "connected" in the next status without waiting for
/// the monitor's poll.
pub struct Reporting {
    pub inner: Arc<dyn WifiBackend>,
    pub reporter: Reporter,
}

impl std::fmt::Debug for Reporting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reporting").finish_non_exhaustive()
    }
}

impl WifiBackend for Reporting {
    fn apply<'a>(
        &'a self,
        ssid: &'a [u8],
        psk: &'a [u8],
    ) -> WifiFuture<'a, Result<WifiStatus, WifiError>> {
        Box::pin(async move {
            self.reporter.joining();
            let status = match self.inner.apply(ssid, psk).await {
                Ok(s) => s,
                Err(e) => {
                    // Not joining any more; the monitor's next poll tells
                    // what the link is.
                    self.reporter.joined_or_failed();
                    return Err(e);
                }
            };
            self.reporter.report(&status).await;
            Ok(status)
        })
    }
    fn status(&self) -> WifiFuture<'_, Result<WifiStatus, WifiError>> {
        self.inner.status()
    }
    fn set_enabled(&self, on: bool) -> WifiFuture<'_, Result<(), WifiError>> {
        self.inner.set_enabled(on)
    }
    fn scan(&self) -> WifiFuture<'_, Result<Vec<super::ScannedNetwork>, WifiError>> {
        self.inner.scan()
    }
    fn forget(&self) -> WifiFuture<'_, Result<usize, WifiError>> {
        self.inner.forget()
    }
}

/// Run until `shutdown`: follow the Wi-Fi setting (`wanted` picks it
/// out of what the engine publishes) and report the link. Publications
/// that leave the setting as it was do not cost a poll. Each message on
/// `arrivals` (the Wi-Fi service took its bus name: a start or a restart)
/// polls at once; after it, as after the first poll, the next polls come
/// after each of [`FOLLOW_UPS`] until the link is up.
pub async fn run<T, F>(
    backend: Arc<dyn WifiBackend>,
    reporter: Reporter,
    mut published: watch::Receiver<T>,
    wanted: F,
    period: Duration,
    mut arrivals: Option<mpsc::Receiver<()>>,
    shutdown: CancellationToken,
) where
    T: Send + Sync + 'static,
    F: Fn(&T) -> bool + Send + 'static,
{
    let mut applied: Option<bool> = None;
    // At start too: after a boot the first poll may be what has the
    // interface created, and the join comes seconds after it.
    let mut follow_ups: &[Duration] = &FOLLOW_UPS;
    loop {
        let on = wanted(&published.borrow_and_update());
        if applied != Some(on) {
            match backend.set_enabled(on).await {
                Ok(()) => applied = Some(on),
                // Tried again at the next poll.
                Err(e) => tracing::warn!(on, "Wi-Fi: cannot apply the setting: {e}"),
            }
        }
        let up = match backend.status().await {
            Ok(s) => {
                reporter.report(&s).await;
                s.enabled && s.connected
            }
            Err(e) => {
                tracing::warn!("Wi-Fi: cannot read the link state: {e}");
                false
            }
        };
        let wait = match follow_ups.split_first() {
            Some((next, rest)) if !up => {
                follow_ups = rest;
                *next
            }
            _ => {
                follow_ups = &[];
                period
            }
        };
        let next_poll = tokio::time::Instant::now() + wait;
        loop {
            let arrival = async {
                match arrivals.as_mut() {
                    Some(rx) => rx.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                arrived = arrival => match arrived {
                    Some(()) => {
                        tracing::info!("Wi-Fi: the Wi-Fi service started; reading the link now");
                        follow_ups = &FOLLOW_UPS;
                        break;
                    }
                    // Nobody watches the service any more: polls only.
                    None => arrivals = None,
                },
                changed = published.changed() => {
                    if changed.is_err() {
                        return; // the engine has stopped
                    }
                    if Some(wanted(&published.borrow_and_update())) != applied {
                        break;
                    }
                }
                _ = tokio::time::sleep_until(next_poll) => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    /// A network service whose link the test sets.
    struct Link {
        status: Mutex<WifiStatus>,
        enabled: AtomicBool,
        polls: AtomicUsize,
    }

    impl WifiBackend for Link {
        fn apply<'a>(
            &'a self,
            _ssid: &'a [u8],
            _psk: &'a [u8],
        ) -> WifiFuture<'a, Result<WifiStatus, WifiError>> {
            Box::pin(async move {
                let mut s = self.status.lock().unwrap();
                s.enabled = true;
                s.connected = true;
                s.rssi_dbm = Some(-48);
                Ok(s.clone())
            })
        }
        fn status(&self) -> WifiFuture<'_, Result<WifiStatus, WifiError>> {
            self.polls.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move {
                let mut s = self.status.lock().unwrap().clone();
                s.enabled = self.enabled.load(Ordering::SeqCst);
                Ok(s)
            })
        }
        fn set_enabled(&self, on: bool) -> WifiFuture<'_, Result<(), WifiError>> {
            self.enabled.store(on, Ordering::SeqCst);
            Box::pin(async { Ok(()) })
        }
        fn scan(&self) -> WifiFuture<'_, Result<Vec<crate::wifi::ScannedNetwork>, WifiError>> {
            Box::pin(async { Ok(Vec::new()) })
        }
        fn forget(&self) -> WifiFuture<'_, Result<usize, WifiError>> {
            Box::pin(async { Ok(0) })
        }
    }

    fn wifi(rx: &mut mpsc::Receiver<Input>) -> Option<CoreWifi> {
        match rx.try_recv() {
            Ok(Input::Wifi(w)) => Some(w),
            _ => None,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn only_changes_reach_the_engine_and_the_setting_drives_the_radio() {
        let link = Arc::new(Link {
            status: Mutex::new(WifiStatus {
                enabled: true,
                connected: true,
                connecting: false,
                rssi_dbm: Some(-60),
            }),
            enabled: AtomicBool::new(false),
            polls: AtomicUsize::new(0),
        });
        let (tx, mut rx) = mpsc::channel(16);
        let reporter = Reporter::new(InputSender::new(tx));
        let (setting_tx, setting) = watch::channel(true);
        let stop = CancellationToken::new();
        let task = tokio::spawn(run(
            link.clone(),
            reporter.clone(),
            setting,
            |on: &bool| *on,
            Duration::from_secs(60),
            None,
            stop.clone(),
        ));
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert!(link.enabled.load(Ordering::SeqCst), "setting on → radio on");
        assert_eq!(
            wifi(&mut rx),
            Some(CoreWifi {
                connected: true,
                rssi: -60
            })
        );
        // Same reading at the next poll: nothing sent.
        tokio::time::sleep(Duration::from_secs(61)).await;
        assert_eq!(wifi(&mut rx), None);
        // The signal weakens: sent.
        link.status.lock().unwrap().rssi_dbm = Some(-85);
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(wifi(&mut rx).map(|w| w.rssi), Some(-85));
        // The owner turns Wi-Fi off: the radio follows at once and the
        // engine hears "not connected".
        setting_tx.send(false).unwrap();
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert!(!link.enabled.load(Ordering::SeqCst));
        assert_eq!(wifi(&mut rx).map(|w| w.connected), Some(false));
        stop.cancel();
        task.await.unwrap();
    }

    /// A monitor on `link` with an arrivals channel, and its ends.
    struct Watched {
        /// What reached the engine.
        rx: mpsc::Receiver<Input>,
        /// The Wi-Fi service took its bus name.
        arrive: mpsc::Sender<()>,
        stop: CancellationToken,
        task: tokio::task::JoinHandle<()>,
        /// The engine's setting (on); dropping it would stop the monitor.
        _setting: watch::Sender<bool>,
    }

    fn watched(link: &Arc<Link>) -> Watched {
        let (tx, rx) = mpsc::channel(16);
        let (setting_tx, setting) = watch::channel(true);
        let (arrive, arrivals) = mpsc::channel(4);
        let stop = CancellationToken::new();
        let task = tokio::spawn(run(
            link.clone(),
            Reporter::new(InputSender::new(tx)),
            setting,
            |on: &bool| *on,
            Duration::from_secs(60),
            Some(arrivals),
            stop.clone(),
        ));
        Watched {
            rx,
            arrive,
            stop,
            task,
            _setting: setting_tx,
        }
    }

    fn link(connected: bool) -> Arc<Link> {
        Arc::new(Link {
            status: Mutex::new(WifiStatus {
                enabled: true,
                connected,
                ..WifiStatus::default()
            }),
            enabled: AtomicBool::new(true),
            polls: AtomicUsize::new(0),
        })
    }

    /// wpa_supplicant restarted: it manages no interface until a poll has
    /// it created, then scans and joins. The monitor polls at once and
    /// follows up until the link is up, then goes back to its period.
    #[tokio::test(start_paused = true)]
    async fn a_restarted_wifi_service_is_read_at_once_and_followed_until_the_link_is_up() {
        let link = link(true);
        let Watched {
            mut rx,
            arrive,
            stop,
            task,
            _setting,
        } = watched(&link);
        let polls = || link.polls.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(polls(), 1, "the first poll at start");
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert_eq!(polls(), 1, "up: then the period");
        assert_eq!(wifi(&mut rx).map(|w| w.connected), Some(true));

        // The service restarts: the link is down until it joined again.
        link.status.lock().unwrap().connected = false;
        arrive.send(()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(polls(), 2, "at once when the service arrives");
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(polls(), 3, "5 s later");
        // The join completes before the next follow-up (10 s later).
        link.status.lock().unwrap().connected = true;
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(polls(), 4, "10 s later: the link is up");
        assert_eq!(wifi(&mut rx).map(|w| w.connected), Some(false));
        assert_eq!(wifi(&mut rx).map(|w| w.connected), Some(true));
        // Up: back to the period, no more follow-ups.
        tokio::time::sleep(Duration::from_secs(59)).await;
        assert_eq!(polls(), 4);
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(polls(), 5);

        // Nobody watches the service any more: the period goes on.
        drop(arrive);
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(polls(), 6);
        stop.cancel();
        task.await.unwrap();
    }

    /// At start (a boot: the join comes seconds after the first poll) the
    /// link is followed too; without a link the follow-ups end and the
    /// period takes over.
    #[tokio::test(start_paused = true)]
    async fn at_start_the_link_is_followed_and_the_follow_ups_end_when_it_stays_down() {
        let link = link(false);
        let w = watched(&link);
        let polls = || link.polls.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(polls(), 1);
        // 5 + 10 + 20 + 40 s of follow-ups, then the 60 s period.
        for (after, count) in [(5, 2), (10, 3), (20, 4), (40, 5)] {
            tokio::time::sleep(Duration::from_secs(after)).await;
            assert_eq!(polls(), count, "{after} s later");
        }
        tokio::time::sleep(Duration::from_secs(59)).await;
        assert_eq!(polls(), 5);
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(polls(), 6);
        w.stop.cancel();
        w.task.await.unwrap();
    }

    #[tokio::test]
    async fn a_join_over_improv_is_reported_at_once() {
        let link = Arc::new(Link {
            status: Mutex::new(WifiStatus::default()),
            enabled: AtomicBool::new(true),
            polls: AtomicUsize::new(0),
        });
        let (tx, mut rx) = mpsc::channel(16);
        let reporting = Reporting {
            inner: link,
            reporter: Reporter::new(InputSender::new(tx)),
        };
        let s = reporting.apply(b"home", b"password1").await.unwrap();
        assert!(s.connected);
        assert_eq!(
            wifi(&mut rx),
            Some(CoreWifi {
                connected: true,
                rssi: -48
            })
        );
    }
}
