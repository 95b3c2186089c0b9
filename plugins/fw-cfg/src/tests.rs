//! Register-level tests of fw_cfg with a recording host.

use crate::dma::*;
use crate::items::*;
use crate::{FwCfg, STATE_LEN, STATE_VERSION};
use hyperplug_plugin_api::device::{AddressSpace, Device, DeviceState, MachineInfo};
use hyperplug_plugin_api::testing::RecordingHost;
use hyperplug_plugin_api::DeviceConfig;

const GIB: u64 = 1 << 30;

fn device_with(opts: &str, info: MachineInfo) -> (FwCfg, RecordingHost) {
    let host = RecordingHost::new();
    host.record().info = info;
    let d = FwCfg::create(&DeviceConfig::parse(opts), host.services()).unwrap();
    (d, host)
}

fn six_gib() -> MachineInfo {
    MachineInfo {
        ram_bytes: 6 * GIB,
        low_ram_bytes: 3 * GIB,
        cpus: 4,
    }
}

fn select(d: &mut FwCfg, key: u16) {
    d.write(AddressSpace::Pio, 0x510, &key.to_le_bytes());
}

fn read(d: &mut FwCfg, n: usize) -> Vec<u8> {
    (0..n)
        .map(|_| {
            let mut b = [0u8];
            d.read(AddressSpace::Pio, 0x511, &mut b);
            b[0]
        })
        .collect()
}

fn item(d: &mut FwCfg, key: u16, n: usize) -> Vec<u8> {
    select(d, key);
    read(d, n)
}

/// Parses the file directory through the data port: (name, size, select).
fn directory(d: &mut FwCfg) -> Vec<(String, u32, u16)> {
    select(d, FW_CFG_FILE_DIR);
    let count = u32::from_be_bytes(read(d, 4).try_into().unwrap());
    (0..count)
        .map(|_| {
            let e = read(d, DIR_ENTRY_LEN);
            let size = u32::from_be_bytes(e[0..4].try_into().unwrap());
            let sel = u16::from_be_bytes(e[4..6].try_into().unwrap());
            assert_eq!(&e[6..8], &[0, 0], "reserved");
            let name = &e[8..];
            let end = name.iter().position(|b| *b == 0).unwrap();
            (String::from_utf8(name[..end].to_vec()).unwrap(), size, sel)
        })
        .collect()
}

#[test]
fn standard_items() {
    let (mut d, _h) = device_with("", six_gib());
    // (key, expected bytes)
    let cases: &[(u16, Vec<u8>)] = &[
        (FW_CFG_SIGNATURE, b"QEMU".to_vec()),
        (FW_CFG_ID, vec![3, 0, 0, 0]),
        (FW_CFG_UUID, vec![0; 16]),
        (FW_CFG_RAM_SIZE, (6 * GIB).to_le_bytes().to_vec()),
        (FW_CFG_NOGRAPHIC, vec![1, 0]),
        (FW_CFG_NB_CPUS, vec![4, 0]),
        (FW_CFG_BOOT_MENU, vec![0, 0]),
        (FW_CFG_MAX_CPUS, vec![4, 0]),
    ];
    for (key, want) in cases {
        assert_eq!(&item(&mut d, *key, want.len()), want, "key {key:#x}");
        // Past the end: zeros.
        assert_eq!(read(&mut d, 3), vec![0, 0, 0], "key {key:#x} past end");
    }
    // The write-channel bit does not change what is read.
    assert_eq!(item(&mut d, FW_CFG_SIGNATURE | 0x4000, 4), b"QEMU");
    // Unknown keys read as zeros.
    assert_eq!(item(&mut d, 0x0042, 4), vec![0; 4]);
    assert_eq!(item(&mut d, 0x8000, 4), vec![0; 4]);
}

#[test]
fn without_dma() {
    let (mut d, _h) = device_with("dma=off", six_gib());
    assert_eq!(item(&mut d, FW_CFG_ID, 4), vec![1, 0, 0, 0]);
    assert_eq!(d.io_ranges().len(), 1);
    let mut b = [0u8; 4];
    d.read(AddressSpace::Pio, 0x514, &mut b);
    assert_eq!(b, [0xff; 4]);
}

#[test]
fn file_directory_and_contents() {
    let path = std::env::temp_dir().join(format!("fwcfg-test-{}", std::process::id()));
    let blob: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
    std::fs::write(&path, &blob).unwrap();
    let opts = format!(
        "string=opt/z-last:hi there,file=opt/blob:{}",
        path.display()
    );
    let (mut d, _h) = device_with(&opts, six_gib());
    let _ = std::fs::remove_file(&path);
    let dir = directory(&mut d);
    let names: Vec<&str> = dir.iter().map(|e| e.0.as_str()).collect();
    assert_eq!(
        names,
        ["etc/e820", "opt/blob", "opt/z-last"],
        "sorted by name"
    );
    let sels: Vec<u16> = dir.iter().map(|e| e.2).collect();
    assert_eq!(sels, [0x20, 0x21, 0x22]);
    let mut e820 = Vec::new();
    for (base, len) in [(0u64, 3 * GIB), (4 * GIB, 3 * GIB)] {
        e820.extend_from_slice(&base.to_le_bytes());
        e820.extend_from_slice(&len.to_le_bytes());
        e820.extend_from_slice(&1u32.to_le_bytes());
    }
    let want: [(&str, Vec<u8>); 3] = [
        ("etc/e820", e820),
        ("opt/blob", blob),
        ("opt/z-last", b"hi there".to_vec()),
    ];
    for ((name, size, sel), (wname, wdata)) in dir.iter().zip(want.iter()) {
        assert_eq!(name, wname);
        assert_eq!(*size as usize, wdata.len(), "{name}");
        assert_eq!(&item(&mut d, *sel, wdata.len()), wdata, "{name}");
        assert_eq!(read(&mut d, 1), vec![0], "{name} past end");
        assert_eq!(d.items().file_key(name), Some(*sel));
    }
}

#[test]
fn e820_without_high_ram() {
    let info = MachineInfo {
        ram_bytes: 128 << 20,
        low_ram_bytes: 128 << 20,
        cpus: 1,
    };
    let e = e820(&info);
    assert_eq!(e.len(), 20);
    assert_eq!(&e[8..16], &(128u64 << 20).to_le_bytes());
}

#[test]
fn reselect_resets_offset() {
    let (mut d, _h) = device_with("", six_gib());
    assert_eq!(item(&mut d, FW_CFG_SIGNATURE, 2), b"QE");
    assert_eq!(item(&mut d, FW_CFG_SIGNATURE, 4), b"QEMU");
    assert_eq!(read(&mut d, 2), vec![0, 0]);
    assert_eq!(item(&mut d, FW_CFG_SIGNATURE, 1), b"Q");
}

#[test]
fn only_16_bit_writes_select() {
    let (mut d, _h) = device_with("", six_gib());
    assert_eq!(item(&mut d, FW_CFG_SIGNATURE, 1), b"Q");
    // (access bytes at 0x510) none of these select or reset the offset.
    let ignored: &[&[u8]] = &[&[0x05], &[0x05, 0, 0, 0]];
    for w in ignored {
        d.write(AddressSpace::Pio, 0x510, w);
        assert_eq!(d.selected(), FW_CFG_SIGNATURE);
    }
    // A data-port write is ignored too.
    d.write(AddressSpace::Pio, 0x511, &[0x41]);
    assert_eq!(read(&mut d, 3), b"EMU");
    // A 16-bit write selects: little-endian key.
    d.write(AddressSpace::Pio, 0x510, &[0x05, 0x00]);
    assert_eq!(d.selected(), FW_CFG_NB_CPUS);
    assert_eq!(read(&mut d, 2), vec![4, 0]);
    // The selector reads as 0.
    let mut b = [0xaau8; 2];
    d.read(AddressSpace::Pio, 0x510, &mut b);
    assert_eq!(b[0], 0);
}

fn put_descriptor(h: &RecordingHost, at: usize, control: u32, len: u32, addr: u64) {
    let mut r = h.record();
    r.memory[at..at + 4].copy_from_slice(&control.to_be_bytes());
    r.memory[at + 4..at + 8].copy_from_slice(&len.to_be_bytes());
    r.memory[at + 8..at + 16].copy_from_slice(&addr.to_be_bytes());
}

/// The guest's two `outl`s of the big-endian address (high half, then low).
fn kick(d: &mut FwCfg, gpa: u64) {
    let be = gpa.to_be_bytes();
    d.write(AddressSpace::Pio, 0x514, &be[..4]);
    d.write(AddressSpace::Pio, 0x518, &be[4..]);
}

#[test]
fn dma_transfers() {
    let (mut d, h) = device_with("string=opt/x:abcdef", six_gib());
    let mut sig = [0u8; 8];
    d.read(AddressSpace::Pio, 0x514, &mut sig);
    assert_eq!(&sig, b"QEMU CFG");
    // (control, length, expected control after, expected bytes at 0x2000)
    let key = u32::from(d.items().file_key("opt/x").unwrap());
    let cases: &[(u32, u32, u32, &[u8])] = &[
        ((key << 16) | DMA_SELECT | DMA_READ, 4, 0, b"abcd"),
        // Continues at the offset: 2 bytes, then zeros past the end.
        (DMA_READ, 4, 0, b"ef\0\0"),
        ((key << 16) | DMA_SELECT | DMA_SKIP, 3, 0, b""),
        (DMA_READ, 2, 0, b"de"),
        (DMA_WRITE, 2, DMA_ERROR, b""),
        (DMA_SELECT | DMA_READ, 4, 0, b"QEMU"),
    ];
    for &(control, len, after, want) in cases {
        h.record().memory[0x2000..0x2010].fill(0xee);
        put_descriptor(&h, 0x1000, control, len, 0x2000);
        kick(&mut d, 0x1000);
        let r = h.record();
        assert_eq!(
            r.memory[0x1000..0x1004],
            after.to_be_bytes(),
            "{control:#x}"
        );
        assert_eq!(&r.memory[0x2000..0x2000 + want.len()], want, "{control:#x}");
        assert_eq!(
            r.memory[0x2000 + want.len()],
            0xee,
            "{control:#x}: no overrun"
        );
    }
    // A buffer outside guest memory sets the error bit.
    put_descriptor(&h, 0x1000, DMA_READ, 4, u64::MAX - 1);
    kick(&mut d, 0x1000);
    assert_eq!(h.record().memory[0x1000..0x1004], DMA_ERROR.to_be_bytes());
    // A descriptor outside guest memory is logged, not a panic.
    kick(&mut d, 1 << 40);
    assert!(!h.record().logs.is_empty());
    // Writing only the high half does not start a transfer.
    put_descriptor(&h, 0x1000, DMA_SELECT | DMA_READ, 4, 0x2000);
    d.write(AddressSpace::Pio, 0x514, &[0, 0, 0, 0]);
    assert_eq!(
        h.record().memory[0x1000..0x1004],
        (DMA_SELECT | DMA_READ).to_be_bytes()
    );
}

#[test]
fn save_restore_round_trip() {
    let (mut d, h) = device_with("string=opt/x:0123456789", six_gib());
    let key = d.items().file_key("opt/x").unwrap();
    assert_eq!(item(&mut d, key, 3), b"012");
    let s = d.save().unwrap();
    assert_eq!((s.version, s.data.len()), (STATE_VERSION, STATE_LEN));
    let mut e = FwCfg::create(
        &DeviceConfig::parse("string=opt/x:0123456789"),
        h.services(),
    )
    .unwrap();
    e.restore(&s).unwrap();
    assert_eq!(e.save().unwrap(), s);
    assert_eq!(read(&mut e, 3), b"345");
    assert_eq!(read(&mut d, 3), b"345");
    e.reset();
    assert_eq!(e.selected(), 0);
    assert_eq!(read(&mut e, 4), b"QEMU");
    let bad = [
        DeviceState {
            version: 2,
            data: s.data.clone(),
        },
        DeviceState {
            version: STATE_VERSION,
            data: vec![0; STATE_LEN - 1].into(),
        },
    ];
    for b in bad {
        assert!(e.restore(&b).is_err());
    }
}
