//! The fw_cfg DMA interface (QEMU docs/specs/fw_cfg.rst, "DMA interface").
//!
//! The guest writes the guest-physical address of a `FWCfgDmaAccess`
//! {be32 control; be32 length; be64 address} to the big-endian DMA address
//! register (x86: port 0x514, high half first; writing the low half at 0x518
//! starts the transfer). Control bits: 0x01 error, 0x02 read, 0x04 skip,
//! 0x08 select (key in bits 31:16), 0x10 write. When done the device writes
//! the control field back as 0, or with only the error bit set. Reading the
//! address register gives the signature "QEMU CFG".
//!
//! Choices, documented: select happens first; then read, else write, else
//! skip (one operation per descriptor). There are no writable items, so a
//! write sets the error bit. A read past the item's end fills zeros, as
//! data-port reads do.

/// Control: error.
pub const DMA_ERROR: u32 = 0x01;
/// Control: read.
pub const DMA_READ: u32 = 0x02;
/// Control: skip.
pub const DMA_SKIP: u32 = 0x04;
/// Control: select the key in bits 31:16 first.
pub const DMA_SELECT: u32 = 0x08;
/// Control: write.
pub const DMA_WRITE: u32 = 0x10;
/// What reading the DMA address register gives.
pub const DMA_SIGNATURE: [u8; 8] = *b"QEMU CFG";
/// Size of a `FWCfgDmaAccess`.
pub const DESCRIPTOR_LEN: usize = 16;

/// A decoded `FWCfgDmaAccess`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Descriptor {
    /// Control bits.
    pub control: u32,
    /// Bytes to transfer.
    pub length: u32,
    /// Guest-physical buffer address.
    pub address: u64,
}

impl Descriptor {
    /// Decodes the 16 big-endian bytes.
    pub fn parse(b: &[u8; DESCRIPTOR_LEN]) -> Self {
        let mut c = [0u8; 4];
        let mut l = [0u8; 4];
        let mut a = [0u8; 8];
        c.copy_from_slice(&b[0..4]);
        l.copy_from_slice(&b[4..8]);
        a.copy_from_slice(&b[8..16]);
        Self {
            control: u32::from_be_bytes(c),
            length: u32::from_be_bytes(l),
            address: u64::from_be_bytes(a),
        }
    }
}
