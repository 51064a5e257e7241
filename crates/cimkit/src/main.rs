//! The cimkit command.

fn main() {
    println!("cimkit");
}
