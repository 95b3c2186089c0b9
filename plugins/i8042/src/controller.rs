//! The 8042 keyboard controller: status register, command byte, controller
//! commands, output port and the output buffer feeding IRQ 1 / IRQ 12.
//!
//! Source: IBM PS/2 Hardware Interface Technical Reference, "Keyboard and
//! Auxiliary Device Controller" (status register bits, command byte bits,
//! commands 0x20-0xff), and the IBM PC AT Technical Reference ("Keyboard
//! Controller": output port bit 0 = system reset, bit 1 = gate A20; command
//! 0xf0-0xff pulses the output-port bits 3:0 whose command bits are 0).
//!
//! Choices, documented:
//! - The input buffer is consumed at once, so IBF always reads 0.
//! - The output buffer is one byte as on the chip; bytes produced while it
//!   is full wait in a queue behind it (the keyboard or the controller would
//!   wait to send them). Keyboard bytes wait while the keyboard interface is
//!   disabled (command byte bit 4), aux bytes while the aux interface is.
//! - No auxiliary device (mouse) is attached: 0xd4 writes to it are dropped.
//! - Scan-code translation (command byte bit 6) is stored but not applied:
//!   the keyboard only sends protocol replies, which are passed unchanged.
//! - Reads of controller RAM 0x21-0x3f return what was written there.

use crate::keyboard::Keyboard;
use crate::ResetLine;
use std::collections::VecDeque;

/// Status: output buffer full.
pub const ST_OBF: u8 = 0x01;
/// Status: input buffer full.
pub const ST_IBF: u8 = 0x02;
/// Status: system flag (mirrors command byte bit 2).
pub const ST_SYS: u8 = 0x04;
/// Status: last write was to the command port (0x64).
pub const ST_CMD: u8 = 0x08;
/// Status: keyboard not inhibited (keylock switch open).
pub const ST_UNLOCKED: u8 = 0x10;
/// Status: the output buffer holds auxiliary-device data.
pub const ST_AUXB: u8 = 0x20;

/// Command byte: keyboard output-buffer-full interrupt enable.
pub const CB_INT: u8 = 0x01;
/// Command byte: auxiliary output-buffer-full interrupt enable.
pub const CB_INT2: u8 = 0x02;
/// Command byte: system flag.
pub const CB_SYS: u8 = 0x04;
/// Command byte: keyboard interface disabled.
pub const CB_KBD_DISABLED: u8 = 0x10;
/// Command byte: auxiliary interface disabled.
pub const CB_AUX_DISABLED: u8 = 0x20;
/// Command byte: translate scan codes to set 1.
pub const CB_XLATE: u8 = 0x40;

/// The command byte a PC BIOS leaves: translate, system flag, keyboard interrupt.
pub const DEFAULT_COMMAND_BYTE: u8 = CB_XLATE | CB_SYS | CB_INT;
/// Output port as a PC BIOS leaves it: reset line high (bit 0), A20 enabled (bit 1).
pub const DEFAULT_OUTPUT_PORT: u8 = 0x03;
/// Output port bit 0: system reset (active low).
pub const OP_RESET: u8 = 0x01;
/// Output port bit 1: gate A20.
pub const OP_A20: u8 = 0x02;

/// Self-test passed.
pub const SELF_TEST_OK: u8 = 0x55;
/// Interface test passed.
pub const INTERFACE_OK: u8 = 0x00;

/// Who put a byte in the output buffer.
#[repr(u8)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A controller command reply.
    Controller = 0,
    /// The keyboard (or 0xd2).
    Keyboard = 1,
    /// The auxiliary device (or 0xd3).
    Aux = 2,
}

impl Source {
    /// From the saved byte.
    pub fn from_u8(b: u8) -> Option<Self> {
        match b {
            0 => Some(Self::Controller),
            1 => Some(Self::Keyboard),
            2 => Some(Self::Aux),
            _ => None,
        }
    }
}

/// The most bytes kept waiting behind the output buffer; more are dropped
/// (a guest that never reads cannot grow the queue without bound).
pub const QUEUE_LIMIT: usize = 64;

/// Controller state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Controller {
    /// Controller RAM 0x00-0x1f; byte 0 is the command byte.
    pub ram: [u8; 32],
    /// Output port.
    pub output_port: u8,
    /// Last write went to 0x64.
    pub last_was_command: bool,
    /// Controller command awaiting its data byte on 0x60 (0 = none).
    pub pending: u8,
    /// Output buffer.
    pub obuf: Option<(u8, Source)>,
    /// The byte last read from the output buffer.
    pub last_data: u8,
    /// Bytes waiting to enter the output buffer.
    pub queue: VecDeque<(u8, Source)>,
    /// The keyboard.
    pub keyboard: Keyboard,
}

impl Default for Controller {
    fn default() -> Self {
        let mut ram = [0u8; 32];
        ram[0] = DEFAULT_COMMAND_BYTE;
        Self {
            ram,
            output_port: DEFAULT_OUTPUT_PORT,
            last_was_command: false,
            pending: 0,
            obuf: None,
            last_data: 0,
            queue: VecDeque::new(),
            keyboard: Keyboard::default(),
        }
    }
}

impl Controller {
    /// The command byte.
    pub fn command_byte(&self) -> u8 {
        self.ram[0]
    }

    /// The status register (port 0x64 read).
    pub fn status(&self) -> u8 {
        let mut s = ST_UNLOCKED;
        if let Some((_, src)) = self.obuf {
            s |= ST_OBF;
            if src == Source::Aux {
                s |= ST_AUXB;
            }
        }
        if self.command_byte() & CB_SYS != 0 {
            s |= ST_SYS;
        }
        if self.last_was_command {
            s |= ST_CMD;
        }
        s
    }

    /// The levels (IRQ 1, IRQ 12) the output buffer drives.
    pub fn irq_levels(&self) -> (bool, bool) {
        let cb = self.command_byte();
        match self.obuf {
            Some((_, Source::Aux)) => (false, cb & CB_INT2 != 0),
            Some(_) => (cb & CB_INT != 0, false),
            None => (false, false),
        }
    }

    /// Queues a byte for the output buffer.
    pub fn push(&mut self, b: u8, src: Source) {
        if self.queue.len() < QUEUE_LIMIT {
            self.queue.push_back((b, src));
        }
        self.refill();
    }

    /// Moves the first deliverable waiting byte into an empty output buffer.
    pub fn refill(&mut self) {
        if self.obuf.is_some() {
            return;
        }
        let cb = self.command_byte();
        let ready = |src: Source| match src {
            Source::Controller => true,
            Source::Keyboard => cb & CB_KBD_DISABLED == 0,
            Source::Aux => cb & CB_AUX_DISABLED == 0,
        };
        if let Some(pos) = self.queue.iter().position(|(_, s)| ready(*s)) {
            self.obuf = self.queue.remove(pos);
        }
    }

    /// A read of port 0x60: takes the output buffer (the last byte again if
    /// it is empty, as the chip's data register keeps its value).
    pub fn read_data(&mut self) -> u8 {
        match self.obuf.take() {
            Some((b, _)) => {
                self.last_data = b;
                b
            }
            None => self.last_data,
        }
    }

    /// A write of port 0x60.
    pub fn write_data(&mut self, b: u8, reset: &mut dyn ResetLine) {
        self.last_was_command = false;
        match std::mem::take(&mut self.pending) {
            0 => {
                for r in self.keyboard.command(b) {
                    self.push(r, Source::Keyboard);
                }
            }
            p @ 0x60..=0x7f => {
                self.ram[usize::from(p & 0x1f)] = b;
                self.refill();
            }
            0xd1 => self.write_output_port(b, reset),
            0xd2 => self.push(b, Source::Keyboard),
            0xd3 => self.push(b, Source::Aux),
            // 0xd4: no auxiliary device attached; the byte goes nowhere.
            _ => {}
        }
    }

    /// A write of port 0x64: a controller command.
    pub fn write_command(&mut self, c: u8, reset: &mut dyn ResetLine) {
        self.last_was_command = true;
        self.pending = 0;
        match c {
            0x20..=0x3f => {
                let v = self.ram[usize::from(c & 0x1f)];
                self.push(v, Source::Controller);
            }
            0x60..=0x7f => self.pending = c,
            0xa7 => self.ram[0] |= CB_AUX_DISABLED,
            0xa8 => {
                self.ram[0] &= !CB_AUX_DISABLED;
                self.refill();
            }
            0xa9 | 0xab => self.push(INTERFACE_OK, Source::Controller),
            0xaa => {
                // A passed self-test sets the system flag.
                self.ram[0] |= CB_SYS;
                self.push(SELF_TEST_OK, Source::Controller);
            }
            0xad => self.ram[0] |= CB_KBD_DISABLED,
            0xae => {
                self.ram[0] &= !CB_KBD_DISABLED;
                self.refill();
            }
            0xd0 => {
                let v = self.output_port_value();
                self.push(v, Source::Controller);
            }
            0xd1..=0xd4 => self.pending = c,
            0xdd => self.output_port &= !OP_A20,
            0xdf => self.output_port |= OP_A20,
            0xe0 => self.push(0x00, Source::Controller),
            // 0xf0-0xff: bits 3:0 clear = pulse that output-port line; bit 0 is reset.
            0xf0..=0xff if c & OP_RESET == 0 => reset.pulse(c),
            _ => {}
        }
    }

    /// The output port as read by 0xd0: bit 4 = keyboard OBF, bit 5 = aux OBF.
    pub fn output_port_value(&self) -> u8 {
        let mut v = self.output_port & !0x30;
        match self.obuf {
            Some((_, Source::Aux)) => v |= 0x20,
            Some(_) => v |= 0x10,
            None => {}
        }
        v
    }

    fn write_output_port(&mut self, b: u8, reset: &mut dyn ResetLine) {
        self.output_port = b & !0x30;
        if b & OP_RESET == 0 {
            reset.output_port_reset(b);
            // The reset line is pulsed: the chip comes back with it high.
            self.output_port |= OP_RESET;
        }
    }

    /// Whether output-port bit 1 (gate A20) is set.
    pub fn a20_enabled(&self) -> bool {
        self.output_port & OP_A20 != 0
    }
}
