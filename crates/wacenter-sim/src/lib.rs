//! Simulators: `otomax` (the OtomaX Open API with resellers, commands, outbox callbacks and fault
//! knobs) and `whatsapp` (a GOWA-compatible gateway). Both expose the same inspection API under
//! `/_sim/` (spec §6) so tests, the demo and the benchmark can see what arrived and when.

pub mod demo;
pub mod inspect;
pub mod otomax;
pub mod whatsapp;
