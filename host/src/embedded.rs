//! The embedded default guest, assembled at build time by `build.rs` from
//! `host/guest/` (real mode -> protected mode -> long mode, prints one line
//! naming the backend over COM1, then powers off through ACPI S5).

/// Guest-physical address the embedded image is loaded at.
pub const LOAD_ADDR: u64 = 0x8000;

/// Real-mode entry point: the host starts the vCPU at CS=0, IP=`ENTRY`.
pub const ENTRY: u64 = 0x8000;

/// Guest-physical address where the host writes the backend name
/// (NUL-terminated ASCII, at most 63 bytes plus the NUL) before start.
pub const BACKEND_NAME_ADDR: u64 = 0x7e00;

/// Longest backend name the guest prints, excluding the NUL terminator.
pub const BACKEND_NAME_MAX: usize = 63;

// The name slot (name + NUL) must end before the image starts.
const _: () = assert!(BACKEND_NAME_ADDR + (BACKEND_NAME_MAX as u64) < LOAD_ADDR);

/// The flat binary image of the embedded guest.
static IMAGE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/embedded_guest.bin"));

/// Returns the embedded guest image (load it at [`LOAD_ADDR`]).
pub fn image() -> &'static [u8] {
    IMAGE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_fits_below_page_tables_and_names_every_mode() {
        let img = image();
        assert!(!img.is_empty());
        // The guest builds its page tables at 0x10000; the image must end before.
        assert!(
            LOAD_ADDR + img.len() as u64 <= 0x10000,
            "image is {} bytes",
            img.len()
        );
        let text = String::from_utf8_lossy(img);
        let real = text.find("real mode").expect("real mode message");
        let prot = text.find("protected mode").expect("protected mode message");
        let long = text.find("long mode").expect("long mode message");
        assert!(real < prot && prot < long, "messages out of order");
    }
}
