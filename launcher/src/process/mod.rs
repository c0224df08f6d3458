//! Processes: children of the launcher's behind pidfds ([`child`]) and the signals it
//! takes ([`signals`]).

pub mod child;
pub mod signals;
