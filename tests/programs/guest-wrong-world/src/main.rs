//! Hostile guest: a valid component of the wrong world (a WASI command exporting
//! `wasi:cli/run`). The host must refuse it as "no known mediaflow world".
fn main() {
    println!("I am a command, not a plugin");
}
