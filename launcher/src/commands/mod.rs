//! The commands of `cradle`, one file each (`configfile` and `cli` beside them).

pub mod attach;
pub mod autostart;
pub mod create;
pub mod detach;
pub mod exec;
pub mod run;
pub mod set;
pub mod start;
pub mod status;
pub mod stop;
