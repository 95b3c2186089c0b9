//! Hyperplug device plugin: a 16550A UART (COM port) built on vm-superio.
//!
//! Options: `port` (default 0x3f8, 8 ports), `irq` (default 4), `path`
//! (output file, default stdout), `input` (`stdin` or `none`, default stdin).
//! Guest output is flushed byte by byte. Host stdin is read by a background
//! thread into a queue that feeds the receive FIFO whenever the guest touches
//! a register and whenever input arrives.

pub mod input;
pub mod irq;
pub mod options;
pub mod output;
pub mod state;
pub mod uart;

#[cfg(test)]
mod test_host;
#[cfg(test)]
mod tests;

use hyperplug_plugin_api::device::{AddressSpace, Device, DeviceState, HostServices, IoRange};
use hyperplug_plugin_api::{DeviceConfig, PluginError};
use input::{InputQueue, StdinClaim};
use options::{InputSource, SerialOptions, PORT_COUNT};
use output::SharedOutput;
use std::sync::{Arc, Mutex};
use uart::{lock, UartCore};

/// What an unclaimed byte of a wider access reads as (an undriven ISA bus).
const OPEN_BUS: u8 = 0xff;

/// The serial device: a 16550A at `port..port+8` raising `irq`.
pub struct SerialDevice {
    core: Arc<Mutex<UartCore>>,
    options: SerialOptions,
    input: Arc<InputQueue>,
    _stdin: Option<StdinClaim>,
}

impl SerialDevice {
    /// Builds a device writing to `output`; with `input=stdin` it claims host stdin.
    pub fn with_output(
        options: SerialOptions,
        host: HostServices,
        output: SharedOutput,
    ) -> Result<Self, PluginError> {
        let (stdin, input) = match options.input {
            InputSource::Stdin => {
                let claim = StdinClaim::acquire().map_err(PluginError::invalid)?;
                let q = claim.queue();
                (Some(claim), q)
            }
            InputSource::None => (None, InputQueue::new()),
        };
        let core = Arc::new(Mutex::new(UartCore::new(
            host,
            options.irq,
            output,
            input.clone(),
        )));
        let weak = Arc::downgrade(&core);
        input.set_waker(Some(Arc::new(move || {
            if let Some(core) = weak.upgrade() {
                lock(&core).pump_input();
            }
        })));
        Ok(Self {
            core,
            options,
            input,
            _stdin: stdin,
        })
    }

    /// The queue that feeds the receiver (the stdin thread's queue with `input=stdin`).
    pub fn input_queue(&self) -> Arc<InputQueue> {
        self.input.clone()
    }

    /// Register offset of `addr`, if it is one of this UART's ports.
    fn offset(&self, addr: u64) -> Option<u8> {
        let base = u64::from(self.options.port);
        let off = addr.checked_sub(base)?;
        (off < u64::from(PORT_COUNT)).then_some(off as u8)
    }
}

impl Drop for SerialDevice {
    fn drop(&mut self) {
        self.input.set_waker(None);
    }
}

impl Device for SerialDevice {
    const NAME: &'static str = "serial";
    const DESCRIPTION: &'static str = "16550A UART (vm-superio) on a COM port, console on stdout";
    const OPTIONS_HELP: &'static str = options::HELP;

    fn create(config: &DeviceConfig, host: HostServices) -> Result<Self, PluginError> {
        let options = SerialOptions::parse(config)?;
        let output = match &options.path {
            None => SharedOutput::stdout(),
            Some(p) => SharedOutput::file(p).map_err(PluginError::os)?,
        };
        Self::with_output(options, host, output)
    }

    fn io_ranges(&self) -> Vec<IoRange> {
        vec![IoRange::pio(self.options.port, PORT_COUNT)]
    }

    /// The UART is byte-wide: a wider access is split into byte accesses at
    /// consecutive ports, as the ISA bus does.
    fn read(&mut self, space: AddressSpace, addr: u64, data: &mut [u8]) {
        let mut core = lock(&self.core);
        for (i, b) in data.iter_mut().enumerate() {
            let off = (space == AddressSpace::Pio)
                .then(|| self.offset(addr.wrapping_add(i as u64)))
                .flatten();
            *b = match off {
                Some(off) => core.read(off),
                None => OPEN_BUS,
            };
        }
    }

    fn write(&mut self, space: AddressSpace, addr: u64, data: &[u8]) {
        if space != AddressSpace::Pio {
            return;
        }
        let mut core = lock(&self.core);
        for (i, &b) in data.iter().enumerate() {
            if let Some(off) = self.offset(addr.wrapping_add(i as u64)) {
                core.write(off, b);
            }
        }
    }

    fn reset(&mut self) {
        // The default state has an empty FIFO and nothing pending: it always loads.
        let _ = lock(&self.core).load(&vm_superio::SerialState::default());
    }

    fn save(&self) -> Result<DeviceState, PluginError> {
        let s = lock(&self.core).state();
        Ok(DeviceState {
            version: state::STATE_VERSION,
            data: state::encode(&s).into(),
        })
    }

    fn restore(&mut self, saved: &DeviceState) -> Result<(), PluginError> {
        let s = state::decode(saved.version, saved.data.as_slice())?;
        lock(&self.core).load(&s)
    }
}

hyperplug_plugin_api::export_device!(SerialDevice);
