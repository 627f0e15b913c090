//! A local Microsoft identity platform + Graph v1.0 emulator: the tenant every
//! test, example, demo and benchmark of the archiver runs against on 127.0.0.1.

mod graph;
mod tenant;
