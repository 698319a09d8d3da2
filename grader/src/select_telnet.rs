//! Checks of the select_telnet lab.

use crate::check::Check;

pub fn checks() -> Vec<Check> {
    Vec::new()
}
