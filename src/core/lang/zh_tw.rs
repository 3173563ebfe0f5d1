//! Mandarin prompt texts in Traditional Chinese (zh-TW), in the manual's
//! words where it names a thing: 管理員 (administrator), 用戶 (user), 開門
//! 方向 (door direction), 掌靜脈 (palm vein), 系統資訊 (system
//! information), 離家模式 (away mode), 恢復出廠設定 (factory reset).
//! Values are read digit by digit in Mandarin digits (零 一 二 …).
use super::Words;
use crate::core::action::Prompt;
use crate::core::input;

pub(super) const WORDS: Words = Words {
    digits: ["零", "一", "二", "三", "四", "五", "六", "七", "八", "九"],
    user_number: "用戶編號",
    serial_number: "序號",
    firmware_version: "韌體版本",
    verification_code: "驗證碼",
    matter_setup_code: "Matter 設定碼",
    point: "點",
    gap: " ",
    stop: "。",
};

/// The words of `p` in Mandarin (Traditional Chinese).
pub(super) fn text(p: &Prompt) -> String {
    use Prompt::*;
    let w = &WORDS;
    match p {
        ChooseDirection => "請選擇開門方向。右開門請按1，左開門請按2。".into(),
        DirectionSet => "開門方向已設定。".into(),
        CreateAdmin => "請新增管理員，按確認鍵開始。".into(),
        EnterPasscode => "請輸入六至十位數密碼，再按確認鍵。".into(),
        RepeatPasscode => "請再次輸入密碼，再按確認鍵。".into(),
        PasscodeMismatch => "兩次密碼不一致，請重新開始。".into(),
        PasscodeTooSimple => "密碼過於簡單，請勿使用重複或連續的數字。".into(),
        PasscodeTaken => "此密碼已被使用，請換一組。".into(),
        InputTooLong => "輸入位數過多，請重新輸入。".into(),
        Success => "操作成功。".into(),
        Failure => "操作失敗。".into(),
        UserNumber(n) => {
            let d = n.digits().map(|d| w.digits[usize::from(d)]);
            format!("{} {} {} {}{}", w.user_number, d[0], d[1], d[2], w.stop)
        }
        MenuMain => "新增管理員請按1，新增用戶請按2，刪除用戶請按3，為用戶新增或刪除開鎖方式請按5，語言設定請按6，系統資訊請按確認鍵。".into(),
        ChooseMethod => "人臉請按1，掌靜脈請按2，指紋請按3，密碼請按4。".into(),
        ChooseMethodOrDuress => "人臉請按1，掌靜脈請按2，指紋請按3，密碼請按4，脅迫密碼請按5。".into(),
        ChooseMethodOrDelete => "人臉請按1，掌靜脈請按2，指紋請按3，密碼請按4，脅迫密碼請按5，刪除開鎖方式請按0。".into(),
        ChooseCredentialToDelete => "請選擇要刪除的開鎖方式：人臉請按1，掌靜脈請按2，指紋請按3，密碼請按4，脅迫密碼請按5。".into(),
        FacePose(p) => match p {
            input::FacePose::Straight => "請正視鏡頭。".into(),
            input::FacePose::Up => "請稍微抬頭。".into(),
            input::FacePose::Down => "請稍微低頭。".into(),
            input::FacePose::Left => "請稍微向左轉頭。".into(),
            input::FacePose::Right => "請稍微向右轉頭。".into(),
        },
        FaceFix(f) => match f {
            input::FaceFix::NoFace => "未偵測到人臉，請面向鏡頭。".into(),
            input::FaceFix::SeveralFaces => "偵測到多張人臉，請一次一人。".into(),
            input::FaceFix::TooFar => "請靠近一點，約一臂的距離。".into(),
            input::FaceFix::TooClose => "請後退一點，約一臂的距離。".into(),
            input::FaceFix::Blurry => "請保持不動。".into(),
            input::FaceFix::Covered => "臉部被遮擋，請移開遮擋物。".into(),
            input::FaceFix::WrongPose => "請依照提示動作。".into(),
        },
        PlacePalm => "請將掌心對準紅光，距離約二十公分，手掌放鬆，與面板垂直。".into(),
        PlaceFinger => "請將手指完整覆蓋指紋感應區。".into(),
        PresentAgain => "請再按一次。".into(),
        Remove => "請移開手。".into(),
        AlreadyEnrolled => "此指紋已登錄。".into(),
        LimitReached => "已達上限，未新增。".into(),
        EnterUserNumber => "請輸入用戶編號，再按確認鍵。".into(),
        NoSuchUser => "無此用戶。".into(),
        CannotDeleteLastAdmin => "無法刪除最後一位管理員。".into(),
        Deleted => "刪除成功。".into(),
        SystemInfo {
            serial,
            firmware,
            verification_code,
            matter_code,
        } => {
            let mut s = format!(
                "{} {}{}{} {}{}{} {}{}",
                w.serial_number,
                w.spell(serial),
                w.stop,
                w.firmware_version,
                w.spell(firmware),
                w.stop,
                w.verification_code,
                w.spell(verification_code),
                w.stop
            );
            if let Some(c) = matter_code {
                s.push_str(&format!("{} {}{}", w.matter_setup_code, w.spell(c), w.stop));
            }
            s
        }
        VerifyAdmin => "請驗證管理員。".into(),
        Unlocked => "已開鎖。".into(),
        Locked => "已上鎖。".into(),
        VerifyFailed => "驗證失敗。".into(),
        LockedOut => "系統已鎖定，請稍後再試。".into(),
        KeypadDisabled => "鍵盤已停用，須由屋主解除。".into(),
        KeypadReleased => "鍵盤已重新啟用。".into(),
        UserNotValidNow => "此用戶目前不在有效期間內。".into(),
        TamperAlarm => "警報，門鎖遭到破壞。".into(),
        LowBattery => "電量不足，請充電。".into(),
        PairingMode => "配對模式，請連接手機應用程式。".into(),
        PairingEnded => "配對模式已結束。".into(),
        Identify => "這是您正在設定的門鎖。".into(),
        MuteOn => "已開啟單次靜音。".into(),
        AwayArmed => "離家模式已啟動。".into(),
        AwayDisarmed => "離家模式已關閉。".into(),
        Doorbell => "叮咚。".into(),
        FactoryResetRelease => "請放開按鍵。".into(),
        FactoryResetConfirm => "按確認鍵恢復出廠設定。".into(),
        FactoryResetDone => "已恢復出廠設定。".into(),
        Jammed => "鎖舌卡住。".into(),
        ModuleFault => "模組故障。".into(),
        DoorAjar => "門未關好，請關門。".into(),
        DoorForcedOpen => "警報，門被強行打開。".into(),
        // This table's line of the language menu (key: Language::menu_key).
        ChooseLanguage => "中文請按2。".into(),
        LanguageSet => "已切換為中文。".into(),
        UpdateInstalling => "正在安裝軟體更新，門鎖可照常使用。".into(),
        UpdateRestarting => "門鎖重新啟動以完成軟體更新。".into(),
        UpdateNotInstalled => "軟體更新未安裝。".into(),
    }
}
