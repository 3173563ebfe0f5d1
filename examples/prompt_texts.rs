//! Prints every voice prompt asset as `name<TAB>English text`, one a line.
//! `scripts/gen-prompts.sh` records them with espeak-ng.
fn main() {
    for (name, text) in latchd::board::drivers::prompts::asset_texts() {
        println!("{name}\t{text}");
    }
}
