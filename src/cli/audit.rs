//! `latchctl audit [--format json|csv]`: the whole event log, oldest first,
//! for the owner's records or an insurer (issue 17 item 7).
//!
//! ```text
//!  EventsBefore(0, 1000) ─► newest page ─► EventsBefore(first id, 1000) ─► … ─► []
//!        collect, check every page is strictly older ─► print oldest first
//! ```
//!
//! The log is bounded by the store's retention, so the export fits in
//! memory. A daemon whose pages do not go strictly back in time (a bug,
//! or a log rewritten under us) is an error, never an endless loop.
//!
//! CSV follows RFC 4180 (quoted when needed, CRLF) and is safe to open in
//! a spreadsheet: a cell that starts like a formula (`=`, `+`, `-`, `@`,
//! tab, CR) is prefixed with `'` — event details can carry text chosen
//! outside the house (a Wi-Fi name, an app label).
use std::io::Write;

use super::diag::format_utc;
use super::CliError;
use crate::dbus::client::DiagnosticsClient;
use crate::dbus::{EventRecord, MAX_RECENT_EVENTS};

/// The export's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AuditFormat {
    /// One JSON array of {id, time, utc, kind, detail}.
    Json,
    /// `id,time,utc,kind,detail` with a header row.
    Csv,
}

/// The audit export failed in a way the daemon's error does not say.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("the daemon's event pages do not go back in time (event {got} after {before}); the export is incomplete, run it again")]
    NotOlder { before: u64, got: u64 },
}

/// Read every event, oldest first.
pub async fn read_all(client: &DiagnosticsClient) -> Result<Vec<EventRecord>, CliError> {
    let mut pages: Vec<Vec<EventRecord>> = Vec::new();
    let mut before: Option<u64> = None;
    loop {
        let page = client.events_before(before, MAX_RECENT_EVENTS).await?;
        let Some(first) = page.first() else { break };
        // Oldest first within a page, every id below the cursor.
        let mut last = before;
        for e in page.iter().rev() {
            if let Some(b) = last {
                if e.id >= b {
                    return Err(AuditError::NotOlder {
                        before: b,
                        got: e.id,
                    }
                    .into());
                }
            }
            last = Some(e.id);
        }
        before = Some(first.id);
        pages.push(page);
    }
    Ok(pages.into_iter().rev().flatten().collect())
}

/// Print `events` in `format`.
pub fn write(
    events: &[EventRecord],
    format: AuditFormat,
    out: &mut impl Write,
) -> Result<(), CliError> {
    match format {
        AuditFormat::Json => {
            let doc: Vec<_> = events
                .iter()
                .map(|e| {
                    serde_json::json!({
                        "id": e.id,
                        "time": e.time,
                        "utc": format_utc(e.time),
                        "kind": e.kind,
                        "detail": e.detail,
                    })
                })
                .collect();
            writeln!(out, "{}", serde_json::to_string_pretty(&doc)?)?;
        }
        AuditFormat::Csv => {
            out.write_all(b"id,time,utc,kind,detail\r\n")?;
            for e in events {
                let row = [
                    e.id.to_string(),
                    e.time.to_string(),
                    format_utc(e.time),
                    csv_cell(&e.kind),
                    csv_cell(&e.detail),
                ];
                out.write_all(row.join(",").as_bytes())?;
                out.write_all(b"\r\n")?;
            }
        }
    }
    Ok(())
}

/// One CSV field: formula-looking text defused, then quoted if needed.
pub fn csv_cell(s: &str) -> String {
    let defused = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_string()
    };
    if defused.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", defused.replace('"', "\"\""))
    } else {
        defused
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_are_quoted_and_formulas_defused() {
        assert_eq!(csv_cell("unlocked.face"), "unlocked.face");
        assert_eq!(csv_cell("user=2, method=face"), "\"user=2, method=face\"");
        assert_eq!(csv_cell("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_cell("a\nb"), "\"a\nb\"");
        for evil in ["=HYPERLINK(\"x\")", "+1", "-1+2", "@SUM(A1)", "\tx"] {
            let c = csv_cell(evil);
            let inner = c.trim_start_matches('"');
            assert!(inner.starts_with('\''), "{evil} → {c}");
        }
    }

    #[test]
    fn csv_has_a_header_and_one_crlf_row_per_event() {
        let events = vec![
            EventRecord {
                id: 1,
                time: 0,
                kind: "door_opened".into(),
                detail: String::new(),
            },
            EventRecord {
                id: 2,
                time: 86_400,
                kind: "unlocked.passcode".into(),
                detail: "user=3, how=keypad".into(),
            },
        ];
        let mut out = Vec::new();
        write(&events, AuditFormat::Csv, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "id,time,utc,kind,detail\r\n\
             1,0,1970-01-01 00:00:00,door_opened,\r\n\
             2,86400,1970-01-02 00:00:00,unlocked.passcode,\"user=3, how=keypad\"\r\n"
        );
    }
}
