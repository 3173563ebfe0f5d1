//! Prints every voice prompt asset of every language as
//! `language<TAB>espeak-ng voice<TAB>name<TAB>text`, one a line, from the
//! tables in `core::lang`. `scripts/gen-prompts.sh` records them.
use latchd::core::Language;

fn main() {
    for lang in Language::ALL {
        for (name, text) in latchd::board::drivers::prompts::asset_texts(lang) {
            println!("{}\t{}\t{name}\t{text}", lang.tag(), lang.espeak_voice());
        }
    }
}
