//! A Persist that SQLite refuses (here a trigger raising an error, the way
//! a full disk or an I/O error surfaces): the rest of that batch is not
//! performed, the person hears "Operation failed.", and the engine is
//! rebuilt from the store, so memory matches disk and nothing is lost.

use serde_json::json;

use crate::common::daemon::*;

#[test]
fn failed_persist_drops_the_batch_says_failure_and_reloads() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let d = Daemon::start(&state);
    first_start(&d);

    let db = rusqlite::Connection::open(state.join("latchd.db")).unwrap();
    db.execute_batch(
        "CREATE TRIGGER refuse_users BEFORE INSERT ON users \
         BEGIN SELECT RAISE(ABORT, 'database or disk is full (test)'); END;",
    )
    .unwrap();

    enter_menu(&d);
    d.press("2");
    d.press("4");
    d.press(&format!("{USER_CODE}✓{USER_CODE}✓"));
    let prompts = d.last_prompts(3);
    assert!(
        prompts.iter().any(|p| p == "Operation failed."),
        "{prompts:?}"
    );
    // "Operation successful." must not follow the failed commit.
    assert_ne!(d.last_prompt(), "Operation successful.");
    let s = d.status();
    assert_eq!(s["daemon"]["persist_failures"], json!(1), "{s}");
    assert_eq!(s["engine"]["counts"]["users"], json!(1), "{s}");
    assert_eq!(s["engine"]["counts"]["passcodes"], json!(1), "{s}");

    // The disk has room again: the same user can be added.
    db.execute_batch("DROP TRIGGER refuse_users;").unwrap();
    drop(db);
    d.press("↩↩↩");
    enter_menu(&d);
    d.press("2");
    assert!(d.last_prompts(3).iter().any(|p| p == "User number 0 0 2."));
    d.press("4");
    d.press(&format!("{USER_CODE}✓{USER_CODE}✓"));
    assert_eq!(d.status()["engine"]["counts"]["users"], json!(2));
    assert!(d.sigterm().success());
    assert_eq!(check_db(&state), (2, 2));
}
