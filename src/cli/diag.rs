//! `latchctl status | events [-n N] [--follow] | self-test | export | audit`: the
//! diagnostics commands, over `org.latchd.Diagnostics1`.
//!
//! Everything printed comes from the daemon, and a table goes to a
//! technician's terminal: control characters in daemon-provided text are
//! replaced before printing, so an event detail cannot move the cursor or
//! rewrite the screen. `--json` output is escaped by the JSON encoder.
//!
//! `events --follow` subscribes *before* reading the history and then
//! drops signalled events it already printed (by id), so no event falls in
//! the gap between the two.
use std::io::Write;

use clap::Subcommand;

use super::{CliError, Context};
use crate::dbus::client::DiagnosticsClient;
use crate::dbus::{Capacity, DeviceCheck, Diagnostics, EventRecord, MAX_RECENT_EVENTS};

#[derive(Debug, Subcommand)]
pub enum DiagCommand {
    /// Show the lock's health: firmware, lock, power, radios, alarms, capacity.
    Status,
    /// Show the newest events of the lock's log.
    Events {
        /// How many events (1-1000).
        #[arg(short = 'n', long = "lines", default_value_t = 20,
              value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_RECENT_EVENTS)))]
        lines: u32,
        /// Keep running and print each new event as it is logged.
        #[arg(short, long)]
        follow: bool,
    },
    /// Exercise every device once; exit code 6 if any failed.
    SelfTest,
    /// Print the redacted diagnostics export (JSON) for support.
    Export,
    /// Print the whole event log, oldest first, for the owner's records.
    Audit {
        /// `json` (one array) or `csv` (spreadsheet-safe).
        #[arg(long, value_enum, default_value_t = super::audit::AuditFormat::Json)]
        format: super::audit::AuditFormat,
    },
}

/// Run one diagnostics command against the daemon.
pub async fn run(ctx: &Context, cmd: DiagCommand) -> Result<(), CliError> {
    let client = DiagnosticsClient::connect(&ctx.bus).await?;
    let mut out = std::io::stdout().lock();
    match cmd {
        DiagCommand::Status => {
            let d = client.status().await?;
            if ctx.json {
                writeln!(out, "{}", serde_json::to_string_pretty(&d)?)?;
            } else {
                out.write_all(render_status(&d).as_bytes())?;
            }
        }
        DiagCommand::Events { lines, follow } => {
            if follow {
                return follow_events(ctx, &client, lines, &mut out).await;
            }
            let events = client.recent_events(lines).await?;
            if ctx.json {
                writeln!(out, "{}", serde_json::to_string_pretty(&events)?)?;
            } else {
                out.write_all(render_events(&events).as_bytes())?;
            }
        }
        DiagCommand::SelfTest => {
            let checks = client.self_test().await?;
            if ctx.json {
                writeln!(out, "{}", serde_json::to_string_pretty(&checks)?)?;
            } else {
                out.write_all(render_checks(&checks).as_bytes())?;
            }
            let failed = checks.iter().filter(|c| !c.ok).count();
            if failed > 0 {
                return Err(CliError::SelfTestFailed {
                    failed,
                    total: checks.len(),
                });
            }
        }
        DiagCommand::Audit { format } => {
            let events = super::audit::read_all(&client).await?;
            super::audit::write(&events, format, &mut out)?;
        }
        DiagCommand::Export => {
            let json = client.export().await?;
            if ctx.json {
                writeln!(out, "{json}")?;
            } else {
                // The daemon checked it is JSON; pretty-print for a person,
                // and fall back to the raw text rather than hide it.
                match serde_json::from_str::<serde_json::Value>(&json) {
                    Ok(v) => writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?,
                    Err(_) => writeln!(out, "{}", sanitize(&json))?,
                }
            }
        }
    }
    out.flush()?;
    Ok(())
}

async fn follow_events(
    ctx: &Context,
    client: &DiagnosticsClient,
    lines: u32,
    out: &mut impl Write,
) -> Result<(), CliError> {
    let mut subscription = client.subscribe_events().await?;
    let history = client.recent_events(lines).await?;
    let mut last_id = history.last().map(|e| e.id);
    if !ctx.json {
        out.write_all(event_header().as_bytes())?;
    }
    for e in &history {
        write_event_line(ctx, e, out)?;
    }
    out.flush()?;
    while let Some(e) = subscription.next().await? {
        if last_id.is_some_and(|last| e.id <= last) {
            continue;
        }
        last_id = Some(e.id);
        write_event_line(ctx, &e, out)?;
        out.flush()?;
    }
    Err(CliError::DaemonStopped)
}

fn write_event_line(ctx: &Context, e: &EventRecord, out: &mut impl Write) -> Result<(), CliError> {
    if ctx.json {
        // One object per line, so scripts can read the stream line by line.
        writeln!(out, "{}", serde_json::to_string(e)?)?;
    } else {
        out.write_all(event_row(e).as_bytes())?;
    }
    Ok(())
}

/// Replace control characters (escape sequences, newlines) by `?`, so
/// text from the daemon prints as one harmless line.
pub fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// `YYYY-MM-DD HH:MM:SS` in UTC for Unix seconds (proleptic Gregorian).
pub fn format_utc(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

fn format_duration(total: u64) -> String {
    let (d, h, m, s) = (
        total / 86_400,
        total / 3600 % 24,
        total / 60 % 60,
        total % 60,
    );
    if d > 0 {
        format!("{d}d {h:02}:{m:02}:{s:02}")
    } else {
        format!("{h:02}:{m:02}:{s:02}")
    }
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// The `status` table.
pub fn render_status(d: &Diagnostics) -> String {
    let mut sections: Vec<(&str, Vec<(&str, String)>)> = Vec::new();
    sections.push((
        "Device",
        vec![
            ("Firmware", d.firmware_version.clone()),
            ("Serial number", d.serial_number.clone()),
            ("Board", d.board.clone()),
            ("Uptime", format_duration(d.uptime_s)),
            (
                "Wall clock",
                d.wall_clock
                    .map(format_utc)
                    .unwrap_or_else(|| "unknown (not set, or behind the trusted floor)".into()),
            ),
            (
                "Time floor",
                d.time_floor
                    .map(format_utc)
                    .unwrap_or_else(|| "none yet".into()),
            ),
            (
                "Time source",
                d.time_source
                    .clone()
                    .unwrap_or_else(|| "none (no trusted source: the wall time is unknown)".into()),
            ),
        ],
    ));
    sections.push((
        "Lock",
        vec![
            ("Lock", d.lock_state.clone()),
            ("Bolt", d.bolt_state.clone()),
            ("Door", d.door_state.clone()),
            ("Motor cycles", d.motor_cycles.to_string()),
            (
                "Last jam",
                if d.last_jam == 0 {
                    "never".into()
                } else {
                    format!("{} UTC", format_utc(d.last_jam))
                },
            ),
            (
                "Lockout",
                if d.lockout_active {
                    format!("yes, {} s left", d.lockout_remaining_s)
                } else {
                    "no".into()
                },
            ),
            (
                "Active alarms",
                if d.active_alarms.is_empty() {
                    "none".into()
                } else {
                    d.active_alarms.join(", ")
                },
            ),
        ],
    ));
    sections.push((
        "Power",
        vec![
            (
                "Battery",
                match (d.battery_percent, d.battery_mv) {
                    (Some(p), Some(mv)) => format!("{p} % ({mv} mV)"),
                    (Some(p), None) => format!("{p} %"),
                    (None, _) => "unknown (no reading yet)".into(),
                },
            ),
            ("External power", yes_no(d.external_power).into()),
        ],
    ));
    sections.push((
        "Radios",
        vec![
            (
                "Wi-Fi",
                match d.wifi_rssi {
                    Some(rssi) => format!("{} ({rssi} dBm)", d.wifi_state),
                    None => format!("{} (signal unknown)", d.wifi_state),
                },
            ),
            ("BLE", d.ble_state.clone()),
            (
                "Matter",
                match d.matter_fabrics {
                    Some(n) => format!("{} ({n} fabrics)", d.matter_state),
                    None => format!("{} (fabrics unknown)", d.matter_state),
                },
            ),
        ],
    ));
    sections.push((
        "Storage",
        vec![
            ("Health", d.storage_health.clone()),
            ("Device key", d.key_storage.clone()),
            (
                "Users",
                format!(
                    "{} of {} ({} administrators)",
                    d.users, d.users_limit, d.admins
                ),
            ),
        ],
    ));
    let mut update = vec![
        ("State", d.update_state.clone()),
        (
            "Last result",
            if d.last_update.is_empty() {
                "none since the start".into()
            } else {
                d.last_update.clone()
            },
        ),
    ];
    update.extend(d.update_slots.iter().map(|s| ("Slot", s.clone())));
    sections.push(("Update", update));
    let mut out = String::new();
    for (title, rows) in sections {
        out.push_str(&format!("{title}\n"));
        for (label, value) in rows {
            out.push_str(&format!("  {label:<16} {}\n", sanitize(&value)));
        }
    }
    out.push('\n');
    out.push_str(&format!(
        "{:<14} {:>8} {:>6} {:>9}\n",
        "CREDENTIAL", "ENROLLED", "LIMIT", "PER USER"
    ));
    let caps: [(&str, &Capacity); 4] = [
        ("faces", &d.faces),
        ("palms", &d.palms),
        ("fingerprints", &d.fingerprints),
        ("passcodes", &d.passcodes),
    ];
    for (name, c) in caps {
        out.push_str(&format!(
            "{name:<14} {:>8} {:>6} {:>9}\n",
            c.enrolled, c.limit, c.per_user_limit
        ));
    }
    out
}

fn event_header() -> String {
    format!(
        "{:>8}  {:<19}  {:<24}  {}\n",
        "ID", "TIME (UTC)", "KIND", "DETAIL"
    )
}

fn event_row(e: &EventRecord) -> String {
    format!(
        "{:>8}  {:<19}  {:<24}  {}\n",
        e.id,
        format_utc(e.time),
        sanitize(&e.kind),
        sanitize(&e.detail)
    )
}

/// The `events` table, oldest first.
pub fn render_events(events: &[EventRecord]) -> String {
    if events.is_empty() {
        return "no events logged\n".into();
    }
    let mut out = event_header();
    for e in events {
        out.push_str(&event_row(e));
    }
    out
}

/// The `self-test` table.
pub fn render_checks(checks: &[DeviceCheck]) -> String {
    let mut out = format!("{:<16} {:<6} {}\n", "DEVICE", "RESULT", "DETAIL");
    for c in checks {
        out.push_str(&format!(
            "{:<16} {:<6} {}\n",
            sanitize(&c.device),
            if c.ok { "ok" } else { "FAIL" },
            sanitize(&c.detail)
        ));
    }
    let failed = checks.iter().filter(|c| !c.ok).count();
    out.push_str(&format!("{} devices, {failed} failed\n", checks.len()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_formatting_matches_known_dates() {
        assert_eq!(format_utc(0), "1970-01-01 00:00:00");
        assert_eq!(format_utc(951_782_400), "2000-02-29 00:00:00");
        assert_eq!(format_utc(1_795_664_340), "2026-11-26 03:39:00");
        assert_eq!(format_utc(-1), "1969-12-31 23:59:59");
    }

    #[test]
    fn control_characters_cannot_reach_the_terminal() {
        assert_eq!(sanitize("ok\x1b[2Jgone\nnext"), "ok?[2Jgone?next");
        let row = event_row(&EventRecord {
            id: 1,
            time: 0,
            kind: "alarm.tamper".into(),
            detail: "\x1b]0;pwned\x07".into(),
        });
        assert!(!row.trim_end().chars().any(char::is_control), "{row:?}");
    }

    #[test]
    fn status_table_shows_every_section_and_capacity() {
        let d = Diagnostics {
            active_alarms: vec!["tamper".into()],
            lockout_active: true,
            lockout_remaining_s: 90,
            ..Diagnostics::default()
        };
        let t = render_status(&d);
        for needle in [
            "Device",
            "Lock",
            "Power",
            "Radios",
            "Storage",
            "tamper",
            "yes, 90 s left",
            "fingerprints",
        ] {
            assert!(t.contains(needle), "missing {needle} in\n{t}");
        }
        assert!(
            t.contains("fingerprints          0     50         5"),
            "{t}"
        );
    }

    #[test]
    fn self_test_table_counts_failures() {
        let t = render_checks(&[
            DeviceCheck {
                device: "motor".into(),
                ok: true,
                detail: "travel 410 ms".into(),
            },
            DeviceCheck {
                device: "camera".into(),
                ok: false,
                detail: "no frames".into(),
            },
        ]);
        assert!(t.contains("camera           FAIL   no frames"), "{t}");
        assert!(t.ends_with("2 devices, 1 failed\n"), "{t}");
    }
}
