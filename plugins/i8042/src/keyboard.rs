//! The PS/2 (AT) keyboard behind the controller, as far as its command
//! protocol goes: it answers host commands but has no keys to press.
//!
//! IBM PS/2 Hardware Interface Technical Reference, "Keyboard and Auxiliary
//! Device Controller" / "Keyboard Commands": every command but Echo (0xee)
//! and Resend (0xfe) is acknowledged with 0xfa; Reset (0xff) answers
//! 0xfa then the BAT completion code 0xaa; Read ID (0xf2) answers 0xfa,
//! 0xab, 0x83; commands with a parameter byte (0xed LEDs, 0xf0 scan-code
//! set, 0xf3 typematic) acknowledge the command and the parameter; an
//! unknown command is answered with Resend (0xfe).

/// Acknowledge.
pub const ACK: u8 = 0xfa;
/// Basic assurance test passed.
pub const BAT_OK: u8 = 0xaa;
/// Resend / unknown command.
pub const RESEND: u8 = 0xfe;
/// Echo reply.
pub const ECHO: u8 = 0xee;
/// The keyboard ID (MF2 keyboard), untranslated.
pub const ID: [u8; 2] = [0xab, 0x83];

/// Default typematic byte (10.9 cps, 500 ms delay).
pub const DEFAULT_TYPEMATIC: u8 = 0x2b;

/// Keyboard state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keyboard {
    /// Scanning enabled (0xf4) or disabled (0xf5).
    pub scanning: bool,
    /// Scan-code set 1-3.
    pub scancode_set: u8,
    /// LED bits (0xed).
    pub leds: u8,
    /// Typematic rate/delay (0xf3).
    pub typematic: u8,
    /// The command waiting for its parameter byte (0 = none).
    pub expect: u8,
    /// The last byte sent, for Resend.
    pub last_sent: u8,
}

impl Default for Keyboard {
    fn default() -> Self {
        Self {
            scanning: true,
            scancode_set: 2,
            leds: 0,
            typematic: DEFAULT_TYPEMATIC,
            expect: 0,
            last_sent: 0,
        }
    }
}

impl Keyboard {
    /// Handles a byte from the host; returns the bytes the keyboard sends back.
    pub fn command(&mut self, b: u8) -> Vec<u8> {
        let out = match std::mem::take(&mut self.expect) {
            0 => self.new_command(b),
            pending => self.parameter(pending, b),
        };
        if let Some(last) = out.last() {
            self.last_sent = *last;
        }
        out
    }

    fn new_command(&mut self, b: u8) -> Vec<u8> {
        match b {
            0xed | 0xf3 => {
                self.expect = b;
                vec![ACK]
            }
            0xf0 => {
                self.expect = b;
                vec![ACK]
            }
            ECHO => vec![ECHO],
            0xf2 => vec![ACK, ID[0], ID[1]],
            0xf4 => {
                self.scanning = true;
                vec![ACK]
            }
            0xf5 => {
                self.set_defaults();
                self.scanning = false;
                vec![ACK]
            }
            0xf6 => {
                self.set_defaults();
                vec![ACK]
            }
            0xf7..=0xfd => vec![ACK],
            0xfe => vec![self.last_sent],
            0xff => {
                *self = Self::default();
                vec![ACK, BAT_OK]
            }
            _ => vec![RESEND],
        }
    }

    fn parameter(&mut self, cmd: u8, b: u8) -> Vec<u8> {
        match cmd {
            0xed => self.leds = b & 0x07,
            0xf3 => self.typematic = b & 0x7f,
            // 0xf0: parameter 0 reads the current set; 1-3 select one.
            _ => match b {
                0 => return vec![ACK, self.scancode_set],
                1..=3 => self.scancode_set = b,
                _ => return vec![RESEND],
            },
        }
        vec![ACK]
    }

    fn set_defaults(&mut self) {
        self.scancode_set = 2;
        self.typematic = DEFAULT_TYPEMATIC;
        self.leds = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_replies() {
        // (byte sequence sent, replies expected per byte)
        let cases: &[(&[u8], &[&[u8]])] = &[
            (&[0xff], &[&[0xfa, 0xaa]]),
            (&[0xf2], &[&[0xfa, 0xab, 0x83]]),
            (&[0xee], &[&[0xee]]),
            (&[0xed, 0x07], &[&[0xfa], &[0xfa]]),
            (&[0xf0, 0x00], &[&[0xfa], &[0xfa, 0x02]]),
            (
                &[0xf0, 0x01, 0xf0, 0x00],
                &[&[0xfa], &[0xfa], &[0xfa], &[0xfa, 0x01]],
            ),
            (&[0xf0, 0x09], &[&[0xfa], &[0xfe]]),
            (&[0xf4, 0xfe], &[&[0xfa], &[0xfa]]),
            (&[0x12], &[&[0xfe]]),
        ];
        for (bytes, want) in cases {
            let mut k = Keyboard::default();
            for (b, w) in bytes.iter().zip(want.iter()) {
                assert_eq!(k.command(*b), w.to_vec(), "{bytes:x?} at {b:#x}");
            }
        }
    }

    #[test]
    fn state_changes() {
        let mut k = Keyboard::default();
        k.command(0xf5);
        assert!(!k.scanning);
        k.command(0xed);
        k.command(0xff);
        assert_eq!(k.leds, 0x07);
        k.command(0xf3);
        k.command(0x00);
        assert_eq!(k.typematic, 0);
        k.command(0xff);
        let fresh = Keyboard {
            last_sent: BAT_OK,
            ..Keyboard::default()
        };
        assert_eq!(k, fresh);
    }
}
