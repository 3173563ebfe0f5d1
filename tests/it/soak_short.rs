//! Issue 15 item 4, the soak's short version for CI: the driver of
//! `benches/soak.rs` (`common::soak`: the real daemon, its control socket
//! and the app protocol over a real Mosquitto broker) on
//! `LATCHD_SOAK_SHORT_INPUTS` (default 8,000) inputs, with the lock's event
//! log at the smallest cap the config takes (`[store] max_events = 100`,
//! 120 rows with noise) so the log is full, and pruned, within the first
//! few hundred inputs. Asserts that open fds, the database, the WAL and the
//! event log stay bounded after the warm-up (the first 20 %); RSS is printed,
//! not asserted (a debug build over a few thousand inputs says little
//! about a leak; the bench's million does). No timing assertion.
use crate::common::soak::{event_cap, run, Metric, SoakConfig};

#[test]
fn soak_short_keeps_fds_db_wal_and_event_log_bounded() {
    let inputs: u64 = std::env::var("LATCHD_SOAK_SHORT_INPUTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8_000);
    let cfg = SoakConfig {
        inputs,
        every: (inputs / 40).max(1),
        max_events: 100,
        // tmpfs where there is one: an fsync there costs nothing, and
        // what is checked is sizes, not the flash's speed (the bench runs
        // on the real filesystem).
        state_parent: Some(std::path::PathBuf::from("/dev/shm")).filter(|p| p.is_dir()),
        seed: 0x5eed_50a6,
        progress: false,
        wrapper: Vec::new(),
    };
    let report = run(&cfg);
    let warm = 0.2;
    println!("{}", report.summary(warm));
    let last = report.samples.last().expect("samples");
    assert!(last.inputs >= inputs, "{last:?}");
    assert!(
        report.tally.unlocks > 0 && report.tally.users_added > 0 && report.tally.users_deleted > 0,
        "the mix did its work: {:?}",
        report.tally
    );
    for s in &report.samples {
        assert!(
            s.event_rows <= event_cap(cfg.max_events),
            "the event log is over its cap: {s:?}"
        );
    }
    for row in report.rows(warm) {
        if row.metric == Metric::Rss {
            continue;
        }
        assert!(row.bounded(), "{} grows: {row:?}", row.metric.name());
    }
}
