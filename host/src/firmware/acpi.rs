//! ACPI tables for direct boot: RSDP, RSDT, XSDT, FADT, MADT and a DSDT that
//! holds the `\_S5` sleep package (ACPI 6.5, chapter 5 "ACPI Software
//! Programming Model"). They describe this machine's fixed hardware: the
//! PM1a event/control blocks and the PM timer at QEMU's PIIX4 ports, the
//! local APICs and one IOAPIC.

/// Where the host puts the RSDP (16-byte aligned inside 0xE0000-0xFFFFF, the
/// BIOS read-only area OSPM scans, ACPI 6.5, 5.2.5.1 "Finding the RSDP on IA-PC Systems").
pub const RSDP_ADDR: u64 = 0xF_0000;
/// End of the area the tables may use.
pub const TABLES_END: u64 = 0xF_8000;
/// OEM ID in every table.
pub const OEM_ID: &[u8; 6] = b"HYPRPL";
/// OEM table ID in every table.
pub const OEM_TABLE_ID: &[u8; 8] = b"HYPERPLG";
/// PM1a event block (PM1_STS + PM1_EN).
pub const PM1A_EVT_BLK: u16 = 0x600;
/// PM1a control block.
pub const PM1A_CNT_BLK: u16 = 0x604;
/// PM timer block (the pm-timer plugin's default port).
pub const PM_TMR_BLK: u16 = 0x608;
/// SCI interrupt (ISA IRQ 9, level, active high, as on PIIX4).
pub const SCI_IRQ: u16 = 9;
/// Local APIC MMIO base (SDM vol. 3, 11.4.1 "The Local APIC Block Diagram").
pub const LAPIC_BASE: u32 = 0xFEE0_0000;
/// IOAPIC MMIO base (82093AA datasheet default).
pub const IOAPIC_BASE: u32 = 0xFEC0_0000;

/// Machine facts the tables describe.
#[derive(Debug, Clone, Copy)]
pub struct AcpiConfig {
    /// Number of CPUs (one Processor Local APIC entry each, APIC IDs 0..cpus).
    pub cpus: u32,
    /// The PM timer is 32 bits wide (FADT TMR_VAL_EXT); else 24.
    pub pm_timer_32bit: bool,
}

/// The tables, laid out at their guest-physical addresses.
pub struct AcpiTables {
    /// (guest-physical address, bytes), in address order; the first is the RSDP.
    pub blobs: Vec<(u64, Vec<u8>)>,
}

fn checksum(bytes: &[u8]) -> u8 {
    0u8.wrapping_sub(bytes.iter().fold(0u8, |a, b| a.wrapping_add(*b)))
}

/// A System Description Table header (ACPI 6.5, 5.2.6, Table 5.4) + body, checksummed.
fn sdt(signature: &[u8; 4], revision: u8, body: &[u8]) -> Vec<u8> {
    let len = 36 + body.len();
    let mut t = Vec::with_capacity(len);
    t.extend_from_slice(signature);
    t.extend_from_slice(&(len as u32).to_le_bytes());
    t.push(revision);
    t.push(0); // checksum, below
    t.extend_from_slice(OEM_ID);
    t.extend_from_slice(OEM_TABLE_ID);
    t.extend_from_slice(&1u32.to_le_bytes()); // OEM revision
    t.extend_from_slice(b"HPLG"); // creator ID
    t.extend_from_slice(&1u32.to_le_bytes()); // creator revision
    t.extend_from_slice(body);
    t[9] = checksum(&t);
    t
}

/// A Generic Address Structure for system I/O space (ACPI 6.5, 5.2.3.2, Table 5.1).
fn gas_io(port: u16, bit_width: u8, access_size: u8) -> [u8; 12] {
    let mut g = [0u8; 12];
    g[0] = 1; // system I/O
    g[1] = bit_width;
    g[2] = 0; // bit offset
    g[3] = access_size; // 1 byte, 2 word, 3 dword
    g[4..12].copy_from_slice(&u64::from(port).to_le_bytes());
    g
}

/// The DSDT: just `Name (_S5, Package (4) { 0, 0, 0, 0 })`, the S5 sleep
/// type the PM1a control register accepts (AML, ACPI 6.5, 20.2.5.1 DefName
/// and 20.2.5.4 DefPackage; SLP_TYP 0 = S5 on this machine).
fn dsdt() -> Vec<u8> {
    let aml = [
        0x08, b'_', b'S', b'5', b'_', // NameOp "_S5_"
        0x12, 0x06, 0x04, // PackageOp, PkgLength 6, NumElements 4
        0x00, 0x00, 0x00, 0x00, // ZeroOp x 4
    ];
    sdt(b"DSDT", 2, &aml)
}

/// The FADT, revision 6 layout (ACPI 6.5, 5.2.9, Table 5.9), 276 bytes.
fn fadt(dsdt_addr: u64, cfg: &AcpiConfig) -> Vec<u8> {
    let mut b = vec![0u8; 276 - 36];
    let at = |off: usize| off - 36; // offsets below are from the table start
    let put32 = |b: &mut Vec<u8>, off: usize, v: u32| {
        b[at(off)..at(off) + 4].copy_from_slice(&v.to_le_bytes())
    };
    put32(&mut b, 40, dsdt_addr as u32); // DSDT
    b[at(45)] = 0; // Preferred_PM_Profile: unspecified
    b[at(46)..at(48)].copy_from_slice(&SCI_IRQ.to_le_bytes()); // SCI_INT
                                                               // SMI_CMD = 0: no SMI port, the machine is always in ACPI mode (SCI_EN reads 1).
    put32(&mut b, 56, u32::from(PM1A_EVT_BLK)); // PM1a_EVT_BLK
    put32(&mut b, 64, u32::from(PM1A_CNT_BLK)); // PM1a_CNT_BLK
    put32(&mut b, 76, u32::from(PM_TMR_BLK)); // PM_TMR_BLK
    b[at(88)] = 4; // PM1_EVT_LEN
    b[at(89)] = 2; // PM1_CNT_LEN
    b[at(91)] = 4; // PM_TMR_LEN
    b[at(96)..at(98)].copy_from_slice(&0x0065u16.to_le_bytes()); // P_LVL2_LAT > 100: no C2
    b[at(98)..at(100)].copy_from_slice(&0x03e9u16.to_le_bytes()); // P_LVL3_LAT > 1000: no C3
    b[at(108)] = 0x32; // CENTURY: CMOS index of the century
                       // IAPC_BOOT_ARCH: LEGACY_DEVICES (bit 0) | 8042 (bit 1).
    b[at(109)..at(111)].copy_from_slice(&0x0003u16.to_le_bytes());
    // Flags: WBINVD (0) | PROC_C1 (2) | SLP_BUTTON (5, no control-method button) | TMR_VAL_EXT (8) | RESET_REG_SUP (10).
    let mut flags: u32 = (1 << 0) | (1 << 2) | (1 << 5) | (1 << 10);
    if cfg.pm_timer_32bit {
        flags |= 1 << 8;
    }
    put32(&mut b, 112, flags);
    // RESET_REG: the i8042 pulse-reset via port 0x64, value 0xFE.
    b[at(116)..at(128)].copy_from_slice(&gas_io(0x64, 8, 1));
    b[at(128)] = 0xFE; // RESET_VALUE
    b[at(131)] = 5; // FADT minor version (6.5)
    b[at(140)..at(148)].copy_from_slice(&dsdt_addr.to_le_bytes()); // X_DSDT
    b[at(148)..at(160)].copy_from_slice(&gas_io(PM1A_EVT_BLK, 32, 2)); // X_PM1a_EVT_BLK
    b[at(172)..at(184)].copy_from_slice(&gas_io(PM1A_CNT_BLK, 16, 2)); // X_PM1a_CNT_BLK
    b[at(208)..at(220)].copy_from_slice(&gas_io(PM_TMR_BLK, 32, 3)); // X_PM_TMR_BLK
    sdt(b"FACP", 6, &b)
}

/// The MADT (ACPI 6.5, 5.2.12): local APIC address, PCAT_COMPAT (8259s
/// present), one Processor Local APIC per CPU, the IOAPIC, and the ISA
/// interrupt source overrides a PC has (IRQ 0 → GSI 2; SCI level/high).
fn madt(cfg: &AcpiConfig) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&LAPIC_BASE.to_le_bytes());
    b.extend_from_slice(&1u32.to_le_bytes()); // flags: PCAT_COMPAT
    for id in 0..cfg.cpus.min(255) {
        // Type 0, length 8: ACPI processor UID, APIC ID, flags (enabled).
        b.extend_from_slice(&[0, 8, id as u8, id as u8, 1, 0, 0, 0]);
    }
    // Type 1, length 12: IOAPIC ID, reserved, address, GSI base.
    let ioapic_id = cfg.cpus.min(254) as u8;
    b.extend_from_slice(&[1, 12, ioapic_id, 0]);
    b.extend_from_slice(&IOAPIC_BASE.to_le_bytes());
    b.extend_from_slice(&0u32.to_le_bytes());
    // Type 2, length 10: bus 0 (ISA), source IRQ, GSI, flags.
    b.extend_from_slice(&[2, 10, 0, 0]);
    b.extend_from_slice(&2u32.to_le_bytes());
    b.extend_from_slice(&0u16.to_le_bytes()); // conforms to the bus
    b.extend_from_slice(&[2, 10, 0, SCI_IRQ as u8]);
    b.extend_from_slice(&u32::from(SCI_IRQ).to_le_bytes());
    b.extend_from_slice(&0x000du16.to_le_bytes()); // active high (01), level (11 << 2)
    sdt(b"APIC", 5, &b)
}

/// The RSDP, ACPI 2.0+ form (ACPI 6.5, 5.2.5.3, Table 5.3).
fn rsdp(rsdt: u64, xsdt: u64) -> Vec<u8> {
    let mut r = Vec::with_capacity(36);
    r.extend_from_slice(b"RSD PTR ");
    r.push(0); // checksum of the first 20 bytes
    r.extend_from_slice(OEM_ID);
    r.push(2); // revision: ACPI 2.0+
    r.extend_from_slice(&(rsdt as u32).to_le_bytes());
    r.extend_from_slice(&36u32.to_le_bytes());
    r.extend_from_slice(&xsdt.to_le_bytes());
    r.push(0); // extended checksum
    r.extend_from_slice(&[0, 0, 0]);
    r[8] = checksum(&r[..20]);
    r[32] = checksum(&r);
    r
}

fn align16(x: u64) -> u64 {
    (x + 15) & !15
}

/// Builds every table at its address, starting with the RSDP at [`RSDP_ADDR`].
pub fn build(cfg: &AcpiConfig) -> AcpiTables {
    let dsdt_addr = RSDP_ADDR + 0x40;
    let dsdt = dsdt();
    let fadt_addr = align16(dsdt_addr + dsdt.len() as u64);
    let fadt = fadt(dsdt_addr, cfg);
    let madt_addr = align16(fadt_addr + fadt.len() as u64);
    let madt = madt(cfg);
    let rsdt_addr = align16(madt_addr + madt.len() as u64);
    let mut rsdt_body = Vec::new();
    for a in [fadt_addr, madt_addr] {
        rsdt_body.extend_from_slice(&(a as u32).to_le_bytes());
    }
    let rsdt = sdt(b"RSDT", 1, &rsdt_body);
    let xsdt_addr = align16(rsdt_addr + rsdt.len() as u64);
    let mut xsdt_body = Vec::new();
    for a in [fadt_addr, madt_addr] {
        xsdt_body.extend_from_slice(&a.to_le_bytes());
    }
    let xsdt = sdt(b"XSDT", 1, &xsdt_body);
    AcpiTables {
        blobs: vec![
            (RSDP_ADDR, rsdp(rsdt_addr, xsdt_addr)),
            (dsdt_addr, dsdt),
            (fadt_addr, fadt),
            (madt_addr, madt),
            (rsdt_addr, rsdt),
            (xsdt_addr, xsdt),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flat(t: &AcpiTables) -> Vec<u8> {
        let mut m = vec![0u8; (TABLES_END - RSDP_ADDR) as usize];
        for (a, b) in &t.blobs {
            let o = (a - RSDP_ADDR) as usize;
            m[o..o + b.len()].copy_from_slice(b);
        }
        m
    }

    fn u32_at(m: &[u8], a: u64) -> u32 {
        let o = (a - RSDP_ADDR) as usize;
        u32::from_le_bytes(m[o..o + 4].try_into().unwrap())
    }

    fn table(m: &[u8], a: u64) -> &[u8] {
        let o = (a - RSDP_ADDR) as usize;
        let len = u32::from_le_bytes(m[o + 4..o + 8].try_into().unwrap()) as usize;
        &m[o..o + len]
    }

    fn sum(b: &[u8]) -> u8 {
        b.iter().fold(0u8, |a, x| a.wrapping_add(*x))
    }

    #[test]
    fn tables_are_consistent_and_checksummed() {
        let cfg = AcpiConfig {
            cpus: 4,
            pm_timer_32bit: false,
        };
        let t = build(&cfg);
        assert!(t
            .blobs
            .iter()
            .all(|(a, b)| a + b.len() as u64 <= TABLES_END));
        let m = flat(&t);
        // RSDP: signature, both checksums, revision 2.
        let r = &m[..36];
        assert_eq!(&r[..8], b"RSD PTR ");
        assert_eq!(sum(&r[..20]), 0);
        assert_eq!(sum(r), 0);
        assert_eq!(r[15], 2);
        let rsdt = u64::from(u32_at(&m, RSDP_ADDR + 16));
        let xsdt = u64::from_le_bytes(r[24..32].try_into().unwrap());
        for (addr, sig) in [(rsdt, b"RSDT"), (xsdt, b"XSDT")] {
            let tb = table(&m, addr);
            assert_eq!(&tb[..4], sig);
            assert_eq!(sum(tb), 0, "{sig:?} checksum");
        }
        // XSDT entries: FADT then MADT.
        let x = table(&m, xsdt);
        let fadt_addr = u64::from_le_bytes(x[36..44].try_into().unwrap());
        let madt_addr = u64::from_le_bytes(x[44..52].try_into().unwrap());
        let fadt = table(&m, fadt_addr);
        assert_eq!(&fadt[..4], b"FACP");
        assert_eq!(fadt.len(), 276);
        assert_eq!(sum(fadt), 0);
        let f32 = |o: usize| u32::from_le_bytes(fadt[o..o + 4].try_into().unwrap());
        assert_eq!(f32(56), 0x600);
        assert_eq!(f32(64), 0x604);
        assert_eq!(f32(76), 0x608);
        assert_eq!(fadt[91], 4);
        assert_eq!(f32(112) & (1 << 8), 0, "24-bit PM timer");
        // DSDT through FADT, with _S5_.
        let dsdt = table(&m, u64::from(f32(40)));
        assert_eq!(&dsdt[..4], b"DSDT");
        assert_eq!(sum(dsdt), 0);
        assert!(dsdt.windows(4).any(|w| w == b"_S5_"));
        // MADT: 4 local APICs with IDs 0..3 and one IOAPIC.
        let madt = table(&m, madt_addr);
        assert_eq!(&madt[..4], b"APIC");
        assert_eq!(sum(madt), 0);
        let mut off = 44;
        let (mut lapics, mut ioapics, mut overrides) = (Vec::new(), 0, 0);
        while off < madt.len() {
            let (ty, len) = (madt[off], madt[off + 1] as usize);
            match ty {
                0 => lapics.push(madt[off + 3]),
                1 => ioapics += 1,
                2 => overrides += 1,
                _ => panic!("unexpected MADT entry {ty}"),
            }
            off += len;
        }
        assert_eq!(lapics, vec![0, 1, 2, 3]);
        assert_eq!((ioapics, overrides), (1, 2));
    }

    #[test]
    fn pm_timer_width_flag() {
        let t = build(&AcpiConfig {
            cpus: 1,
            pm_timer_32bit: true,
        });
        let (_, fadt) = &t.blobs[2];
        let flags = u32::from_le_bytes(fadt[112..116].try_into().unwrap());
        assert_ne!(flags & (1 << 8), 0);
    }
}
