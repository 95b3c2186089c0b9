//! Multiboot (v1, specification 0.6.96) header encoding and lookup.

/// Header magic (spec 3.1.2).
pub const HEADER_MAGIC: u32 = 0x1bad_b002;
/// Value a compliant loader leaves in EAX (spec 3.2).
pub const BOOTLOADER_MAGIC: u32 = 0x2bad_b002;
/// The header must lie within the first 8192 bytes of the file (spec 3.1.1).
pub const SEARCH_LIMIT: usize = 8192;
/// ... and be 32-bit aligned (spec 3.1.1).
pub const HEADER_ALIGN: usize = 4;
/// Header flag bit 0: align modules on 4 KiB pages.
pub const FLAG_PAGE_ALIGN: u32 = 1 << 0;
/// Header flag bit 1: the loader must fill mem_lower/mem_upper.
pub const FLAG_MEMORY_INFO: u32 = 1 << 1;
/// Header flag bit 16: the address fields at offsets 12..32 are valid.
pub const FLAG_ADDRESS: u32 = 1 << 16;
/// Size of a header with the address fields (8 dwords).
pub const HEADER_LEN: usize = 32;

/// Info-structure flag bit 0: mem_lower/mem_upper are valid (spec 3.3).
pub const INFO_MEM: u32 = 1 << 0;
/// Info-structure flag bit 2: cmdline is valid.
pub const INFO_CMDLINE: u32 = 1 << 2;
/// Info-structure offset of `flags`.
pub const INFO_FLAGS_OFF: u32 = 0;
/// Info-structure offset of `mem_lower` (KiB from 0).
pub const INFO_MEM_LOWER_OFF: u32 = 4;
/// Info-structure offset of `mem_upper` (KiB from 1 MiB).
pub const INFO_MEM_UPPER_OFF: u32 = 8;
/// Info-structure offset of `cmdline` (physical address of a C string).
pub const INFO_CMDLINE_OFF: u32 = 16;

/// A multiboot v1 header with the flag-16 address fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Feature flags (bits 0-15 required, 16-31 optional).
    pub flags: u32,
    /// Physical address the header itself is loaded at.
    pub header_addr: u32,
    /// Physical address of the start of the text segment (file offset of
    /// `header_addr` minus `header_addr - load_addr`).
    pub load_addr: u32,
    /// Physical end of the data to load; 0 means "to the end of the file".
    pub load_end_addr: u32,
    /// Physical end of the bss (zeroed by the loader); 0 means no bss.
    pub bss_end_addr: u32,
    /// Physical address to jump to.
    pub entry_addr: u32,
}

/// The checksum that makes `magic + flags + checksum == 0` (mod 2^32).
pub fn checksum(flags: u32) -> u32 {
    0u32.wrapping_sub(HEADER_MAGIC).wrapping_sub(flags)
}

fn dword(bytes: &[u8], off: usize) -> Option<u32> {
    let b = bytes.get(off..off + 4)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

impl Header {
    /// The 32 header bytes: magic, flags, checksum, then the address fields.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let fields = [
            HEADER_MAGIC,
            self.flags,
            checksum(self.flags),
            self.header_addr,
            self.load_addr,
            self.load_end_addr,
            self.bss_end_addr,
            self.entry_addr,
        ];
        let mut out = [0u8; HEADER_LEN];
        for (chunk, f) in out.chunks_exact_mut(4).zip(fields) {
            chunk.copy_from_slice(&f.to_le_bytes());
        }
        out
    }

    /// Finds the header in `image` as a loader would: the first 4-byte
    /// aligned magic within the first 8 KiB. Returns its file offset, or a
    /// one-line error (missing, bad checksum, truncated, no address fields).
    pub fn find(image: &[u8]) -> Result<(usize, Header), String> {
        let limit = image.len().min(SEARCH_LIMIT);
        let off = (0..limit.saturating_sub(3))
            .step_by(HEADER_ALIGN)
            .find(|&o| dword(image, o) == Some(HEADER_MAGIC))
            .ok_or("no multiboot header in the first 8 KiB")?;
        let flags = dword(image, off + 4).ok_or("multiboot header truncated")?;
        let sum = dword(image, off + 8).ok_or("multiboot header truncated")?;
        if HEADER_MAGIC.wrapping_add(flags).wrapping_add(sum) != 0 {
            return Err(format!(
                "multiboot header at {off:#x}: bad checksum {sum:#x}"
            ));
        }
        if flags & FLAG_ADDRESS == 0 {
            return Err(format!(
                "multiboot header at {off:#x}: no address fields (flag 16 clear)"
            ));
        }
        let f = |i: usize| dword(image, off + 12 + 4 * i).ok_or("multiboot header truncated");
        let header = Header {
            flags,
            header_addr: f(0)?,
            load_addr: f(1)?,
            load_end_addr: f(2)?,
            bss_end_addr: f(3)?,
            entry_addr: f(4)?,
        };
        Ok((off, header))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_table() {
        for flags in [
            0,
            FLAG_MEMORY_INFO,
            FLAG_ADDRESS | FLAG_MEMORY_INFO,
            u32::MAX,
        ] {
            assert_eq!(
                HEADER_MAGIC
                    .wrapping_add(flags)
                    .wrapping_add(checksum(flags)),
                0,
                "flags {flags:#x}"
            );
        }
        // Known value: flags 0x00010003 (common in tutorials' kernels).
        assert_eq!(checksum(0x0001_0003), 0xe4514ffb);
    }

    #[test]
    fn round_trip_and_rejects() {
        let h = Header {
            flags: FLAG_ADDRESS | FLAG_MEMORY_INFO,
            header_addr: 0x10_0004,
            load_addr: 0x10_0000,
            load_end_addr: 0,
            bss_end_addr: 0,
            entry_addr: 0x10_0040,
        };
        let mut img = vec![0u8; 4];
        img.extend_from_slice(&h.to_bytes());
        assert_eq!(Header::find(&img), Ok((4, h)));

        let mut bad = img.clone();
        bad[12] ^= 1; // corrupt the checksum
        assert!(Header::find(&bad)
            .expect_err("bad sum")
            .contains("checksum"));

        let mut late = vec![0u8; SEARCH_LIMIT];
        late.extend_from_slice(&h.to_bytes());
        assert!(
            Header::find(&late).is_err(),
            "header past 8 KiB must not be found"
        );

        let mut unaligned = vec![0u8; 2];
        unaligned.extend_from_slice(&h.to_bytes());
        assert!(
            Header::find(&unaligned).is_err(),
            "unaligned header must not be found"
        );

        assert!(Header::find(&img[..20])
            .expect_err("short")
            .contains("truncated"));
    }
}
