//! The second differential oracle: /dev/kvm running CPL-0 guest code in real mode,
//! 16-bit and 32-bit protected mode and 64-bit long mode, against the Hyperplug
//! emulator.
//!
//! * [`gen`] builds random cases ([`KCase`]): a snippet of integer instructions for one
//!   [`Bits`], random initial GPRs, status flags and DF, and a 256-byte data area.
//! * [`layout`] is the guest-physical layout both machines share: IVT, GDT, TSS, IDT,
//!   page tables, the harness, the code slot and the data area, all below 64 KiB, so
//!   real mode reaches them with segment bases of 0.
//! * [`guest`] assembles the batch harness and runs a batch of cases in one KVM VM: for
//!   each case it copies the case's record (registers, code, data) into place, loads
//!   the registers and RFLAGS, jumps to the snippet, and records the GPRs, RFLAGS and
//!   data area when the snippet jumps back, or the vector, error code and saved
//!   IP/FLAGS when an exception handler is entered. A case that ends the VM with
//!   KVM_EXIT_INTERNAL_ERROR (the host kernel's emulator cannot run it) is reported as
//!   such and the batch continues in a fresh VM from the next case.
//! * [`emu`] runs the same case on [`hyperplug_emulator::Engine`] over a `FlatBus`
//!   with the same memory and state, one step at a time, tracking the status flags
//!   the SDM leaves undefined along the path ([`hyperplug_oracle::flags`]).
//!
//! [`compare`] turns the two outcomes into a verdict; KVM internal errors are skipped,
//! never passed.

pub mod emu;
pub mod gen;
pub mod guest;
pub mod layout;

use hyperplug_oracle::case::{rflags, vector_name};
use iced_x86::Mnemonic;
use std::collections::BTreeMap;
use std::fmt::{self, Write};

/// The code bitness (and mode) of a case.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Bits {
    /// Real mode, 16-bit code, segment bases 0 (SDM vol. 3, 21.1).
    Real16,
    /// Protected mode, a 16-bit code segment (D = 0, limit 0xffff) with the flat
    /// 32-bit data and stack segments of [`Bits::Prot32`] (SDM vol. 3, 3.4.5).
    Prot16,
    /// Protected mode, flat 32-bit code and data segments, paging off (SDM vol. 3, 3.2.1).
    Prot32,
    /// IA-32e 64-bit mode, identity-mapped with one 2-MiB page (SDM vol. 3, 4.5).
    Long64,
}

impl Bits {
    /// All modes the oracle runs.
    pub const ALL: [Bits; 4] = [Bits::Real16, Bits::Prot16, Bits::Prot32, Bits::Long64];

    /// Default operand/address size in bits.
    pub fn width(self) -> u32 {
        match self {
            Bits::Real16 | Bits::Prot16 => 16,
            Bits::Prot32 => 32,
            Bits::Long64 => 64,
        }
    }

    /// Number of GPRs the mode has (8 outside 64-bit mode).
    pub fn gprs(self) -> usize {
        if self == Bits::Long64 {
            16
        } else {
            8
        }
    }

    /// Mask of the GPR bits that the mode can observe (32 bits outside 64-bit mode).
    pub fn gpr_mask(self) -> u64 {
        if self == Bits::Long64 {
            u64::MAX
        } else {
            0xffff_ffff
        }
    }

    /// Short name, e.g. `"real16"`.
    pub fn name(self) -> &'static str {
        match self {
            Bits::Real16 => "real16",
            Bits::Prot16 => "prot16",
            Bits::Prot32 => "prot32",
            Bits::Long64 => "long64",
        }
    }
}

impl fmt::Display for Bits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One case: code for [`layout::CODE`], initial GPRs, RFLAGS and data area.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KCase {
    /// Mode the case runs in.
    pub bits: Bits,
    /// The snippet (without the terminator the harness appends).
    pub code: Vec<u8>,
    /// Initial GPRs in encoding order (RSP included; only 8 used outside 64-bit mode).
    pub gpr: [u64; 16],
    /// Initial RFLAGS (status flags and DF; bit 1 is forced on, IF off).
    pub rflags: u64,
    /// Initial data area ([`layout::DATA_SIZE`] bytes).
    pub data: Vec<u8>,
    /// Initial CR0 (the harness loads it with MOV to CR0 before the snippet).
    pub cr0: u64,
    /// Initial CR4.
    pub cr4: u64,
    /// Initial CR2.
    pub cr2: u64,
}

impl KCase {
    /// A case with the mode's default control registers ([`layout::control_regs`]).
    pub fn new(bits: Bits, code: Vec<u8>, gpr: [u64; 16], rflags: u64, data: Vec<u8>) -> Self {
        let (cr0, _, cr4, _) = layout::control_regs(bits);
        KCase {
            bits,
            code,
            gpr,
            rflags,
            data,
            cr0,
            cr4,
            cr2: 0,
        }
    }

    /// Address the snippet ends at (its terminator jumps back to the harness).
    pub fn end_ip(&self) -> u64 {
        layout::CODE + self.code.len() as u64
    }
}

/// What the KVM guest's CPUID (KVM's supported set, as the kvm backend passes it on)
/// reports for the features the generator uses, read by a probe case
/// ([`guest::KvmOracle::new`]). Instructions whose feature is absent are not generated:
/// the guest would raise #UD where the emulator's model runs them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GuestFeatures {
    /// CPUID.01H:ECX.XSAVE\[bit 26\] (CR4.OSXSAVE may be set, XGETBV/XSETBV run).
    pub xsave: bool,
    /// CPUID.80000001H:EDX.RDTSCP\[bit 27\].
    pub rdtscp: bool,
    /// CPUID.(EAX=07H,ECX=0):ECX.RDPID\[bit 22\].
    pub rdpid: bool,
    /// CPUID.(EAX=07H,ECX=0):EBX.INVPCID\[bit 10\].
    pub invpcid: bool,
}

impl GuestFeatures {
    /// From CPUID.01H:ECX, CPUID.(07H,0):EBX and ECX, CPUID.80000001H:EDX (SDM vol. 2A,
    /// CPUID, Tables 3-10, 3-8 and 3-20).
    pub fn from_cpuid(l1_ecx: u32, l7_ebx: u32, l7_ecx: u32, e1_edx: u32) -> Self {
        GuestFeatures {
            xsave: l1_ecx >> 26 & 1 != 0,
            rdtscp: e1_edx >> 27 & 1 != 0,
            rdpid: l7_ecx >> 22 & 1 != 0,
            invpcid: l7_ebx >> 10 & 1 != 0,
        }
    }
}

/// An exception the snippet raised.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KException {
    /// Vector (SDM vol. 3, 6.3.1, Table 6-1).
    pub vector: u8,
    /// Error code, for the vectors that push one in this mode.
    pub error_code: Option<u32>,
}

impl fmt::Display for KException {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", vector_name(self.vector))?;
        if let Some(e) = self.error_code {
            write!(f, "({e:#x})")?;
        }
        Ok(())
    }
}

/// The system registers after a case (read by the harness with MOV from CRn,
/// SGDT/SIDT, STR/SLDT, and from the GDT in memory).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SysState {
    /// CR0, CR2, CR3, CR4, CR8 (CR8 is 0 outside 64-bit mode, where it cannot be read).
    pub cr: [u64; 5],
    /// GDTR limit and base.
    pub gdtr: (u16, u64),
    /// IDTR limit and base.
    pub idtr: (u16, u64),
    /// TR and LDTR selectors (0 in real mode, where STR/SLDT are #UD).
    pub tr: u16,
    /// LDTR selector.
    pub ldtr: u16,
    /// The access bytes of the TSS descriptors at [`layout::TSS_SEL`] and
    /// [`layout::TSS2_SEL`] in the GDT (LTR sets their busy bit, SDM vol. 2A, LTR).
    pub tss_access: [u8; 2],
}

/// Names of [`SysState::cr`].
const CR_NAMES: [&str; 5] = ["cr0", "cr2", "cr3", "cr4", "cr8"];

/// What a case did, on either machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KOutcome {
    /// GPRs when the snippet ended or faulted (before the handler ran).
    pub gpr: [u64; 16],
    /// RFLAGS (for an exception, the image the CPU saved).
    pub rflags: u64,
    /// IP: [`KCase::end_ip`] on completion, else the saved IP of the exception
    /// (the faulting instruction for faults, the next one for traps).
    pub ip: u64,
    /// The exception, if any.
    pub exception: Option<KException>,
    /// Final data area.
    pub data: Vec<u8>,
    /// Final system registers.
    pub sys: SysState,
}

/// What the KVM oracle made of one case.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KvmResult {
    /// The guest ran the case to its end or into an exception handler.
    Done(Box<KOutcome>),
    /// KVM_EXIT_INTERNAL_ERROR (with KVM's description): not comparable.
    InternalError(String),
}

/// The RFLAGS bits compared: status flags, DF and IF.
pub const COMPARED_FLAGS: u64 = rflags::STATUS | rflags::DF | rflags::IF;

/// The differences between KVM's outcome and the emulator's, one line each.
///
/// `undefined` are the status flags the SDM leaves undefined at the end of the path
/// the emulator took; they are not compared. On an exception the bytes of the CPU's
/// exception frame in the data area (`frame`, a byte range) are not compared either:
/// the emulator stops before delivering, the guest's handler is entered through it.
pub fn differences(
    case: &KCase,
    kvm: &KOutcome,
    emu: &KOutcome,
    undefined: u64,
    frame: Option<std::ops::Range<usize>>,
) -> Vec<String> {
    let mut out = Vec::new();
    if kvm.exception != emu.exception {
        let show = |e: &Option<KException>| e.map_or("none".to_string(), |x| x.to_string());
        out.push(format!(
            "exception: kvm {}, emulator {}",
            show(&kvm.exception),
            show(&emu.exception)
        ));
    }
    if kvm.ip != emu.ip {
        out.push(format!("ip: kvm {:#x}, emulator {:#x}", kvm.ip, emu.ip));
    }
    let mask = case.bits.gpr_mask();
    for i in 0..case.bits.gprs() {
        let (k, e) = (kvm.gpr[i] & mask, emu.gpr[i] & mask);
        if k != e {
            out.push(format!(
                "{}: kvm {k:#x}, emulator {e:#x}",
                hyperplug_oracle::case::gpr::NAMES[i]
            ));
        }
    }
    let fm = COMPARED_FLAGS & !undefined;
    let (kf, ef) = (kvm.rflags & fm, emu.rflags & fm);
    if kf != ef {
        out.push(format!(
            "rflags (mask {fm:#x}): kvm {kf:#x} [{}], emulator {ef:#x} [{}]",
            rflags::describe(kf),
            rflags::describe(ef)
        ));
    }
    let (ks, es) = (&kvm.sys, &emu.sys);
    for (i, name) in CR_NAMES.iter().enumerate() {
        if ks.cr[i] != es.cr[i] {
            out.push(format!(
                "{name}: kvm {:#x}, emulator {:#x}",
                ks.cr[i], es.cr[i]
            ));
        }
    }
    for (name, k, e) in [("gdtr", ks.gdtr, es.gdtr), ("idtr", ks.idtr, es.idtr)] {
        if k != e {
            out.push(format!(
                "{name}: kvm limit {:#x} base {:#x}, emulator limit {:#x} base {:#x}",
                k.0, k.1, e.0, e.1
            ));
        }
    }
    if (ks.tr, ks.ldtr) != (es.tr, es.ldtr) {
        out.push(format!(
            "tr/ldtr: kvm {:#x}/{:#x}, emulator {:#x}/{:#x}",
            ks.tr, ks.ldtr, es.tr, es.ldtr
        ));
    }
    if ks.tss_access != es.tss_access {
        out.push(format!(
            "TSS descriptor access bytes (GDT {:#x}, {:#x}): kvm {:02x?}, emulator {:02x?}",
            layout::TSS_SEL,
            layout::TSS2_SEL,
            ks.tss_access,
            es.tss_access
        ));
    }
    let mut differing = Vec::new();
    for (i, (k, e)) in kvm.data.iter().zip(emu.data.iter()).enumerate() {
        if k != e && !frame.as_ref().is_some_and(|f| f.contains(&i)) {
            differing.push(i);
        }
    }
    if kvm.data.len() != emu.data.len() {
        out.push(format!(
            "data length: kvm {}, emulator {}",
            kvm.data.len(),
            emu.data.len()
        ));
    }
    if let (Some(first), Some(last)) = (differing.first(), differing.last()) {
        let r = *first..*last + 1;
        out.push(format!(
            "data {:#x}..{:#x} ({} bytes differ): kvm {:02x?}, emulator {:02x?}",
            layout::DATA + r.start as u64,
            layout::DATA + r.end as u64,
            differing.len(),
            &kvm.data[r.clone()],
            &emu.data[r]
        ));
    }
    out
}

/// A reproducible description of a case: mode, code (hex and disassembly), registers.
pub fn describe_case(case: &KCase) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "mode {} code [{}]",
        case.bits,
        case.code
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    for line in gen::disassemble(case) {
        let _ = writeln!(out, "    {line}");
    }
    let _ = write!(out, " ");
    for i in 0..case.bits.gprs() {
        let _ = write!(
            out,
            " {}={:#x}",
            hyperplug_oracle::case::gpr::NAMES[i],
            case.gpr[i] & case.bits.gpr_mask()
        );
    }
    let _ = writeln!(
        out,
        "\n  rflags={:#x} [{}] cr0={:#x} cr2={:#x} cr4={:#x}",
        case.rflags,
        rflags::describe(case.rflags),
        case.cr0,
        case.cr2,
        case.cr4
    );
    out
}

/// The verdict on one case.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Both agree; the outcome's kind (`"completed"`, `"#DE"`, ...).
    Match(&'static str),
    /// Not compared, with the reason (never a pass).
    Skipped(String),
    /// They disagree: a reproducible report.
    Mismatch(String),
}

/// Compares `kvm` with the emulator's run of `case`.
pub fn compare(case: &KCase, kvm: &KvmResult, emu: &Result<emu::EmuRun, String>) -> Verdict {
    let kvm = match kvm {
        KvmResult::InternalError(why) => {
            let m =
                failing_mnemonic(case.bits, why).map_or(String::new(), |m| format!(" on {m:?}"));
            return Verdict::Skipped(format!("KVM_EXIT_INTERNAL_ERROR{m}: {why}"));
        }
        KvmResult::Done(o) => o,
    };
    let emu = match emu {
        Ok(r) => r,
        Err(e) => {
            return Verdict::Mismatch(format!(
                "{}kvm: {}\nemulator failed: {e}\n",
                describe_case(case),
                describe_outcome(case, kvm)
            ))
        }
    };
    let frame = kvm
        .exception
        .and_then(|_| layout::frame_bytes(case.bits, kvm.gpr[4], kvm.exception));
    let diffs = differences(case, kvm, &emu.outcome, emu.undefined, frame);
    if diffs.is_empty() {
        return Verdict::Match(kvm.exception.map_or("completed", |e| vector_name(e.vector)));
    }
    if let Some(r) = &emu.undefined_read {
        return Verdict::Skipped(format!("reads undefined flags: {r}"));
    }
    let mut out = describe_case(case);
    let _ = writeln!(out, "kvm:      {}", describe_outcome(case, kvm));
    let _ = writeln!(out, "emulator: {}", describe_outcome(case, &emu.outcome));
    let _ = writeln!(out, "differences:");
    for d in diffs {
        let _ = writeln!(out, "  {d}");
    }
    Verdict::Mismatch(out)
}

/// The instruction KVM failed to emulate, from its internal-error data: KVM's
/// emulation-failure report carries the fetched length and up to 15 instruction
/// bytes in data words 1 and 2 (`data=[flags len|bytes.. bytes..]`).
pub fn failing_mnemonic(bits: Bits, why: &str) -> Option<Mnemonic> {
    let rest = why.split("data=[").nth(1)?;
    let words: Vec<u64> = rest
        .split([' ', ']'])
        .take(3)
        .filter_map(|w| u64::from_str_radix(w.trim_start_matches("0x"), 16).ok())
        .collect();
    let bytes: Vec<u8> = words
        .get(1..3)?
        .iter()
        .flat_map(|w| w.to_le_bytes())
        .collect();
    let len = usize::from(*bytes.first()?).min(15);
    let mut d = iced_x86::Decoder::new(
        bits.width(),
        bytes.get(1..1 + len)?,
        iced_x86::DecoderOptions::NONE,
    );
    let i = d.decode();
    (!i.is_invalid()).then(|| i.mnemonic())
}

/// One line: how the case ended and the GPRs.
fn describe_outcome(case: &KCase, o: &KOutcome) -> String {
    let mut s = match o.exception {
        Some(e) => format!("{e} at {:#x}", o.ip),
        None => format!("completed at {:#x}", o.ip),
    };
    for i in 0..case.bits.gprs() {
        let _ = write!(
            s,
            " {}={:#x}",
            hyperplug_oracle::case::gpr::NAMES[i],
            o.gpr[i] & case.bits.gpr_mask()
        );
    }
    let _ = write!(s, " rflags={:#x}", o.rflags);
    s
}

/// Counts for one mode.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ModeStats {
    /// Matched cases by outcome kind.
    pub matched: BTreeMap<&'static str, u64>,
    /// Skipped cases by reason.
    pub skipped: BTreeMap<String, u64>,
    /// Number of mismatches.
    pub mismatches: u64,
    /// The first mismatch reports.
    pub reports: Vec<String>,
}

impl ModeStats {
    /// Matched cases.
    pub fn matched_total(&self) -> u64 {
        self.matched.values().sum()
    }

    /// Skipped cases.
    pub fn skipped_total(&self) -> u64 {
        self.skipped.values().sum()
    }

    /// Records a verdict, keeping at most `keep` reports.
    pub fn add(&mut self, v: Verdict, keep: usize) {
        match v {
            Verdict::Match(k) => *self.matched.entry(k).or_default() += 1,
            Verdict::Skipped(why) => {
                // Group by the text before the first ':' (KVM's details vary).
                let key = why.split(':').next().unwrap_or("").to_string();
                *self.skipped.entry(key).or_default() += 1;
            }
            Verdict::Mismatch(m) => {
                self.mismatches += 1;
                if self.reports.len() < keep {
                    self.reports.push(m);
                }
            }
        }
    }
}

/// Mnemonics the differential test leaves out of generated cases (see the test).
pub type Exclusions = Vec<(Bits, Mnemonic)>;

#[cfg(test)]
mod tests {
    use super::*;

    fn case(bits: Bits) -> KCase {
        KCase::new(bits, vec![0x90], [0; 16], 0, vec![0; layout::DATA_SIZE])
    }

    fn outcome() -> KOutcome {
        KOutcome {
            gpr: [0; 16],
            rflags: 2,
            ip: layout::CODE + 1,
            exception: None,
            data: vec![0; layout::DATA_SIZE],
            sys: SysState::default(),
        }
    }

    #[test]
    fn differences_respect_mode_width_undefined_flags_and_frame() {
        let c = case(Bits::Prot32);
        let a = outcome();
        let mut b = outcome();
        assert!(differences(&c, &a, &b, 0, None).is_empty());
        // Bits 63:32 and R8-R15 are not visible outside 64-bit mode.
        b.gpr[0] = 1 << 40;
        b.gpr[9] = 5;
        assert!(differences(&c, &a, &b, 0, None).is_empty());
        assert_eq!(differences(&case(Bits::Long64), &a, &b, 0, None).len(), 2);
        b.gpr = [0; 16];
        b.rflags |= rflags::ZF;
        assert_eq!(differences(&c, &a, &b, 0, None).len(), 1);
        assert!(differences(&c, &a, &b, rflags::ZF, None).is_empty());
        b.rflags = a.rflags;
        b.data[0x40] = 1;
        assert_eq!(differences(&c, &a, &b, 0, None).len(), 1);
        assert!(differences(&c, &a, &b, 0, Some(0x3c..0x48)).is_empty());
        // System state is compared field by field.
        let mut d = outcome();
        d.sys.cr[0] = 8;
        d.sys.tss_access[1] = 0x8b;
        assert_eq!(differences(&c, &a, &d, 0, None).len(), 2);
        b.exception = Some(KException {
            vector: 0,
            error_code: None,
        });
        assert_eq!(differences(&c, &a, &b, 0, Some(0x3c..0x48)).len(), 1);
    }

    #[test]
    fn frame_bytes_per_mode() {
        let sp = layout::DATA + 0x80;
        let gp = Some(KException {
            vector: 13,
            error_code: Some(0),
        });
        let de = Some(KException {
            vector: 0,
            error_code: None,
        });
        // (mode, exception, range)
        let table = [
            (Bits::Real16, de, Some(0x7a..0x80)),
            (Bits::Prot32, de, Some(0x74..0x80)),
            (Bits::Prot32, gp, Some(0x70..0x80)),
            (Bits::Long64, gp, None),
        ];
        for (bits, e, want) in table {
            assert_eq!(layout::frame_bytes(bits, sp, e), want, "{bits}");
        }
        // Below the data area: nothing to exempt.
        assert_eq!(layout::frame_bytes(Bits::Prot32, 0x100, de), None);
    }

    #[test]
    fn failing_instruction_from_kvm_report() {
        // The report seen for AAS (0x3f) in real mode: length 15, then the bytes.
        let why = "KVM internal error: suberror=1 (emulation failure) ndata=8 \
                   data=[0x1 0xccccccd765e93f0f 0xcccccccccccccccc 0x1000 0x0]";
        assert_eq!(failing_mnemonic(Bits::Real16, why), Some(Mnemonic::Aas));
        assert_eq!(failing_mnemonic(Bits::Real16, "no data"), None);
    }
}
