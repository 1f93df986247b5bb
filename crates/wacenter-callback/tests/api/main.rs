//! The callback service's HTTP API against a real nats-server and the OtomaX simulator: every
//! route, its failures, authentication, health, bad input, and the OpenAPI document.

mod auth;
mod callback;
mod console;
mod harness;
mod health;
mod hostile;
mod inputs;
mod openapi;
mod otomax_routes;
