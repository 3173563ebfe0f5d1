//! The prompt languages (issue 17 item 4): one table of texts per
//! language, and the language setting's values.
//!
//! ```text
//!  engine: Action::Prompt(prompt id, language) ─┬─ Prompt::text(lang) ─► trace, sim panel
//!                                               └─ prompt_assets(prompt, lang)
//!                                                   ─► assets/prompts/<tag>/<name>.wav
//! ```
//!
//! The engine decides *what* is said (a [`Prompt`]) and in which language
//! (the `language` setting, else `[prompts] language` from the config);
//! the words are here. Each language is one module with one exhaustive
//! `match` over [`Prompt`] and one [`Words`] value, so a new prompt does
//! not compile until every language has its words, and
//! `scripts/gen-prompts.sh` records every asset of every language from
//! these tables.
//!
//! Values are read digit by digit in the chosen language (user 12 is
//! "用戶編號 零 一 二" in Mandarin, "User number 0 1 2" in English), as
//! the manual shows a user number by lighting its digits one after the
//! other (B-1.4): a finite set of recorded digits then covers every
//! number the lock can say.
use core::fmt;
use core::str::FromStr;

use serde::{Deserialize, Serialize};

use super::action::Prompt;

mod en;
mod zh_tw;

/// A prompt language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum Language {
    /// English (espeak-ng voice `en-us`). The default: the language the
    /// lock spoke before it had a choice, and the one its system
    /// information is specified in (B-4.10).
    #[default]
    #[serde(rename = "en")]
    En,
    /// Mandarin, Traditional Chinese texts (the seed manual's language;
    /// espeak-ng's `cmn` language).
    #[serde(rename = "zh-TW")]
    ZhTw,
}

impl Language {
    /// Every language, in the order the language menu offers them.
    pub const ALL: [Language; 2] = [Language::En, Language::ZhTw];

    /// The BCP 47 tag: the config value, the assets' folder, `latchctl`'s word.
    pub fn tag(self) -> &'static str {
        match self {
            Language::En => "en",
            Language::ZhTw => "zh-TW",
        }
    }

    /// The app protocol's byte for it (`docs/ble-protocol.md`).
    pub fn code(self) -> u8 {
        match self {
            Language::En => 0,
            Language::ZhTw => 1,
        }
    }

    pub fn from_code(code: u8) -> Option<Language> {
        Language::ALL.into_iter().find(|l| l.code() == code)
    }

    /// The key that picks it in the language menu (menu "6").
    pub fn menu_key(self) -> u8 {
        match self {
            Language::En => 1,
            Language::ZhTw => 2,
        }
    }

    pub fn from_menu_key(key: u8) -> Option<Language> {
        Language::ALL.into_iter().find(|l| l.menu_key() == key)
    }

    /// The espeak-ng voice `scripts/gen-prompts.sh` records it with.
    /// Mandarin uses `cmn-latn-pinyin`, the `cmn` language whose Latin
    /// text is read as pinyin: espeak-ng 1.51's plain `cmn` voice turns
    /// most Traditional characters into pinyin and then reads that pinyin
    /// as English words (開 became "kai-one-won"); the pinyin variant reads
    /// the same dictionary's pinyin as Mandarin.
    pub fn espeak_voice(self) -> &'static str {
        match self {
            Language::En => "en-us",
            Language::ZhTw => "cmn-latn-pinyin",
        }
    }

    /// The fixed words of this language.
    pub fn words(self) -> &'static Words {
        match self {
            Language::En => &en::WORDS,
            Language::ZhTw => &zh_tw::WORDS,
        }
    }

    /// One table's text of `p` (the language menu's line for
    /// `ChooseLanguage`).
    fn table_text(self, p: &Prompt) -> String {
        match self {
            Language::En => en::text(p),
            Language::ZhTw => zh_tw::text(p),
        }
    }
}

impl fmt::Display for Language {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.tag())
    }
}

/// A stored language tag, or `None` for one this build has no prompts
/// for (see `Settings::language`).
pub(crate) fn known_or_none<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Language>, D::Error> {
    let tag = Option::<String>::deserialize(d)?;
    Ok(tag.and_then(|t| t.parse().ok()))
}

/// A language tag latchd has no prompts for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown prompt language `{0}`; latchd speaks \"en\" (English) and \"zh-TW\" (Mandarin, Traditional Chinese)")]
pub struct UnknownLanguage(pub String);

impl FromStr for Language {
    type Err = UnknownLanguage;

    /// The tag, in any letter case (`zh-tw` is `zh-TW`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Language::ALL
            .into_iter()
            .find(|l| l.tag().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownLanguage(s.to_owned()))
    }
}

/// The words values are read with, and the fixed phrases that introduce
/// them. Every language fills every field: each is also a recorded asset
/// (`user_number`, `digit_N`, …; see `board::drivers::prompts`).
#[derive(Debug)]
pub struct Words {
    /// `digit_0` … `digit_9`, as read one by one.
    pub digits: [&'static str; 10],
    pub user_number: &'static str,
    pub serial_number: &'static str,
    pub firmware_version: &'static str,
    pub verification_code: &'static str,
    pub matter_setup_code: &'static str,
    /// The "." of a version number.
    pub point: &'static str,
    /// Between the words of a spelled value.
    pub gap: &'static str,
    /// Ends a sentence.
    pub stop: &'static str,
}

impl Words {
    /// `s` read character by character: digits in this language's words,
    /// letters as capitals, `.` as [`Words::point`]; anything else (dashes)
    /// is not read. Matches the assets `board::drivers::prompts` plays.
    pub fn spell(&self, s: &str) -> String {
        s.chars()
            .filter_map(|c| match c {
                '0'..='9' => Some(self.digits[usize::from(c as u8 - b'0')].to_owned()),
                'a'..='z' | 'A'..='Z' => Some(c.to_ascii_uppercase().to_string()),
                '.' => Some(self.point.to_owned()),
                _ => None,
            })
            .collect::<Vec<_>>()
            .join(self.gap)
    }
}

impl Prompt {
    /// The words of the prompt in `lang`: what the voice says and the
    /// front panel shows. The language menu's prompt is every language's
    /// line, each in its own words, so someone who cannot understand the
    /// current language still finds theirs.
    pub fn text(&self, lang: Language) -> String {
        match self {
            Prompt::ChooseLanguage => Language::ALL
                .iter()
                .map(|l| l.table_text(self))
                .collect::<Vec<_>>()
                .join(" "),
            _ => lang.table_text(self),
        }
    }

    /// The languages whose recordings make up this prompt: the chosen one,
    /// or every one for the language menu.
    pub fn spoken_in(&self, lang: Language) -> Vec<Language> {
        match self {
            Prompt::ChooseLanguage => Language::ALL.to_vec(),
            _ => vec![lang],
        }
    }

    /// One language's own text of the prompt, as recorded in that
    /// language's asset (the language menu's prompt: that language's line).
    pub fn recorded_text(&self, lang: Language) -> String {
        lang.table_text(self)
    }
}

/// Every prompt the lock can say, values shown by one example each
/// (`UserNumber` by 1, `SystemInfo` by empty strings): the list the assets
/// are recorded from and the tests walk.
pub fn catalogue() -> Vec<Prompt> {
    use super::input;
    use Prompt::*;
    let mut v = vec![
        ChooseDirection,
        DirectionSet,
        CreateAdmin,
        EnterPasscode,
        RepeatPasscode,
        PasscodeMismatch,
        PasscodeTooSimple,
        PasscodeTaken,
        InputTooLong,
        Success,
        Failure,
        UserNumber(super::types::UserNumber::new(1).expect("user 1 exists")),
        MenuMain,
        ChooseMethod,
        ChooseMethodOrDuress,
        ChooseMethodOrDelete,
        ChooseCredentialToDelete,
    ];
    v.extend(
        [
            input::FacePose::Straight,
            input::FacePose::Up,
            input::FacePose::Down,
            input::FacePose::Left,
            input::FacePose::Right,
        ]
        .map(FacePose),
    );
    v.extend(
        [
            input::FaceFix::NoFace,
            input::FaceFix::SeveralFaces,
            input::FaceFix::TooFar,
            input::FaceFix::TooClose,
            input::FaceFix::Blurry,
            input::FaceFix::Covered,
            input::FaceFix::WrongPose,
        ]
        .map(FaceFix),
    );
    v.extend([
        PlacePalm,
        PlaceFinger,
        PresentAgain,
        Remove,
        AlreadyEnrolled,
        LimitReached,
        EnterUserNumber,
        NoSuchUser,
        CannotDeleteLastAdmin,
        Deleted,
        SystemInfo {
            serial: String::new(),
            firmware: String::new(),
            verification_code: String::new(),
            matter_code: Some(String::new()),
        },
        VerifyAdmin,
        Unlocked,
        Locked,
        VerifyFailed,
        LockedOut,
        KeypadDisabled,
        KeypadReleased,
        UserNotValidNow,
        TamperAlarm,
        LowBattery,
        PairingMode,
        PairingEnded,
        Identify,
        MuteOn,
        AwayArmed,
        AwayDisarmed,
        Doorbell,
        FactoryResetRelease,
        FactoryResetConfirm,
        FactoryResetDone,
        Jammed,
        ModuleFault,
        DoorAjar,
        DoorForcedOpen,
        ChooseLanguage,
        LanguageSet,
        UpdateInstalling,
        UpdateRestarting,
        UpdateNotInstalled,
    ]);
    v
}

/// Compile-time guard for [`catalogue`]: a new [`Prompt`] variant breaks
/// this match, which sits beside the list it must join.
#[allow(dead_code)]
fn in_catalogue(p: &Prompt) {
    use Prompt::*;
    match p {
        ChooseDirection
        | DirectionSet
        | CreateAdmin
        | EnterPasscode
        | RepeatPasscode
        | PasscodeMismatch
        | PasscodeTooSimple
        | PasscodeTaken
        | InputTooLong
        | Success
        | Failure
        | UserNumber(_)
        | MenuMain
        | ChooseMethod
        | ChooseMethodOrDuress
        | ChooseMethodOrDelete
        | ChooseCredentialToDelete
        | FacePose(_)
        | FaceFix(_)
        | PlacePalm
        | PlaceFinger
        | PresentAgain
        | Remove
        | AlreadyEnrolled
        | LimitReached
        | EnterUserNumber
        | NoSuchUser
        | CannotDeleteLastAdmin
        | Deleted
        | SystemInfo { .. }
        | VerifyAdmin
        | Unlocked
        | Locked
        | VerifyFailed
        | LockedOut
        | KeypadDisabled
        | KeypadReleased
        | UserNotValidNow
        | TamperAlarm
        | LowBattery
        | PairingMode
        | PairingEnded
        | Identify
        | MuteOn
        | AwayArmed
        | AwayDisarmed
        | Doorbell
        | FactoryResetRelease
        | FactoryResetConfirm
        | FactoryResetDone
        | Jammed
        | ModuleFault
        | DoorAjar
        | DoorForcedOpen
        | ChooseLanguage
        | LanguageSet
        | UpdateInstalling
        | UpdateRestarting
        | UpdateNotInstalled => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::types::UserNumber;

    #[test]
    fn tags_and_codes_round_trip() {
        for l in Language::ALL {
            assert_eq!(l.tag().parse::<Language>(), Ok(l));
            assert_eq!(Language::from_code(l.code()), Some(l));
            assert_eq!(Language::from_menu_key(l.menu_key()), Some(l));
            let json = serde_json::to_string(&l).unwrap();
            assert_eq!(json, format!("\"{}\"", l.tag()));
        }
        assert_eq!("zh-tw".parse::<Language>(), Ok(Language::ZhTw));
        let e = "fr".parse::<Language>().unwrap_err();
        assert!(e.to_string().contains("\"zh-TW\""), "{e}");
        assert_eq!(Language::from_code(2), None);
    }

    #[test]
    fn stored_settings_without_a_known_language_follow_the_config() {
        use crate::core::types::Settings;
        let read = |v: serde_json::Value| serde_json::from_value::<Settings>(v).unwrap();
        let mut row = serde_json::json!({
            "auto_lock": null,
            "lockout_protection": true,
            "remote_unlock": false,
            "wifi": true,
        });
        // Stored before there was a choice.
        assert_eq!(read(row.clone()).language, None);
        row["language"] = "zh-TW".into();
        assert_eq!(read(row.clone()).language, Some(Language::ZhTw));
        // Stored by a newer version with a language this one lacks (an
        // update rolled back): the settings still load.
        row["language"] = "yue".into();
        let s = read(row.clone());
        assert_eq!(s.language, None);
        assert_eq!(
            (s.lockout_protection, s.wifi),
            (true, true),
            "the rest as stored"
        );
        // A choice is written as its tag; none is not written at all.
        let mut s = Settings::default();
        assert!(serde_json::to_value(&s).unwrap().get("language").is_none());
        s.language = Some(Language::ZhTw);
        assert_eq!(serde_json::to_value(&s).unwrap()["language"], "zh-TW");
    }

    #[test]
    fn numbers_are_read_digit_by_digit_in_the_chosen_language() {
        let p = Prompt::UserNumber(UserNumber::new(12).unwrap());
        assert_eq!(p.text(Language::En), "User number 0 1 2.");
        assert_eq!(p.text(Language::ZhTw), "用戶編號 零 一 二。");
        assert_eq!(Language::ZhTw.words().spell("0.1-A"), "零 點 一 A");
    }

    #[test]
    fn the_language_menu_offers_each_language_in_its_own_words() {
        for l in Language::ALL {
            let t = Prompt::ChooseLanguage.text(l);
            assert!(t.contains("English, press 1"), "{t}");
            assert!(t.contains("中文請按2"), "{t}");
        }
    }

    #[test]
    fn mandarin_texts_are_traditional_chinese() {
        // A few characters whose Simplified forms differ: the table must
        // not drift into Simplified Chinese.
        let all: String = catalogue().iter().map(|p| p.text(Language::ZhTw)).collect();
        for simplified in [
            '开', '锁', '请', '输', '码', '户', '编', '号', '门', '验', '证',
        ] {
            assert!(
                !all.contains(simplified),
                "Simplified `{simplified}` in {all}"
            );
        }
        for traditional in ['開', '鎖', '請', '輸', '碼', '戶'] {
            assert!(all.contains(traditional), "`{traditional}` missing");
        }
    }
}
