//! Power cuts in the middle of writing, in the VM rig: the store keeps
//! whole batches only, and every batch it acknowledged (its commit
//! returned) is still there after the power comes back.
//!
//! `tests/it/store_crash.rs` kills the writer process; the kernel then still
//! writes the page cache back, so it cannot tell whether a commit reached
//! the disk. Here the whole machine goes: the store lives on ext4 on a
//! virtio disk, and the guest resets itself (`echo b > /proc/sysrq-trigger`:
//! no sync, no unmount), which loses everything the kernel had not flushed,
//! as a lock whose batteries are pulled would.
//!
//! ```text
//!  host (this test)                  guest, boot r (same disk image every boot)
//!  ────────────────                  ─────────────────────────────────────────
//!  disk.img (raw, sparse) ─────────► /dev/vda, ext4 (made on boot 1), mounted
//!  LAST_ACK = newest acked gen ────► reopen: integrity_check, whole batches,
//!                                    counter ≥ LAST_ACK, its event kept
//!                                    writer: commit batch+event+counter, then
//!                                      append "gen" to out/acks (9p, synced)
//!  ◄──── out/acks, power-cut mark ── cutter thread after 150..1350 ms:
//!                                      mark, then sysrq b (power gone)
//!  final boot: reopen and check only
//! ```
//!
//! The acks file lives on the host (the rig's 9p run dir, written through),
//! so an ack written survives the cut; a commit whose ack was not yet
//! written may or may not survive — both are allowed.
use crate::rig as vm;

#[path = "../it/common/crash_batches.rs"]
mod crash_batches;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crash_batches::*;
use latchd::store::{EventId, Store};

/// Power cuts by default (`LATCHD_POWER_CUTS` for more); then one boot
/// that only checks.
const CUTS: u64 = 4;
/// `LATCHD_POWER_CUT_FS`: `ext4` (default) or `f2fs` (a flash file
/// system some boards use for the state partition).
const FS_ENV: &str = "LATCHD_POWER_CUT_FS";
const GEN_STRIDE: u64 = 1_000_000;
const DISK_MIB: u64 = 64;
const MOUNT: &str = "/tmp/disk";

const ROUND_ENV: &str = "LATCHD_POWER_CUT_ROUND";
const LAST_ACK_ENV: &str = "LATCHD_POWER_CUT_LAST_ACK";
const DELAY_ENV: &str = "LATCHD_POWER_CUT_DELAY_MS";
const FINAL_ENV: &str = "LATCHD_POWER_CUT_FINAL";

#[test]
fn power_cut_mid_write_keeps_every_acknowledged_batch_in_vm() {
    if !vm::enabled_or_skip("power_cut_mid_write_keeps_every_acknowledged_batch_in_vm") {
        return;
    }
    let (_dir, disk) = vm::scratch_disk(DISK_MIB);
    let cuts: u64 = std::env::var("LATCHD_POWER_CUTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(CUTS);
    let fs = std::env::var(FS_ENV).unwrap_or_else(|_| "ext4".into());
    assert!(matches!(fs.as_str(), "ext4" | "f2fs"), "{FS_ENV}={fs}");
    // Cut delays, spread and reproducible.
    let delays_ms = [150, 1350, 600, 950, 300, 1100, 750, 450];
    let mut last_ack = 0u64;
    let mut acked_total = 0usize;
    for round in 1..=cuts + 1 {
        let last = round == cuts + 1;
        let mut env = vec![
            (FS_ENV.into(), fs.clone()),
            (ROUND_ENV.into(), round.to_string()),
            (LAST_ACK_ENV.into(), last_ack.to_string()),
            (
                DELAY_ENV.into(),
                delays_ms[(round as usize - 1) % delays_ms.len()].to_string(),
            ),
        ];
        if last {
            env.push((FINAL_ENV.into(), "1".into()));
        }
        let opts = vm::VmOptions {
            disk: Some(disk.clone()),
            env,
            timeout: Some(Duration::from_secs(240)),
            ..Default::default()
        };
        let out = if last {
            vm::run_test_in_guest(&opts, module_path!(), "guest_power_cut_round")
        } else {
            // The run ends in the cut, not in a test summary; the rig
            // reports status 0 for a cut the guest announced.
            let exe = std::env::current_exe().unwrap();
            let name = vm::test_name(module_path!(), "guest_power_cut_round");
            vm::run_argv(
                &opts,
                &[
                    exe.to_str().unwrap(),
                    "--exact",
                    name.as_str(),
                    "--nocapture",
                    "--test-threads=1",
                ],
            )
        }
        .unwrap_or_else(|e| panic!("round {round}: {e}"));
        out.assert_success();
        print!("{}", out.stdout);
        if last {
            assert!(
                out.stdout.contains("checked after the last cut"),
                "{}",
                out.stdout
            );
            break;
        }
        assert!(
            out.files.contains_key("power-cut-started"),
            "round {round}: the guest never cut its power\n{}\n{}",
            out.stdout,
            out.stderr
        );
        let acks = String::from_utf8_lossy(out.files.get("acks").map_or(&[][..], |v| v));
        // Only whole lines: the cut may fall inside the last write.
        let gens: Vec<u64> = acks
            .split_inclusive('\n')
            .filter(|l| l.ends_with('\n'))
            .map(|l| l.trim().parse().expect("an ack is a generation"))
            .collect();
        assert!(
            !gens.is_empty(),
            "round {round}: nothing was acknowledged before the cut; the round proved nothing"
        );
        assert!(gens.windows(2).all(|w| w[1] == w[0] + 1));
        assert_eq!(gens[0], round * GEN_STRIDE + 1);
        acked_total += gens.len();
        last_ack = *gens.last().unwrap();
        println!(
            "round {round}: {} batches acknowledged before the cut (newest {last_ack})",
            gens.len()
        );
    }
    println!("{cuts} power cuts on {fs}, {acked_total} acknowledged batches, none lost");
}

/// The guest half: reopen and check what the last cut left, then (unless
/// this is the final boot) write until the power goes.
#[test]
fn guest_power_cut_round() {
    if !vm::in_guest_or_skip("guest_power_cut_round") {
        return;
    }
    let var = |k: &str| std::env::var(k).unwrap_or_else(|_| panic!("{k} not set"));
    let round: u64 = var(ROUND_ENV).parse().unwrap();
    let last_ack: u64 = var(LAST_ACK_ENV).parse().unwrap();
    let delay = Duration::from_millis(var(DELAY_ENV).parse().unwrap());
    let out_dir = PathBuf::from(var("LATCHD_VM_OUT_DIR"));
    std::fs::create_dir_all(&out_dir).unwrap();

    let fs = std::env::var(FS_ENV).unwrap_or_else(|_| "ext4".into());
    let dev = vm::attach_disk(&[&fs]);
    if round == 1 {
        match fs.as_str() {
            "f2fs" => vm::run_ok("mkfs.f2fs", &["-q", "-f", dev.to_str().unwrap()]),
            _ => vm::run_ok("mkfs.ext4", &["-q", "-F", dev.to_str().unwrap()]),
        };
    }
    std::fs::create_dir_all(MOUNT).unwrap();
    vm::run_ok("mount", &["-t", &fs, dev.to_str().unwrap(), MOUNT]);
    let state = Path::new(MOUNT).join("state");

    let (mut store, _key) = Store::open(&state, opts())
        .unwrap_or_else(|e| panic!("round {round}: the store does not open after the cut: {e}"));
    if last_ack > 0 {
        check_after_cut(&mut store, round, last_ack);
    }
    if std::env::var(FINAL_ENV).is_ok() {
        drop(store);
        vm::run_ok("umount", &[MOUNT]);
        println!("round {round}: checked after the last cut (newest acknowledged {last_ack})");
        return;
    }

    let mut acks = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(out_dir.join("acks"))
        .unwrap();
    let run_dir = PathBuf::from(var("LATCHD_VM_RUN_DIR"));
    let mut gen = round * GEN_STRIDE;
    let started = Instant::now();
    // The first commit starts the clock: the cut must fall among writes.
    gen += 1;
    write_generation(&mut store, gen);
    ack(&mut acks, gen);
    let marks = out_dir.clone();
    std::thread::spawn(move || {
        std::thread::sleep(delay);
        // Say so first (written through to the host), then cut.
        std::fs::write(run_dir.join("power-cut"), b"sysrq b\n").unwrap();
        std::fs::write(
            marks.join("power-cut-started"),
            format!("{:?}\n", started.elapsed()),
        )
        .unwrap();
        std::fs::write("/proc/sysrq-trigger", b"b").unwrap();
    });
    loop {
        gen += 1;
        write_generation(&mut store, gen);
        ack(&mut acks, gen);
    }
}

/// After the commit returned: record it where the cut cannot reach.
fn ack(file: &mut std::fs::File, gen: u64) {
    file.write_all(format!("{gen}\n").as_bytes()).unwrap();
    file.sync_data().unwrap();
}

fn check_after_cut(store: &mut Store, round: u64, last_ack: u64) {
    let ctx = format!(
        "round {round}, after the cut that ended round {}",
        round - 1
    );
    assert_eq!(store.integrity_check().unwrap(), "ok", "{ctx}");
    let state = store.load().unwrap();
    let gens = assert_whole_batches(&state, &ctx);
    let counter = store.get_counter(COUNTER).unwrap().unwrap_or(0);
    assert!(
        counter >= last_ack,
        "{ctx}: acknowledged batch {last_ack} lost (counter {counter})"
    );
    // The acked batch's user holds it or a newer batch of the same number.
    assert!(
        gens.iter()
            .any(|g| user_for(*g) == user_for(last_ack) && *g >= last_ack),
        "{ctx}: the user of acknowledged batch {last_ack} is gone"
    );
    let log = store.events_after(EventId(0), usize::MAX).unwrap();
    let newest = log.last().map_or(0, |e| e.event.mono_ms);
    assert!(
        newest >= last_ack,
        "{ctx}: the event of acknowledged batch {last_ack} is lost (newest {newest})"
    );
    assert!(log.windows(2).all(|w| w[0].id.0 < w[1].id.0), "{ctx}");
    println!(
        "round {round}: integrity ok, {} users whole, counter {counter} ≥ acknowledged {last_ack}",
        gens.len()
    );
}
