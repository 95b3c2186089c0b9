//! The UART core: vm-superio's `Serial` plus the host-side receive queue.

use crate::input::InputQueue;
use crate::irq::IrqTrigger;
use crate::output::SharedOutput;
use hyperplug_plugin_api::backend::LogLevel;
use hyperplug_plugin_api::device::HostServices;
use hyperplug_plugin_api::PluginError;
use std::sync::{Arc, Mutex, MutexGuard};
use vm_superio::serial::{Error as SerialError, NoEvents};
use vm_superio::{Serial, SerialState};

/// Modem Control Register offset (PC16550D datasheet, register summary).
pub const MCR_OFFSET: u8 = 4;
/// MCR bit 4: loopback mode (PC16550D datasheet, MCR description).
pub const MCR_LOOP: u8 = 1 << 4;

/// vm-superio's 16550A with our trigger and output.
type Chip = Serial<IrqTrigger, NoEvents, SharedOutput>;

/// The state shared between the device (vCPU thread) and the input waker
/// (stdin reader thread).
pub struct UartCore {
    chip: Chip,
    trigger: IrqTrigger,
    output: SharedOutput,
    input: Arc<InputQueue>,
    host: HostServices,
    output_error_logged: bool,
}

/// Locks a core, recovering from a poisoned lock (the state is plain bytes).
pub fn lock(core: &Mutex<UartCore>) -> MutexGuard<'_, UartCore> {
    match core.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

impl UartCore {
    /// A UART in its power-on state.
    pub fn new(host: HostServices, irq: u32, output: SharedOutput, input: Arc<InputQueue>) -> Self {
        let trigger = IrqTrigger::new(host.clone(), irq);
        let chip = Serial::new(trigger.clone(), output.clone());
        Self {
            chip,
            trigger,
            output,
            input,
            host,
            output_error_logged: false,
        }
    }

    /// Moves queued input into the receive FIFO as far as it has room.
    /// vm-superio raises the receive-data interrupt if the guest enabled it.
    pub fn pump_input(&mut self) {
        // In loopback mode vm-superio silently drops enqueued bytes; keep them
        // queued until the guest leaves loopback.
        if self.chip.read(MCR_OFFSET) & MCR_LOOP != 0 {
            return;
        }
        let room = self.chip.fifo_capacity();
        if room == 0 {
            return;
        }
        let bytes = self.input.take(room);
        if bytes.is_empty() {
            return;
        }
        // `room` bytes fit, and the trigger cannot fail, so this cannot error.
        if let Err(e) = self.chip.enqueue_raw_bytes(&bytes) {
            self.host.log(
                LogLevel::Warn,
                format!("serial: dropped {} input bytes: {e}", bytes.len())
                    .as_str()
                    .into(),
            );
        }
    }

    /// A guest read of register `offset` (0..=7).
    pub fn read(&mut self, offset: u8) -> u8 {
        self.pump_input();
        self.chip.read(offset)
    }

    /// A guest write of `value` to register `offset` (0..=7).
    pub fn write(&mut self, offset: u8, value: u8) {
        match self.chip.write(offset, value) {
            Ok(()) => {}
            Err(SerialError::IOError(e)) => {
                if !self.output_error_logged {
                    self.output_error_logged = true;
                    self.host.log(
                        LogLevel::Warn,
                        format!("serial: output failed, bytes are being lost: {e}")
                            .as_str()
                            .into(),
                    );
                }
            }
            Err(e) => self.host.log(
                LogLevel::Warn,
                format!("serial: register write failed: {e}")
                    .as_str()
                    .into(),
            ),
        }
    }

    /// The chip's registers and receive FIFO.
    pub fn state(&self) -> SerialState {
        self.chip.state()
    }

    /// Replaces the chip with one built from `state` (keeps output and input).
    pub fn load(&mut self, state: &SerialState) -> Result<(), PluginError> {
        let chip = Serial::from_state(state, self.trigger.clone(), NoEvents, self.output.clone())
            .map_err(|e| PluginError::invalid(format!("serial state rejected: {e}")))?;
        self.chip = chip;
        Ok(())
    }
}
