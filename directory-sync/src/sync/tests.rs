//! Tests of the sync planner.
