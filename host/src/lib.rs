//! Hyperplug host core (the `kvm.ko` of the project): CPU detection, plugin
//! loading, memory slots, the device bus, the vCPU run loop and image loaders.
//!
//! The binary `hyperplug` is a thin CLI over this library; the integration
//! tests drive the same API.

pub mod a20;
pub mod apic;
pub mod apic_bus;
pub mod boot;
pub mod bus;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod cpu;
pub mod dump;
pub mod embedded;
pub mod engine_npt;
pub mod engine_service;
pub mod error;
pub mod firmware;
pub mod image;
pub mod intr;
pub mod memory;
pub mod outcome;
pub mod platform;
pub mod plugin;
pub mod power;
pub mod run;
pub mod select;
pub mod services;
pub mod size;
pub mod stop;
pub mod turns;
pub mod vcpu_loop;
mod vcpu_turn;

pub use error::{Error, Result};
