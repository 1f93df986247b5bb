//! End-to-end tests: the `wacenter` binary as operators use it, and the whole pipeline (a real
//! nats-server per test, the four services, both simulators) as users see it.

mod chaos;
mod cli;
mod cluster;
mod contract;
mod lifecycle;
mod pipeline;
mod replies;
mod routing;
mod secrets;
mod stack;
mod traces;
mod trail;
