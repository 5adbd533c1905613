//! Small helpers that layers which must not import each other all need: time
//! formatting and clocks, the executor that keeps hyper's tasks on the
//! worker's thread, and the published-value cell the two planes meet in.
//! Nothing here knows about requests, snapshots or workers.

pub(crate) mod deadline;
pub(crate) mod exec;
pub(crate) mod published;
pub(crate) mod time;
