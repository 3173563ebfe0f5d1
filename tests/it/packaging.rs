//! Packaging checks: the systemd unit (`systemd-analyze verify` and the
//! offline `security` score), the sysusers file (`systemd-sysusers --root`),
//! that unit, sysusers file, D-Bus policy and Yocto recipe agree on the
//! accounts, and the Yocto layer (`yocto-layer/lint.sh`: oelint-adv from
//! PyPI, and latchd-crates.inc in step with Cargo.lock).
//!
//! Needs the Debian package `systemd` (systemd-analyze, systemd-sysusers),
//! python3 ≥ 3.11 with pip, and access to PyPI the first time.
use std::path::{Path, PathBuf};
use std::process::Command;

/// Exposure score `systemd-analyze security` may not exceed (0 = locked
/// down, 10 = unprotected). The unit scores 1.7 today; a change that
/// weakens it must show up here.
const MAX_EXPOSURE: f64 = 2.0;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn run(program: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The unit with ExecStart pointing at the binary cargo just built, so
/// that verify can check it exists and is executable.
fn unit_for_verification(dir: &Path) -> PathBuf {
    let unit = read("systemd/latchd.service");
    assert!(
        unit.contains("ExecStart=/usr/bin/latchd "),
        "ExecStart moved; update this test"
    );
    assert!(
        unit.contains("ExecStopPost=/usr/bin/latchd-coast "),
        "ExecStopPost moved; update this test"
    );
    let unit = unit
        .replace(
            "ExecStart=/usr/bin/latchd ",
            &format!("ExecStart={} ", env!("CARGO_BIN_EXE_latchd")),
        )
        .replace(
            "ExecStopPost=/usr/bin/latchd-coast ",
            &format!("ExecStopPost={} ", env!("CARGO_BIN_EXE_latchd-coast")),
        );
    let path = dir.join("latchd.service");
    std::fs::write(&path, unit).expect("write unit copy");
    // latchd.service requires the key step's unit: verify loads it too.
    let key_unit = read("systemd/latchd-key.service").replace(
        "ExecStart=/usr/bin/latchd ",
        &format!("ExecStart={} ", env!("CARGO_BIN_EXE_latchd")),
    );
    std::fs::write(dir.join("latchd-key.service"), key_unit).expect("write unit copy");
    path
}

#[test]
fn unit_passes_systemd_analyze_verify() {
    let dir = tempfile::tempdir().expect("tempdir");
    let unit = unit_for_verification(dir.path());
    let unit = unit.to_str().expect("utf-8 path");
    let (ok, stdout, stderr) = run("systemd-analyze", &["verify", unit]);
    assert!(ok, "systemd-analyze verify failed:\n{stdout}{stderr}");
    // verify also exits 0 on warnings such as unknown keys: none allowed.
    assert!(!stderr.contains("latchd.service"), "warnings:\n{stderr}");
}

/// The key step's unit: verify, and the two units agree on the
/// credential's path, the state directory and the restart status.
#[test]
fn key_unit_passes_verify_and_matches_the_daemon_unit() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Both units, as verify needs them (Before=/Requires=).
    unit_for_verification(dir.path());
    let key_unit = dir.path().join("latchd-key.service");
    let unit = std::fs::read_to_string(&key_unit).expect("key unit copy");
    let (ok, stdout, stderr) = run(
        "systemd-analyze",
        &["verify", key_unit.to_str().expect("utf-8 path")],
    );
    assert!(ok, "systemd-analyze verify failed:\n{stdout}{stderr}");
    assert!(
        !stderr.contains("latchd-key.service"),
        "warnings:\n{stderr}"
    );
    assert!(unit.contains("--state-dir /var/lib/latchd --key-step"));

    let daemon = read("systemd/latchd.service");
    assert_eq!(
        unit_value(&daemon, "LoadCredentialEncrypted"),
        "device-key:/var/lib/latchd/device-key.cred"
    );
    assert_eq!(unit_value(&daemon, "RestartForceExitStatus"), "75");
    assert_eq!(
        latchd::store::keystore::EXIT_ROTATE.to_string(),
        unit_value(&daemon, "RestartForceExitStatus")
    );
    assert!(daemon.contains("Requires=latchd-key.service"));
    assert_eq!(latchd::store::keystore::CRED_FILE, "device-key.cred");
    let tmpfiles = read("systemd/latchd.tmpfiles");
    assert!(tmpfiles.contains("d /var/lib/latchd 0700 latchd latchd -"));
}

#[test]
fn unit_exposure_stays_low() {
    let dir = tempfile::tempdir().expect("tempdir");
    let unit = unit_for_verification(dir.path());
    let unit = unit.to_str().expect("utf-8 path");
    let (ok, stdout, stderr) = run(
        "systemd-analyze",
        &["security", "--offline=yes", "--no-pager", unit],
    );
    assert!(ok, "systemd-analyze security failed:\n{stdout}{stderr}");
    let line = stdout
        .lines()
        .find(|l| l.contains("Overall exposure level for latchd.service:"))
        .unwrap_or_else(|| panic!("no overall exposure line in:\n{stdout}"));
    let score: f64 = line
        .rsplit(':')
        .next()
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("cannot read the score in {line:?}"));
    assert!(
        score <= MAX_EXPOSURE,
        "exposure {score} > {MAX_EXPOSURE}:\n{stdout}"
    );
}

fn unit_value(unit: &str, key: &str) -> String {
    unit.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("unit has no {key}="))
        .to_string()
}

#[test]
fn unit_has_the_required_service_settings() {
    let unit = read("systemd/latchd.service");
    for (key, value) in [
        ("Type", "notify"),
        ("NotifyAccess", "main"),
        ("Restart", "on-failure"),
        ("StateDirectory", "latchd"),
        ("User", "latchd"),
        ("CapabilityBoundingSet", ""),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("DevicePolicy", "closed"),
        ("SystemCallFilter", "@system-service"),
        (
            "RestrictAddressFamilies",
            "AF_UNIX AF_BLUETOOTH AF_INET AF_INET6 AF_NETLINK",
        ),
    ] {
        assert_eq!(unit_value(&unit, key), value, "{key}=");
    }
    assert!(unit_value(&unit, "WatchdogSec").ends_with('s'));
    // Issue 15: every end of the daemon coasts the motor, reading the same
    // config the daemon was started with.
    let config = |cmd: &str| -> String {
        let mut words = cmd.split_whitespace();
        words.find(|w| *w == "--config");
        words.next().unwrap_or_default().to_string()
    };
    let stop_post = unit_value(&unit, "ExecStopPost");
    assert!(
        stop_post.starts_with("/usr/bin/latchd-coast "),
        "{stop_post}"
    );
    assert_eq!(config(&stop_post), config(&unit_value(&unit, "ExecStart")));
    assert!(!config(&stop_post).is_empty());
}

/// Where wpa_supplicant saves the lock's Wi-Fi network: tmpfiles copies
/// the template (`update_config=1`) once into a root-only directory on the
/// persistent partition and never over a saved network; the installed
/// latchd.toml points `[wifi] wpa_supplicant_config` at that copy.
#[test]
fn the_wifi_configuration_is_copied_once_and_kept_private() {
    let template = read("config/wpa_supplicant/latchd.conf");
    assert!(template.lines().any(|l| l == "update_config=1"));
    let root = tempfile::tempdir().expect("tempdir");
    let share = root.path().join("usr/share/latchd");
    std::fs::create_dir_all(&share).expect("datadir");
    std::fs::write(share.join("wpa_supplicant.conf"), &template).expect("template");
    let tmpfiles = repo("systemd/latchd.tmpfiles");
    let create = || {
        let (ok, stdout, stderr) = run(
            "systemd-tmpfiles",
            &[
                "--create",
                &format!("--root={}", root.path().display()),
                "--prefix=/var/lib/latchd-wifi",
                tmpfiles.to_str().unwrap(),
            ],
        );
        assert!(ok, "systemd-tmpfiles:\n{stdout}{stderr}");
    };
    create();
    let dir = root.path().join("var/lib/latchd-wifi");
    let copy = dir.join("wpa_supplicant.conf");
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&copy), 0o600);
    assert_eq!(std::fs::read_to_string(&copy).unwrap(), template);
    // A saved network survives the next boot's tmpfiles run.
    let saved = format!("{template}network={{\n\tssid=\"home\"\n}}\n");
    std::fs::write(&copy, &saved).unwrap();
    create();
    assert_eq!(std::fs::read_to_string(&copy).unwrap(), saved);

    let recipe = read("yocto-layer/meta-latchd/recipes-core/latchd/latchd_git.bb");
    assert!(
        recipe.contains(
            "-e 's,^wpa_supplicant_config = \"\"$,wpa_supplicant_config = \"${localstatedir}/lib/latchd-wifi/wpa_supplicant.conf\",'"
        ),
        "the recipe points latchd.toml at the copy"
    );
    assert!(read("config/latchd.toml").contains("\nwpa_supplicant_config = \"\"\n"));
}

/// The `bluetooth.service` drop-in latchd installs: systemd reads it
/// without a warning over a unit shaped like BlueZ's own, it runs
/// bluetoothd with the lock's BlueZ config, and it brings a crashed
/// bluetoothd back (BlueZ's unit does not) every time: no start limit a
/// phone crashing it five times could use to switch BLE off for good.
#[test]
fn bluetooth_drop_in_verifies_and_restarts_bluetoothd() {
    let drop_in = read("systemd/bluetooth.service.d/latchd.conf");
    for (key, value) in [
        ("Restart", "on-failure"),
        ("RestartSec", "2"),
        ("StartLimitIntervalSec", "0"),
    ] {
        assert_eq!(unit_value(&drop_in, key), value, "{key}=");
    }
    let exec: Vec<&str> = drop_in
        .lines()
        .filter_map(|l| l.strip_prefix("ExecStart="))
        .collect();
    assert_eq!(
        exec,
        [
            "",
            "/usr/libexec/bluetooth/bluetoothd -f /etc/latchd/bluetooth.conf"
        ],
        "the drop-in clears BlueZ's ExecStart and names the lock's config"
    );

    // verify loads drop-ins from `<unit>.d` beside the unit. BlueZ's unit
    // (5.66's settings that matter here); ExecStart names a program that
    // exists, as verify checks.
    let dir = tempfile::tempdir().expect("tempdir");
    let base = "[Unit]\nDescription=Bluetooth service\n\n[Service]\nType=dbus\n\
                BusName=org.bluez\nExecStart=/bin/true\nNotifyAccess=main\n\
                LimitNPROC=1\n\n[Install]\nWantedBy=bluetooth.target\n";
    std::fs::write(dir.path().join("bluetooth.service"), base).expect("write unit");
    let d = dir.path().join("bluetooth.service.d");
    std::fs::create_dir(&d).expect("drop-in dir");
    std::fs::write(
        d.join("latchd.conf"),
        drop_in.replace(
            "/usr/libexec/bluetooth/bluetoothd -f /etc/latchd/bluetooth.conf",
            "/bin/true -f /etc/latchd/bluetooth.conf",
        ),
    )
    .expect("write drop-in");
    let unit = dir.path().join("bluetooth.service");
    let (ok, stdout, stderr) = run("systemd-analyze", &["verify", unit.to_str().unwrap()]);
    assert!(ok, "systemd-analyze verify failed:\n{stdout}{stderr}");
    assert!(!stderr.contains("latchd.conf"), "warnings:\n{stderr}");
}

#[test]
fn sysusers_creates_the_accounts_the_unit_and_policy_name() {
    let root = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(root.path().join("etc")).expect("etc");
    let root_arg = format!("--root={}", root.path().display());
    let file = repo("systemd/latchd.sysusers");
    let (ok, stdout, stderr) = run(
        "systemd-sysusers",
        &[&root_arg, file.to_str().expect("utf-8")],
    );
    assert!(ok, "systemd-sysusers failed:\n{stdout}{stderr}");
    let passwd = std::fs::read_to_string(root.path().join("etc/passwd")).expect("passwd");
    let group = std::fs::read_to_string(root.path().join("etc/group")).expect("group");

    let user = passwd
        .lines()
        .find(|l| l.starts_with("latchd:"))
        .unwrap_or_else(|| panic!("no latchd user in\n{passwd}"));
    assert!(
        user.ends_with(":/var/lib/latchd:/usr/sbin/nologin"),
        "{user}"
    );
    let members = |name: &str| -> Vec<String> {
        let line = group
            .lines()
            .find(|l| l.starts_with(&format!("{name}:")))
            .unwrap_or_else(|| panic!("no group {name} in\n{group}"));
        line.rsplit(':')
            .next()
            .unwrap_or("")
            .split(',')
            .filter(|m| !m.is_empty())
            .map(str::to_string)
            .collect()
    };
    // Technicians are people; the daemon must not be one of them.
    assert!(members("latchd-tech").is_empty());

    // Every supplementary group of the unit exists and has latchd in it,
    // and the Yocto recipe makes the same ones.
    let unit = read("systemd/latchd.service");
    let recipe = read("yocto-layer/meta-latchd/recipes-core/latchd/latchd_git.bb");
    for g in unit_value(&unit, "SupplementaryGroups").split_whitespace() {
        assert!(
            members(g).iter().any(|m| m == "latchd"),
            "latchd not in group {g}"
        );
        assert!(
            recipe.contains(g),
            "recipe's useradd does not mention group {g}"
        );
    }
    assert!(recipe.contains("--system latchd-tech"));

    // The D-Bus policy names the same accounts.
    let policy = read("config/dbus/org.latchd.conf");
    assert!(policy.contains(r#"<policy group="latchd-tech">"#));
    assert!(policy.contains(r#"<policy user="latchd">"#));
}

#[test]
fn recipe_licence_checksum_matches_cargo_toml() {
    let recipe = read("yocto-layer/meta-latchd/recipes-core/latchd/latchd_git.bb");
    let spec = recipe
        .lines()
        .find_map(|l| l.strip_prefix("LIC_FILES_CHKSUM = \"file://Cargo.toml;"))
        .expect("LIC_FILES_CHKSUM on Cargo.toml");
    let field = |k: &str| -> String {
        spec.trim_end_matches('"')
            .split(';')
            .find_map(|kv| kv.strip_prefix(&format!("{k}=")))
            .unwrap_or_else(|| panic!("no {k} in {spec}"))
            .to_string()
    };
    let (begin, end, md5): (usize, usize, String) = (
        field("beginline").parse().expect("beginline"),
        field("endline").parse().expect("endline"),
        field("md5"),
    );
    let cargo = read("Cargo.toml");
    let lines: String = cargo
        .split_inclusive('\n')
        .skip(begin - 1)
        .take(end + 1 - begin)
        .collect();
    assert!(
        lines.starts_with("license = "),
        "line {begin} of Cargo.toml is {lines:?}"
    );
    let mut child = Command::new("md5sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("md5sum (coreutils)");
    std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), lines.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("md5sum");
    let sum = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        sum.split_whitespace().next(),
        Some(md5.as_str()),
        "update LIC_FILES_CHKSUM"
    );
}

#[test]
fn yocto_layer_lints_clean_and_crates_are_current() {
    let script = repo("yocto-layer/lint.sh");
    let (ok, stdout, stderr) = run("bash", &[script.to_str().expect("utf-8")]);
    assert!(ok, "yocto-layer/lint.sh failed:\n{stdout}{stderr}");
    assert!(stdout.contains("meta-latchd clean"), "{stdout}");
}

/// The board file's prompt directory is what the image installs, and the
/// recipe installs every prompt asset of every language (a lock without
/// them is mute; issue 17 item 4: the language changes at run time).
#[test]
fn recipe_installs_the_voice_prompts_where_the_board_file_looks() {
    let recipe = read("yocto-layer/meta-latchd/recipes-core/latchd/latchd_git.bb");
    for lang in latchd::core::Language::ALL {
        let tag = lang.tag();
        assert!(
            recipe.contains(&format!(
                "${{S}}/assets/prompts/{tag}/*.wav ${{D}}${{datadir}}/latchd/prompts/{tag}/"
            )),
            "the recipe must install assets/prompts/{tag}"
        );
    }
    let board = read("config/board-example.toml");
    assert!(
        board.contains(r#"assets = "/usr/share/latchd/prompts""#),
        "board-example.toml's [voice] assets must be the installed directory"
    );
    for lang in latchd::core::Language::ALL {
        let dir = format!("assets/prompts/{}", lang.tag());
        let wavs = std::fs::read_dir(repo(&dir))
            .expect("a prompt folder per language")
            .filter(|e| {
                e.as_ref()
                    .map(|e| e.path().extension().is_some_and(|x| x == "wav"))
                    .unwrap_or(false)
            })
            .count();
        assert!(wavs > 50, "{wavs} prompt assets in {dir}");
    }
}

/// The image runs the real board: the recipe's edit of the shipped config
/// matches lines that exist, and the result parses as `board = "linux"`.
#[test]
fn recipe_installs_a_config_for_the_real_board() {
    let recipe = read("yocto-layer/meta-latchd/recipes-core/latchd/latchd_git.bb");
    assert!(recipe.contains(r#"'s,^board = "sim"$,board = "linux",'"#));
    assert!(recipe.contains(r#"'s,^storage = "file"$,storage = "${LATCHD_KEY_STORAGE}",'"#));
    assert!(recipe.contains(r#"LATCHD_KEY_STORAGE ??= "tpm2""#));
    assert!(recipe.contains(r#"'s,^rtc = ""$,rtc = "${LATCHD_RTC}",'"#));
    assert!(recipe.contains(r#"LATCHD_RTC ??= "rtc0""#));
    let shipped = read("config/latchd.toml");
    assert!(shipped.lines().any(|l| l == r#"board = "sim""#));
    assert!(shipped
        .lines()
        .any(|l| l == r#"# board_file = "/etc/latchd/board.toml""#));
    // What the sed makes of it.
    let installed: String = shipped
        .lines()
        .map(|l| match l {
            r#"board = "sim""# => r#"board = "linux""#.to_string(),
            r#"# board_file = "/etc/latchd/board.toml""# => {
                r#"board_file = "/etc/latchd/board.toml""#.to_string()
            }
            r#"storage = "file""# => r#"storage = "tpm2""#.to_string(),
            r#"rtc = """# => r#"rtc = "rtc0""#.to_string(),
            other => other.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("latchd.toml");
    std::fs::write(&path, installed).unwrap();
    let config = latchd::config::Config::load(&path).expect("the installed config parses");
    assert_eq!(config.board, latchd::config::BoardKind::Linux);
    assert_eq!(
        config.key.storage,
        latchd::store::keystore::KeyStorage::Tpm2
    );
    assert_eq!(
        config.board_file.as_deref(),
        Some(std::path::Path::new("/etc/latchd/board.toml"))
    );
    assert_eq!(config.lock.rtc(), Some("rtc0"));
}
