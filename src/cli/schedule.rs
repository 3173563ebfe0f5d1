//! The schedule subcommands `latchctl remote` and `latchctl ble` share
//! (issue 17 item 2): the same flags build the same app request, and the
//! reply prints the same way, whichever channel carries it.
//!
//! ```text
//!  schedules [--user N | --code N | --guest N]         the holder's, else the lock's
//!  schedule-week  --user N --index I --days sun,mon,…|all|weekdays --from HH:MM --to HH:MM
//!  schedule-year  --user N --index I --from S --to S   local seconds since 1970, [from, to)
//!  holiday        --index I --from S --to S --mode normal|vacation|privacy|no-remote
//!  clear-schedules --kind week-day|year-day|holiday [holder] [--index I]
//! ```
use clap::Subcommand;

use crate::app::Request;
use crate::core::schedule::{Holder, Period, Schedule, ScheduleKind, WeekDay};

/// A bad flag value, said as the usage error both CLIs print (exit 2).
pub type UsageError = String;

#[derive(Debug, Subcommand)]
pub enum ScheduleCommand {
    /// List the schedules (issue 17 item 2; owner key): the holder's with
    /// --user/--code/--guest, else the lock's (holidays first).
    Schedules {
        #[command(flatten)]
        holder: HolderArgs,
    },
    /// Set a week-day schedule: --days sun,mon,… (or all, weekdays),
    /// --from HH:MM --to HH:MM local time, the same day (owner key).
    ScheduleWeek {
        #[command(flatten)]
        holder: HolderArgs,
        #[arg(long)]
        index: u8,
        #[arg(long)]
        days: String,
        #[arg(long)]
        from: String,
        #[arg(long)]
        to: String,
    },
    /// Set a year-day schedule: --from/--to local time as seconds since
    /// 1970 (Matter's localStartTime/localEndTime), [from, to) (owner key).
    ScheduleYear {
        #[command(flatten)]
        holder: HolderArgs,
        #[arg(long)]
        index: u8,
        #[arg(long)]
        from: i64,
        #[arg(long)]
        to: i64,
    },
    /// Set a holiday: the lock's mode (normal, vacation, privacy,
    /// no-remote) from --from to --to, local seconds since 1970 (owner).
    Holiday {
        #[arg(long)]
        index: u8,
        #[arg(long)]
        from: i64,
        #[arg(long)]
        to: i64,
        #[arg(long)]
        mode: String,
    },
    /// Clear schedules of a kind (week-day, year-day, holiday) for a
    /// holder, one --index or all (owner key).
    ClearSchedules {
        #[arg(long)]
        kind: String,
        #[command(flatten)]
        holder: HolderArgs,
        #[arg(long)]
        index: Option<u8>,
    },
}

impl ScheduleCommand {
    /// The app request it stands for; a bad value is a usage error.
    pub fn request(&self) -> Result<Request, UsageError> {
        Ok(match self {
            ScheduleCommand::Schedules { holder } => Request::ListSchedules {
                holder: holder.holder()?,
            },
            ScheduleCommand::ScheduleWeek {
                holder,
                index,
                days,
                from,
                to,
            } => {
                let ((sh, sm), (eh, em)) = (hh_mm(from)?, hh_mm(to)?);
                Request::SetSchedule(Schedule::WeekDay {
                    holder: holder.required()?,
                    index: *index,
                    window: WeekDay {
                        days: days_mask(days)?,
                        start_minute: u16::from(sh) * 60 + u16::from(sm),
                        end_minute: u16::from(eh) * 60 + u16::from(em),
                    },
                })
            }
            ScheduleCommand::ScheduleYear {
                holder,
                index,
                from,
                to,
            } => Request::SetSchedule(Schedule::YearDay {
                holder: holder.required()?,
                index: *index,
                period: Period {
                    start: *from,
                    end: *to,
                },
            }),
            ScheduleCommand::Holiday {
                index,
                from,
                to,
                mode,
            } => Request::SetSchedule(Schedule::Holiday {
                index: *index,
                period: Period {
                    start: *from,
                    end: *to,
                },
                mode: mode.parse()?,
            }),
            ScheduleCommand::ClearSchedules {
                kind,
                holder,
                index,
            } => Request::ClearSchedules {
                kind: match kind.as_str() {
                    "week-day" => ScheduleKind::WeekDay,
                    "year-day" => ScheduleKind::YearDay,
                    "holiday" => ScheduleKind::Holiday,
                    other => return Err(format!("kind `{other}`: week-day, year-day or holiday")),
                },
                holder: holder.holder()?,
                index: *index,
            },
        })
    }
}

/// Whose schedule: one of a user, a visitor code or a guest key.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct HolderArgs {
    /// A user's number.
    #[arg(long)]
    pub user: Option<u16>,
    /// A visitor code's id.
    #[arg(long)]
    pub code: Option<u16>,
    /// A guest key's slot.
    #[arg(long)]
    pub guest: Option<u16>,
}

impl HolderArgs {
    fn holder(&self) -> Result<Option<Holder>, UsageError> {
        use crate::core::types::{AppKeyId, TempPasscodeId, UserNumber};
        Ok(match (self.user, self.code, self.guest) {
            (None, None, None) => None,
            (Some(u), None, None) => Some(Holder::User(
                UserNumber::new(u).ok_or_else(|| "users are 1..=999".to_owned())?,
            )),
            (None, Some(c), None) => Some(Holder::TempPasscode(TempPasscodeId(u32::from(c)))),
            (None, None, Some(g)) => Some(Holder::GuestKey(AppKeyId(u32::from(g)))),
            _ => return Err("name one of --user, --code or --guest".into()),
        })
    }

    fn required(&self) -> Result<Holder, UsageError> {
        self.holder()?
            .ok_or_else(|| "name the holder: --user, --code or --guest".into())
    }
}

/// `sun,mon,…`, `all` or `weekdays` as Matter's days mask (bit 0 Sunday).
fn days_mask(v: &str) -> Result<u8, UsageError> {
    const NAMES: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
    match v {
        "all" => return Ok(0x7f),
        "weekdays" => return Ok(0x3e),
        _ => {}
    }
    v.split(',').try_fold(0u8, |m, d| {
        let i = NAMES
            .iter()
            .position(|n| n.eq_ignore_ascii_case(d.trim()))
            .ok_or_else(|| format!("day `{d}`: sun, mon, … sat"))?;
        Ok(m | 1 << i)
    })
}

/// `HH:MM` as (hour, minute).
fn hh_mm(v: &str) -> Result<(u8, u8), UsageError> {
    let bad = || format!("time `{v}`: HH:MM, 00:00 to 23:59");
    let (h, m) = v.split_once(':').ok_or_else(bad)?;
    let (h, m): (u8, u8) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    (h < 24 && m < 60).then_some((h, m)).ok_or_else(bad)
}

/// One schedule as a line of `schedules`.
pub fn schedule_text(s: &Schedule) -> String {
    let holder = |h: &Holder| match h {
        Holder::User(n) => format!("user {n}"),
        Holder::TempPasscode(id) => format!("code {}", id.0),
        Holder::GuestKey(id) => format!("guest {}", id.0),
    };
    match s {
        Schedule::WeekDay {
            holder: h,
            index,
            window,
        } => {
            let ((sh, sm), (eh, em)) = window.hm();
            format!(
                "week-day {index}  {}  days {:07b}  {sh:02}:{sm:02}-{eh:02}:{em:02}",
                holder(h),
                window.days
            )
        }
        Schedule::YearDay {
            holder: h,
            index,
            period,
        } => format!(
            "year-day {index}  {}  {}..{}",
            holder(h),
            period.start,
            period.end
        ),
        Schedule::Holiday {
            index,
            period,
            mode,
        } => format!(
            "holiday  {index}  {}  {}..{}",
            mode.tag(),
            period.start,
            period.end
        ),
    }
}

/// A `Schedules` reply as text lines and as JSON.
pub fn schedules_text_json(list: &[Schedule]) -> (String, serde_json::Value) {
    (
        list.iter()
            .map(schedule_text)
            .collect::<Vec<_>>()
            .join("\n"),
        serde_json::to_value(list).unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(subcommand)]
        command: ScheduleCommand,
    }

    fn request(args: &[&str]) -> Result<Request, UsageError> {
        let cli = Cli::try_parse_from(std::iter::once("x").chain(args.iter().copied()))
            .map_err(|e| e.to_string())?;
        cli.command.request()
    }

    #[test]
    fn flags_build_the_matter_shaped_requests() {
        use crate::core::types::{OperatingMode, UserNumber};
        let user = Holder::User(UserNumber::new(2).unwrap());
        assert_eq!(
            request(&[
                "schedule-week",
                "--user",
                "2",
                "--index",
                "1",
                "--days",
                "mon,Wed",
                "--from",
                "08:30",
                "--to",
                "17:00",
            ]),
            Ok(Request::SetSchedule(Schedule::WeekDay {
                holder: user,
                index: 1,
                window: WeekDay {
                    days: 0b000_1010,
                    start_minute: 8 * 60 + 30,
                    end_minute: 17 * 60,
                },
            }))
        );
        assert_eq!(
            request(&[
                "holiday", "--index", "2", "--from", "10", "--to", "20", "--mode", "vacation"
            ]),
            Ok(Request::SetSchedule(Schedule::Holiday {
                index: 2,
                period: Period { start: 10, end: 20 },
                mode: OperatingMode::Vacation,
            }))
        );
        assert_eq!(
            request(&["schedules"]),
            Ok(Request::ListSchedules { holder: None })
        );
        assert_eq!(
            request(&["clear-schedules", "--kind", "year-day", "--code", "4"]),
            Ok(Request::ClearSchedules {
                kind: ScheduleKind::YearDay,
                holder: Some(Holder::TempPasscode(crate::core::types::TempPasscodeId(4))),
                index: None,
            })
        );
    }

    #[test]
    fn bad_values_are_usage_errors_that_say_what_is_wanted() {
        for (args, says) in [
            (
                &[
                    "schedule-week",
                    "--index",
                    "1",
                    "--days",
                    "all",
                    "--from",
                    "08:00",
                    "--to",
                    "09:00",
                ][..],
                "name the holder",
            ),
            (
                &[
                    "schedule-week",
                    "--user",
                    "2",
                    "--index",
                    "1",
                    "--days",
                    "mo",
                    "--from",
                    "08:00",
                    "--to",
                    "09:00",
                ][..],
                "sun, mon",
            ),
            (
                &[
                    "schedule-week",
                    "--user",
                    "2",
                    "--index",
                    "1",
                    "--days",
                    "all",
                    "--from",
                    "24:00",
                    "--to",
                    "09:00",
                ][..],
                "HH:MM",
            ),
            (&["schedules", "--user", "2", "--code", "1"][..], "one of"),
            (&["schedules", "--user", "0"][..], "1..=999"),
            (
                &["clear-schedules", "--kind", "daily"][..],
                "week-day, year-day or holiday",
            ),
            (
                &[
                    "holiday", "--index", "1", "--from", "0", "--to", "1", "--mode", "curfew",
                ][..],
                "passage",
            ),
        ] {
            let e = request(args).expect_err(&format!("{args:?}"));
            assert!(e.contains(says), "{args:?}: {e}");
        }
    }
}
