//! Raw flat binaries: the whole file at `--load-addr`, started at `--entry`
//! in the requested mode (real, protected or long; see [`super::x86_setup`]).

use super::layout::{Chunk, Target};
use super::{x86_setup, BootSetup, ImageError, Mode};

/// Loads `bytes` at `load_addr` and prepares `mode`'s state at `entry`.
pub fn load(
    t: &Target<'_>,
    bytes: &[u8],
    load_addr: u64,
    entry: u64,
    mode: Mode,
) -> Result<BootSetup, ImageError> {
    if bytes.is_empty() {
        return Err(ImageError::BadRaw {
            file: t.file.into(),
            reason: "the image is empty".into(),
        });
    }
    let chunk = Chunk {
        what: "raw image".into(),
        addr: load_addr,
        data: bytes,
        memsz: bytes.len() as u64,
    };
    t.check_chunk(&chunk, x86_setup::areas(mode))?;
    match mode {
        Mode::Real => t.check_entry(entry, 1 << 20, "real mode reaches only the first 1 MiB")?,
        Mode::Protected => t.check_entry(entry, 1 << 32, "32-bit protected mode")?,
        Mode::Long => t.check_entry(entry, 1 << 32, "the identity-mapped first 4 GiB")?,
    }
    t.write_chunk(&chunk)?;
    let (regs, sregs) = x86_setup::setup(t, mode, entry)?;
    let description = format!(
        "{}: raw image at {load_addr:#x}..{:#x}, entry {entry:#x}, {mode} mode",
        t.file,
        chunk.end()
    );
    Ok(BootSetup {
        regs,
        sregs,
        description,
        entry,
        mode,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::layout;
    use crate::image::load_raw_bytes;
    use crate::image::testutil;
    use hyperplug_plugin_api::state::cr;

    const RAM: u64 = 16 << 20;

    fn ok(r: Result<BootSetup, ImageError>) -> BootSetup {
        match r {
            Ok(s) => s,
            Err(e) => panic!("load failed: {e}"),
        }
    }

    #[test]
    fn real_mode_image() {
        let mem = testutil::memory(RAM);
        let s = ok(load_raw_bytes(
            &mem,
            RAM,
            "boot.bin",
            &[0xf4; 512],
            0x7c00,
            0x7c00,
            Mode::Real,
        ));
        assert_eq!((s.sregs.cs.selector, s.regs.rip), (0, 0x7c00));
        assert_eq!(s.sregs.cr0 & cr::CR0_PE, 0);
        assert_eq!(testutil::read(&mem, 0x7c00, 512), vec![0xf4; 512]);
        let s = ok(load_raw_bytes(
            &mem,
            RAM,
            "hi.bin",
            &[0x90; 16],
            0x9_0000,
            0x9_1234,
            Mode::Real,
        ));
        assert_eq!(
            (s.sregs.cs.selector, s.sregs.cs.base, s.regs.rip),
            (0x9000, 0x9_0000, 0x1234)
        );
        // Real mode writes nothing, so all of low memory is the image's (the embedded guest sits at 0x8000).
        assert!(load_raw_bytes(
            &mem,
            RAM,
            "low.bin",
            &[1; 0x9000],
            0x1000,
            0x1000,
            Mode::Real
        )
        .is_ok());
        assert_eq!(testutil::read(&mem, 0x1000, 0x9000), vec![1; 0x9000]);
        assert_eq!(
            testutil::u64_at(&mem, layout::GDT_ADDR + 8),
            0x0101_0101_0101_0101,
            "no GDT written"
        );
    }

    #[test]
    fn protected_mode_image() {
        let mem = testutil::memory(RAM);
        let s = ok(load_raw_bytes(
            &mem,
            RAM,
            "p.bin",
            &[0xf4; 8],
            0x10_0000,
            0x10_0004,
            Mode::Protected,
        ));
        assert_eq!(s.regs.rip, 0x10_0004);
        assert_ne!(s.sregs.cr0 & cr::CR0_PE, 0);
        assert_eq!(s.sregs.cr0 & cr::CR0_PG, 0);
        assert_eq!(
            (
                s.sregs.cs.base,
                s.sregs.cs.limit,
                s.sregs.cs.g,
                s.sregs.cs.db
            ),
            (0, 0xffff_ffff, 1, 1)
        );
        assert_eq!(
            testutil::u64_at(&mem, layout::GDT_ADDR + 8),
            0x00cf_9b00_0000_ffff
        );
        assert_eq!(
            testutil::read(&mem, layout::TSS_ADDR + 102, 2),
            vec![0x68, 0]
        );
    }

    #[test]
    fn long_mode_image() {
        let mem = testutil::memory(RAM);
        let s = ok(load_raw_bytes(
            &mem,
            RAM,
            "l.bin",
            &[0xf4; 8],
            0x20_0000,
            0x20_0000,
            Mode::Long,
        ));
        assert_eq!(s.regs.rip, 0x20_0000);
        assert_eq!(s.sregs.efer & cr::EFER_LMA, cr::EFER_LMA);
        assert_ne!(s.sregs.cr4 & cr::CR4_PAE, 0);
        assert_ne!(s.sregs.cr0 & cr::CR0_PG, 0);
        assert_eq!((s.sregs.cs.l, s.sregs.cs.db), (1, 0));
        for va in [0x1234_5678u64, 0x20_0000, 0xfee0_0000, 0xffff_f000] {
            assert_eq!(
                testutil::walk(&mem, s.sregs.cr3, va),
                Some(va),
                "va {va:#x}"
            );
        }
        assert_eq!(testutil::walk(&mem, s.sregs.cr3, 1 << 32), None);
    }

    #[test]
    fn raw_errors_table() {
        // (case, image, load address, entry, mode, expected error)
        type Case<'a> = (&'a str, &'a [u8], u64, u64, Mode, &'a str);
        let cases: &[Case] = &[
            ("empty", b"", 0x10_0000, 0x10_0000, Mode::Protected, "r.bin: bad raw image: the image is empty"),
            (
                "real entry above 1 MiB",
                b"\xf4",
                0x10_0000,
                0x10_0000,
                Mode::Real,
                "r.bin: entry point 0x100000 is not below 0x100000 (real mode reaches only the first 1 MiB)",
            ),
            (
                "over page tables",
                b"\xf4",
                0x3000,
                0x3000,
                Mode::Long,
                "r.bin: raw image at 0x3000+0x1 overlaps the host's page tables at 0x2000..0x8000",
            ),
            (
                "over the stack",
                b"\xf4",
                0x8800,
                0x8800,
                Mode::Protected,
                "r.bin: raw image at 0x8800+0x1 overlaps the host's boot stack at 0x8000..0x9000",
            ),
            (
                "beyond RAM",
                &[0; 16],
                0xff_fff8,
                0xff_fff8,
                Mode::Protected,
                "r.bin: raw image at 0xfffff8+0x10 does not fit in 16 MiB of guest memory",
            ),
            (
                "wraps",
                &[0; 16],
                u64::MAX - 7,
                0x10_0000,
                Mode::Long,
                "r.bin: raw image at 0xfffffffffffffff8+0x10 wraps around the 64-bit address space",
            ),
            (
                "entry outside RAM",
                b"\xf4",
                0x10_0000,
                0x8000_0000,
                Mode::Long,
                "r.bin: entry point 0x80000000 is outside the 16 MiB of guest memory",
            ),
        ];
        for (name, bytes, load, entry, mode, want) in cases {
            let mem = testutil::memory(RAM);
            let got = load_raw_bytes(&mem, RAM, "r.bin", bytes, *load, *entry, *mode)
                .err()
                .map(|e| e.to_string());
            assert_eq!(got.as_deref(), Some(*want), "case {name}");
        }
        // Nothing was written by a refused load.
        let mem = testutil::memory(RAM);
        let r = load_raw_bytes(
            &mem,
            RAM,
            "r.bin",
            &[0xee; 4],
            0x10_0000,
            0x8000_0000,
            Mode::Long,
        );
        assert!(r.is_err());
        assert_eq!(testutil::read(&mem, 0x10_0000, 4), vec![0; 4]);
        assert_eq!(testutil::u64_at(&mem, layout::PML4_ADDR), 0);
    }
}
