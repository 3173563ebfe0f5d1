//! The event log's budget for noise (issue 14 item 4): events anyone
//! outside can cause at will — a doorbell press, a refused app frame, a
//! face the camera did not know, a module that keeps failing — are logged at a bounded rate, and what was not logged is
//! counted and logged as one summary.
//!
//! ```text
//!  log(kind) ── NoiseKind::of(kind) = None ──────────────────────► logged (a record)
//!       │ Some(k)
//!       ▼
//!  bucket k has a token? ── yes ─► take it; dropped so far? log EventsSuppressed{k, n} first ─► logged
//!       │ no
//!       └─► dropped += 1 (nothing logged, nothing written)
//!  next_deadline: a bucket with dropped > 0 is due when its next token arrives;
//!  at that Tick the summary is logged (so a flood's count is told even if it just stops)
//! ```
//!
//! Together with the store's retention classes (`store/events.rs`: noise
//! lives in its own fifth of the log and can never push a record out) this
//! makes the log robust against a flood: a burst costs at most
//! [`NoiseKind::budget`]'s capacity of entries, then one per refill, plus
//! one summary per refill interval. The figures are per kind:
//!
//! | kind | burst | refill | an honest lock |
//! |---|---|---|---|
//! | doorbell | 10 | 1 / 6 min | a visitor rings 1–3 times |
//! | app_refused | 10 | 1 / 6 min | a stale app retries a few times |
//! | auto_face_refused | 10 | 1 / 6 min | passers-by; recognition has its own pause |
//! | module_fault (and module_recovered) | 5 | 1 / 12 min | the adapter reports once per outage, and its end; the owner notice follows the budget |
//!
//! Decision: a doorbell press beyond the budget still rings (the prompt
//! plays: the visitor must hear it), but sends no owner notice and takes
//! no snapshot, as it is not logged — twenty thousand presses are not
//! twenty thousand pushes to the owner's phone or pictures on flash.
use core::time::Duration;

use serde::{Deserialize, Serialize};

use super::event::{AppRefusal, EventKind};
use super::time::Instant;

/// A kind of event an outsider can cause at will.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoiseKind {
    Doorbell,
    AppRefused,
    AutoFaceRefused,
    ModuleFault,
}

/// One kind's token bucket: `burst` events in a row, then one per `refill`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    pub burst: u32,
    pub refill: Duration,
}

impl NoiseKind {
    /// Every noise kind, in the order the engine keeps their buckets.
    pub const ALL: [NoiseKind; 4] = [
        NoiseKind::Doorbell,
        NoiseKind::AppRefused,
        NoiseKind::AutoFaceRefused,
        NoiseKind::ModuleFault,
    ];

    /// The budget a logged event counts against; `None` for a record, and
    /// for a channel's `rate_limited` summary, which the channel's own
    /// limiter already bounds to one per flood (`link::RefusalLimiter`) and
    /// which must be told. Decision: the door opening and closing are
    /// records, not noise — nobody outside moves a locked door at will, and
    /// a forced entry must stay readable.
    pub fn of(kind: &EventKind) -> Option<NoiseKind> {
        Some(match kind {
            EventKind::Doorbell => NoiseKind::Doorbell,
            EventKind::AppRefused {
                reason: AppRefusal::RateLimited,
                ..
            } => return None,
            EventKind::AppRefused { .. } => NoiseKind::AppRefused,
            EventKind::AutoFaceRefused { .. } => NoiseKind::AutoFaceRefused,
            // An outage's end shares its budget: a loose connector makes
            // both, as often as the other.
            EventKind::ModuleFault { .. } | EventKind::ModuleRecovered { .. } => {
                NoiseKind::ModuleFault
            }
            _ => return None,
        })
    }

    /// See the table in the module doc.
    pub const fn budget(self) -> Budget {
        const MIN: u64 = 60;
        match self {
            NoiseKind::ModuleFault => Budget {
                burst: 5,
                refill: Duration::from_secs(12 * MIN),
            },
            NoiseKind::Doorbell | NoiseKind::AppRefused | NoiseKind::AutoFaceRefused => Budget {
                burst: 10,
                refill: Duration::from_secs(6 * MIN),
            },
        }
    }

    fn index(self) -> usize {
        match self {
            NoiseKind::Doorbell => 0,
            NoiseKind::AppRefused => 1,
            NoiseKind::AutoFaceRefused => 2,
            NoiseKind::ModuleFault => 3,
        }
    }
}

/// What to do with one noise event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Log it; if `suppressed_before` is set, log that summary first.
    Log { suppressed_before: Option<u64> },
    /// Do not log it (counted).
    Drop,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Tokens, counted in refill intervals: `tokens` whole ones, plus the
    /// time `since` from which the next one accrues.
    tokens: u32,
    since: Instant,
    /// Events dropped since the last summary.
    dropped: u64,
}

/// The per-kind buckets. Pure: time comes in with every call.
#[derive(Debug, Clone)]
pub struct NoiseBudget {
    buckets: [Bucket; 4],
}

impl NoiseBudget {
    /// Full buckets at `now`.
    pub fn new(now: Instant) -> Self {
        let full = |k: NoiseKind| Bucket {
            tokens: k.budget().burst,
            since: now,
            dropped: 0,
        };
        NoiseBudget {
            buckets: NoiseKind::ALL.map(full),
        }
    }

    /// Add the tokens that accrued up to `now` (a clock that went back
    /// adds none).
    fn refill(kind: NoiseKind, b: &mut Bucket, now: Instant) {
        let Budget { burst, refill } = kind.budget();
        let refill_ms = refill.as_millis() as u64;
        if b.tokens >= burst {
            b.since = now;
            return;
        }
        let elapsed = now.as_millis().saturating_sub(b.since.as_millis());
        let gained = elapsed / refill_ms;
        if gained == 0 {
            return;
        }
        let gained32 = u32::try_from(gained).unwrap_or(u32::MAX);
        b.tokens = b.tokens.saturating_add(gained32).min(burst);
        b.since = if b.tokens >= burst {
            now
        } else {
            Instant::from_millis(b.since.as_millis() + gained * refill_ms)
        };
    }

    /// One event of `kind` at `now`.
    pub fn admit(&mut self, kind: NoiseKind, now: Instant) -> Admit {
        let b = &mut self.buckets[kind.index()];
        Self::refill(kind, b, now);
        if b.tokens == 0 {
            b.dropped = b.dropped.saturating_add(1);
            return Admit::Drop;
        }
        b.tokens -= 1;
        let suppressed_before = (b.dropped > 0).then_some(b.dropped);
        b.dropped = 0;
        Admit::Log { suppressed_before }
    }

    /// Summaries due at `now`: kinds with dropped events whose next token
    /// has arrived. Each is reported once; its count starts again at 0.
    pub fn due(&mut self, now: Instant) -> Vec<(NoiseKind, u64)> {
        let mut out = Vec::new();
        for kind in NoiseKind::ALL {
            let b = &mut self.buckets[kind.index()];
            if b.dropped == 0 {
                continue;
            }
            Self::refill(kind, b, now);
            if b.tokens > 0 {
                out.push((kind, b.dropped));
                b.dropped = 0;
            }
        }
        out
    }

    /// When the next summary is due: the next token of a bucket that has
    /// dropped events. `None` when nothing was dropped (an idle lock has
    /// no deadline here).
    pub fn next_deadline(&self) -> Option<Instant> {
        NoiseKind::ALL
            .iter()
            .filter_map(|k| {
                let b = &self.buckets[k.index()];
                (b.dropped > 0).then(|| {
                    Instant::from_millis(b.since.as_millis() + k.budget().refill.as_millis() as u64)
                })
            })
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> Instant {
        Instant::from_millis(ms)
    }

    #[test]
    fn a_burst_is_logged_then_dropped_and_counted() {
        let mut n = NoiseBudget::new(at(0));
        for _ in 0..10 {
            assert_eq!(
                n.admit(NoiseKind::Doorbell, at(1)),
                Admit::Log {
                    suppressed_before: None
                }
            );
        }
        for _ in 0..19_990 {
            assert_eq!(n.admit(NoiseKind::Doorbell, at(2)), Admit::Drop);
        }
        // Other kinds have their own bucket.
        assert!(matches!(
            n.admit(NoiseKind::AppRefused, at(2)),
            Admit::Log { .. }
        ));
        // The next token comes 6 minutes after the burst began (at 1 ms).
        let due_at = n.next_deadline().expect("a summary is pending");
        assert_eq!(due_at, at(6 * 60_000 + 1));
        assert!(n.due(at(6 * 60_000)).is_empty());
        assert_eq!(n.due(due_at), vec![(NoiseKind::Doorbell, 19_990)]);
        assert_eq!(n.next_deadline(), None, "told once");
    }

    #[test]
    fn the_next_admitted_event_carries_the_count() {
        let mut n = NoiseBudget::new(at(0));
        for _ in 0..5 {
            n.admit(NoiseKind::ModuleFault, at(0));
        }
        assert_eq!(n.admit(NoiseKind::ModuleFault, at(1)), Admit::Drop);
        assert_eq!(n.admit(NoiseKind::ModuleFault, at(2)), Admit::Drop);
        assert_eq!(
            n.admit(NoiseKind::ModuleFault, at(12 * 60_000)),
            Admit::Log {
                suppressed_before: Some(2)
            }
        );
        assert_eq!(n.next_deadline(), None);
    }

    #[test]
    fn a_quiet_hour_refills_the_burst() {
        let mut n = NoiseBudget::new(at(0));
        for _ in 0..10 {
            n.admit(NoiseKind::Doorbell, at(0));
        }
        assert_eq!(n.admit(NoiseKind::Doorbell, at(0)), Admit::Drop);
        let hour = 3_600_000;
        let _ = n.due(at(hour));
        for _ in 0..10 {
            assert!(matches!(
                n.admit(NoiseKind::Doorbell, at(hour)),
                Admit::Log { .. }
            ));
        }
        assert_eq!(n.admit(NoiseKind::Doorbell, at(hour)), Admit::Drop);
    }

    #[test]
    fn a_clock_going_back_adds_nothing() {
        let mut n = NoiseBudget::new(at(10 * 60_000));
        for _ in 0..10 {
            n.admit(NoiseKind::Doorbell, at(10 * 60_000));
        }
        assert_eq!(n.admit(NoiseKind::Doorbell, at(0)), Admit::Drop);
    }

    #[test]
    fn every_noise_kind_maps_back() {
        use super::super::input::Channel;
        let kinds = [
            EventKind::Doorbell,
            EventKind::AppRefused {
                via: Channel::Ble,
                reason: AppRefusal::InviteRefused,
            },
            EventKind::AutoFaceRefused {
                user: None,
                spoof: None,
            },
            EventKind::ModuleFault {
                detail: String::new(),
            },
        ];
        let mapped: Vec<_> = kinds.iter().filter_map(NoiseKind::of).collect();
        assert_eq!(mapped, NoiseKind::ALL);
        assert_eq!(NoiseKind::of(&EventKind::LockoutStarted), None);
        assert_eq!(NoiseKind::of(&EventKind::DoorOpened), None);
        assert_eq!(
            NoiseKind::of(&EventKind::AppRefused {
                via: Channel::Remote,
                reason: AppRefusal::RateLimited
            }),
            None
        );
    }
}
