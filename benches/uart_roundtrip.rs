// Driver round trips over a real PTY pair (and over `tokio::io::duplex` for
// comparison), against the module simulators: fingerprint TemplateNum (one
// request/ack), fingerprint identify (GenImg + Img2Tz + Search = three round
// trips), palm ListIds and palm identify (request + reply).
//
//   cargo bench --bench uart_roundtrip
//
// A PTY has no baud rate, so these figures are the software cost (driver,
// simulator, kernel tty layer, tokio wake-ups). On a real 57600-baud UART a
// 12-byte command plus a 16-byte ack add ~4.9 ms of wire time per round trip.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use latchd::biometrics::fingerprint::{
    self, sim::SimFingerprintConfig, Fingerprint, FingerprintConfig,
};
use latchd::biometrics::palm::{self, sim::SimPalmConfig, Palm, PalmConfig, PalmEnrollStep};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::runtime::Runtime;

#[path = "../tests/it/common/pty.rs"]
mod pty;

/// A raw PTY: the master stream, the slave path and the slave fd (kept open
/// so the master never sees a hangup). Must run inside the runtime.
fn open_pty() -> (pty::PtyMaster, String, std::os::fd::OwnedFd) {
    let p = pty::open_pty();
    (p.master, p.slave_path, p.slave)
}

fn fp_config() -> FingerprintConfig {
    FingerprintConfig {
        request_timeout: Duration::from_secs(2),
        poll_interval: Duration::from_millis(1),
        ..FingerprintConfig::default()
    }
}

/// Enrols `people` fingers so identify searches a populated library.
async fn fill_fingerprints<S>(
    fp: &mut Fingerprint<S>,
    ctl: &fingerprint::sim::SimFingerprintControl,
    people: u16,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    for slot in 0..people {
        let person = u32::from(slot);
        let c = ctl.clone();
        let mut cb = move |step| match step {
            fingerprint::EnrollStep::PlaceFinger { .. } => c.place(person, 0),
            fingerprint::EnrollStep::LiftFinger { .. } => c.lift(),
            _ => {}
        };
        fp.enroll(slot, 2, &mut cb).await.expect("enrol");
    }
    ctl.place(u32::from(people - 1), 0);
}

fn bench_fingerprint(c: &mut Criterion) {
    let rt = Runtime::new().expect("runtime");
    let mut group = c.benchmark_group("fingerprint");

    let (mut fp_pty, _slave, ctl_pty) = rt.block_on(async {
        let (master, path, slave) = open_pty();
        let (ctl, _) = fingerprint::sim::spawn(master, SimFingerprintConfig::default());
        let port = fingerprint::open_serial(&path, 57_600).expect("open slave");
        let mut fp = Fingerprint::connect(port, fp_config())
            .await
            .expect("connect");
        fill_fingerprints(&mut fp, &ctl, 20).await;
        (fp, slave, ctl)
    });
    group.bench_function("template_count/pty", |b| {
        b.iter(|| rt.block_on(fp_pty.template_count()).expect("count"))
    });
    group.bench_function("identify/pty", |b| {
        b.iter(|| {
            rt.block_on(fp_pty.identify())
                .expect("identify")
                .expect("match")
        })
    });
    drop(ctl_pty);

    let (mut fp_mem, _ctl_mem) = rt.block_on(async {
        let (a, b) = tokio::io::duplex(4096);
        let (ctl, _) = fingerprint::sim::spawn(b, SimFingerprintConfig::default());
        let mut fp = Fingerprint::connect(a, fp_config()).await.expect("connect");
        fill_fingerprints(&mut fp, &ctl, 20).await;
        (fp, ctl)
    });
    group.bench_function("template_count/duplex", |b| {
        b.iter(|| rt.block_on(fp_mem.template_count()).expect("count"))
    });
    group.bench_function("identify/duplex", |b| {
        b.iter(|| {
            rt.block_on(fp_mem.identify())
                .expect("identify")
                .expect("match")
        })
    });
    group.finish();
}

fn bench_palm(c: &mut Criterion) {
    let rt = Runtime::new().expect("runtime");
    let mut group = c.benchmark_group("palm");
    let (mut palm, _slave, _ctl) = rt.block_on(async {
        let (master, path, slave) = open_pty();
        let (ctl, _) = palm::sim::spawn(master, SimPalmConfig::default());
        let port = palm::open_serial(&path, 115_200).expect("open slave");
        let mut p = Palm::connect(port, PalmConfig::default())
            .await
            .expect("connect");
        for id in 0..20u16 {
            let c = ctl.clone();
            let mut cb = move |step| match step {
                PalmEnrollStep::PresentPalm { .. } => c.present(u32::from(id)),
                PalmEnrollStep::WithdrawPalm { .. } => c.withdraw(),
                _ => {}
            };
            p.enroll(id, &mut cb).await.expect("enrol");
            ctl.withdraw();
        }
        ctl.present(19);
        (p, slave, ctl)
    });
    group.bench_function("list_ids/pty", |b| {
        b.iter(|| rt.block_on(palm.list_ids()).expect("ids"))
    });
    group.bench_function("identify/pty", |b| {
        b.iter(|| {
            rt.block_on(palm.identify())
                .expect("identify")
                .expect("match")
        })
    });
    group.finish();
}

criterion_group!(benches, bench_fingerprint, bench_palm);
criterion_main!(benches);
