//! Hostile input: what a careless policy author, a stolen low-trust edge key
//! or a broken client can send, against real processes on loopback.
//!
//! Each case is a regression test for a defect a hostile-input probe found
//! (issue 16). A case passes when the process answers with a clear error or
//! ignores the input, keeps serving everyone else and loses nothing.

mod control_plane;
mod edge;
