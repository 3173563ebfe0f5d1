//! English prompt texts.
use super::Words;
use crate::core::action::Prompt;
use crate::core::input;

pub(super) const WORDS: Words = Words {
    digits: ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"],
    user_number: "User number",
    serial_number: "Serial number",
    firmware_version: "Firmware version",
    verification_code: "Verification code",
    matter_setup_code: "Matter setup code",
    point: "point",
    gap: " ",
    stop: ".",
};

/// The words of `p` in English.
pub(super) fn text(p: &Prompt) -> String {
    use Prompt::*;
    match p {
        ChooseDirection => "Choose the door direction. Press 1 for a right-hand door, 2 for a left-hand door.".into(),
        DirectionSet => "Door direction set.".into(),
        CreateAdmin => "Please create the administrator. Press confirm to start.".into(),
        EnterPasscode => "Enter a passcode of six to ten digits, then press confirm.".into(),
        RepeatPasscode => "Enter the passcode again, then press confirm.".into(),
        PasscodeMismatch => "The passcodes do not match. Please start over.".into(),
        PasscodeTooSimple => "This passcode is too simple. Do not use repeated or consecutive digits.".into(),
        PasscodeTaken => "This passcode is already in use. Choose another.".into(),
        InputTooLong => "Too many digits. Please start again.".into(),
        Success => "Operation successful.".into(),
        Failure => "Operation failed.".into(),
        UserNumber(n) => {
            let d = n.digits();
            format!("User number {} {} {}.", d[0], d[1], d[2])
        }
        MenuMain => "Press 1 to add an administrator, 2 to add a user, 3 to delete a user, 5 to add or delete a credential of a user, 6 for the language, confirm for system information.".into(),
        ChooseMethod => "Press 1 for face, 2 for palm vein, 3 for fingerprint, 4 for passcode.".into(),
        ChooseMethodOrDuress => "Press 1 for face, 2 for palm vein, 3 for fingerprint, 4 for passcode, 5 for a duress passcode.".into(),
        ChooseMethodOrDelete => "Press 1 for face, 2 for palm vein, 3 for fingerprint, 4 for passcode, 5 for a duress passcode, 0 to delete a credential.".into(),
        ChooseCredentialToDelete => "Press the number of the credential to delete: 1 face, 2 palm vein, 3 fingerprint, 4 passcode, 5 duress passcode.".into(),
        FacePose(p) => match p {
            input::FacePose::Straight => "Please look straight at the camera.".into(),
            input::FacePose::Up => "Raise your head slightly.".into(),
            input::FacePose::Down => "Lower your head slightly.".into(),
            input::FacePose::Left => "Turn your head slightly to the left.".into(),
            input::FacePose::Right => "Turn your head slightly to the right.".into(),
        },
        FaceFix(f) => match f {
            input::FaceFix::NoFace => "No face found. Please face the camera.".into(),
            input::FaceFix::SeveralFaces => "More than one face. Only one person, please.".into(),
            input::FaceFix::TooFar => "Please come closer, about an arm's length away.".into(),
            input::FaceFix::TooClose => "Please move back, about an arm's length away.".into(),
            input::FaceFix::Blurry => "Please hold still.".into(),
            input::FaceFix::Covered => "Your face is covered. Please uncover it.".into(),
            input::FaceFix::WrongPose => "Please follow the instruction.".into(),
        },
        PlacePalm => "Place your palm centre over the red light, about twenty centimetres away, hand relaxed.".into(),
        PlaceFinger => "Place your finger on the reader, fully covering it.".into(),
        PresentAgain => "Again, please.".into(),
        Remove => "Remove your hand.".into(),
        AlreadyEnrolled => "This fingerprint is already enrolled.".into(),
        LimitReached => "The limit has been reached. Nothing was added.".into(),
        EnterUserNumber => "Enter the user number, then press confirm.".into(),
        NoSuchUser => "No such user.".into(),
        CannotDeleteLastAdmin => "The last administrator cannot be deleted.".into(),
        Deleted => "Deleted.".into(),
        SystemInfo {
            serial,
            firmware,
            verification_code,
            matter_code,
        } => {
            let matter = matter_code
                .as_ref()
                .map(|c| format!(" Matter setup code {c}."))
                .unwrap_or_default();
            format!(
                "Serial number {serial}. Firmware version {firmware}. Verification code {verification_code}.{matter}"
            )
        }
        VerifyAdmin => "Please verify an administrator.".into(),
        Unlocked => "Unlocked.".into(),
        Locked => "Locked.".into(),
        VerifyFailed => "Verification failed.".into(),
        LockedOut => "The system is locked. Please try again later.".into(),
        KeypadDisabled => "The keypad is disabled. The owner must release it.".into(),
        KeypadReleased => "The keypad is enabled again.".into(),
        UserNotValidNow => "This user is not valid at this time.".into(),
        TamperAlarm => "Alarm. The lock has been tampered with.".into(),
        LowBattery => "The battery is low. Please charge it.".into(),
        PairingMode => "Pairing mode. Connect the app.".into(),
        PairingEnded => "Pairing mode ended.".into(),
        Identify => "This is the lock you are setting up.".into(),
        MuteOn => "Mute on.".into(),
        AwayArmed => "Away mode armed.".into(),
        AwayDisarmed => "Away mode off.".into(),
        Doorbell => "Ding dong.".into(),
        FactoryResetRelease => "Release the button.".into(),
        FactoryResetConfirm => "Press confirm to restore factory settings.".into(),
        FactoryResetDone => "Factory settings restored.".into(),
        Jammed => "The bolt is jammed.".into(),
        ModuleFault => "The module is not working.".into(),
        DoorAjar => "The door is open. Please close it.".into(),
        DoorForcedOpen => "Alarm. The door has been forced open.".into(),
        // This table's line of the language menu (key: Language::menu_key).
        ChooseLanguage => "For English, press 1.".into(),
        LanguageSet => "The lock now speaks English.".into(),
        UpdateInstalling => "Installing a software update. The lock works as usual meanwhile.".into(),
        UpdateRestarting => "Restarting for a software update.".into(),
        UpdateNotInstalled => "The software update was not installed.".into(),
    }
}
