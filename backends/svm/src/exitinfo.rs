//! EXITINFO1 / EXITINFO2 / EXITINTINFO / EVENTINJ encodings (AMD APM
//! vol. 2: 15.10.2 IOIO, 15.11 MSR, 15.33 decode assists for CR/DR, 15.12
//! exception intercepts, 15.20 event injection, 15.7.2 EXITINTINFO, 15.25.6
//! nested page faults).

/// IOIO EXITINFO1 bits (APM vol. 2, 15.10.2 "IN and OUT Behavior").
pub mod ioio {
    /// TYPE, bit 0: 1 = IN/INS.
    pub const TYPE_IN: u64 = 1 << 0;
    /// STR, bit 2: INS/OUTS.
    pub const STR: u64 = 1 << 2;
    /// REP, bit 3.
    pub const REP: u64 = 1 << 3;
    /// SZ8, bit 4: 8-bit operand.
    pub const SZ8: u64 = 1 << 4;
    /// SZ16, bit 5.
    pub const SZ16: u64 = 1 << 5;
    /// SZ32, bit 6.
    pub const SZ32: u64 = 1 << 6;
    /// A16, bit 7: 16-bit address size.
    pub const A16: u64 = 1 << 7;
    /// A32, bit 8.
    pub const A32: u64 = 1 << 8;
    /// A64, bit 9.
    pub const A64: u64 = 1 << 9;
    /// SEG shift, bits 12:10 (segment of OUTS: 0 ES .. 5 GS).
    pub const SEG_SHIFT: u32 = 10;
    /// PORT shift, bits 31:16.
    pub const PORT_SHIFT: u32 = 16;
}

/// IOIO EXITINFO1 (APM 15.10.2): port 31:16, SEG 12:10 (segment of OUTS),
/// A64 9, A32 8, A16 7, SZ32 6, SZ16 5, SZ8 4, REP 3, STR 2, TYPE 0 (1 = IN).
/// Sizes other than 1/2/4 and address sizes other than 2/4/8 set no bit.
pub fn ioio_exitinfo1(
    port: u16,
    size: u8,
    addr_size: u8,
    seg: u8,
    rep: bool,
    string: bool,
    input: bool,
) -> u64 {
    let sz = match size {
        1 => ioio::SZ8,
        2 => ioio::SZ16,
        4 => ioio::SZ32,
        _ => 0,
    };
    let a = match addr_size {
        2 => ioio::A16,
        4 => ioio::A32,
        8 => ioio::A64,
        _ => 0,
    };
    (u64::from(port) << ioio::PORT_SHIFT)
        | (u64::from(seg & 7) << ioio::SEG_SHIFT)
        | a
        | sz
        | if rep { ioio::REP } else { 0 }
        | if string { ioio::STR } else { 0 }
        | if input { ioio::TYPE_IN } else { 0 }
}

/// A decoded IOIO EXITINFO1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IoioInfo {
    /// Port.
    pub port: u16,
    /// Operand size in bytes (0 if no SZ bit is set).
    pub size: u8,
    /// Address size in bytes (0 if no A bit is set).
    pub addr_size: u8,
    /// Segment number (0 ES .. 5 GS).
    pub seg: u8,
    /// REP prefix.
    pub rep: bool,
    /// INS/OUTS.
    pub string: bool,
    /// IN/INS.
    pub input: bool,
}

/// Decodes an IOIO EXITINFO1 (inverse of [`ioio_exitinfo1`]).
pub fn decode_ioio(exitinfo1: u64) -> IoioInfo {
    let e = exitinfo1;
    let size = if e & ioio::SZ8 != 0 {
        1
    } else if e & ioio::SZ16 != 0 {
        2
    } else if e & ioio::SZ32 != 0 {
        4
    } else {
        0
    };
    let addr_size = if e & ioio::A16 != 0 {
        2
    } else if e & ioio::A32 != 0 {
        4
    } else if e & ioio::A64 != 0 {
        8
    } else {
        0
    };
    IoioInfo {
        port: (e >> ioio::PORT_SHIFT) as u16,
        size,
        addr_size,
        seg: ((e >> ioio::SEG_SHIFT) & 7) as u8,
        rep: e & ioio::REP != 0,
        string: e & ioio::STR != 0,
        input: e & ioio::TYPE_IN != 0,
    }
}

/// CR/DR access EXITINFO1 with decode assists (APM 15.33.1): bit 63 = MOV
/// CRx (0 for LMSW/CLTS), bits 3:0 = GPR number.
pub fn crdr_exitinfo1(mov: bool, gpr: u8) -> u64 {
    (u64::from(mov) << 63) | u64::from(gpr & 0xF)
}

/// MSR intercept EXITINFO1 (APM 15.11): 0 = RDMSR, 1 = WRMSR.
pub fn msr_exitinfo1(write: bool) -> u64 {
    u64::from(write)
}

/// Exception intercept EXITINFO1/EXITINFO2 (APM 15.12): the error code (if
/// the exception pushes one) and, for #PF, the faulting address (CR2 value).
pub fn exception_exitinfo(error_code: Option<u32>, address: Option<u64>) -> (u64, u64) {
    (error_code.map_or(0, u64::from), address.unwrap_or(0))
}

/// The kind of event in EVENTINJ / EXITINTINFO (TYPE, bits 10:8; APM 15.20).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// 0: external or virtual interrupt.
    Intr,
    /// 2: NMI.
    Nmi,
    /// 3: exception (fault or trap).
    Exception,
    /// 4: software interrupt (INTn).
    SoftInt,
}

impl EventType {
    /// The TYPE field value.
    pub const fn code(self) -> u64 {
        match self {
            EventType::Intr => 0,
            EventType::Nmi => 2,
            EventType::Exception => 3,
            EventType::SoftInt => 4,
        }
    }
}

/// An event to inject or one that was being delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event {
    /// IDT vector.
    pub vector: u8,
    /// Kind.
    pub kind: EventType,
    /// Error code to push (EV set).
    pub error_code: Option<u32>,
}

/// EVENTINJ / EXITINTINFO bits (APM 15.20).
pub mod event {
    /// VECTOR, bits 7:0.
    pub const VECTOR_MASK: u64 = 0xFF;
    /// TYPE shift, bits 10:8.
    pub const TYPE_SHIFT: u32 = 8;
    /// EV, bit 11: push an error code.
    pub const EV: u64 = 1 << 11;
    /// V, bit 31: valid.
    pub const V: u64 = 1 << 31;
    /// ERRORCODE shift, bits 63:32.
    pub const ERRORCODE_SHIFT: u32 = 32;
}

/// Encodes an event in EVENTINJ / EXITINTINFO format with V set.
pub fn encode_event(e: &Event) -> u64 {
    let ev = e
        .error_code
        .map_or(0, |c| event::EV | (u64::from(c) << event::ERRORCODE_SHIFT));
    u64::from(e.vector) | (e.kind.code() << event::TYPE_SHIFT) | ev | event::V
}

/// Decodes EVENTINJ with the validity rules VMRUN checks (APM 15.20): a
/// reserved TYPE (1, 5, 6, 7) and TYPE 3 with a vector that is not an
/// exception (2, which is the NMI, or above 31) are illegal. For TYPE 2 the
/// APM ignores VECTOR, so an NMI always decodes with vector 2. `Ok(None)`
/// when V = 0.
pub fn decode_eventinj(v: u64) -> Result<Option<Event>, &'static str> {
    if v & event::V == 0 {
        return Ok(None);
    }
    let vector = (v & event::VECTOR_MASK) as u8;
    let kind = match (v >> event::TYPE_SHIFT) & 7 {
        0 => EventType::Intr,
        2 => EventType::Nmi,
        3 => EventType::Exception,
        4 => EventType::SoftInt,
        _ => return Err("EVENTINJ.TYPE is a reserved value"),
    };
    if kind == EventType::Exception && vector == 2 {
        return Err("EVENTINJ injects vector 2 (NMI) as an exception");
    }
    if kind == EventType::Exception && vector > 31 {
        return Err("EVENTINJ injects an exception with a vector above 31");
    }
    let error_code = (v & event::EV != 0).then_some((v >> event::ERRORCODE_SHIFT) as u32);
    Ok(Some(Event {
        vector: if kind == EventType::Nmi { 2 } else { vector },
        kind,
        error_code,
    }))
}

/// NPF EXITINFO1 bits (APM 15.25.6: the #PF error-code bits plus where the
/// fault happened).
pub mod npf {
    /// P, bit 0: the nested entry was present.
    pub const P: u64 = 1 << 0;
    /// RW, bit 1: write access.
    pub const RW: u64 = 1 << 1;
    /// US, bit 2: user access.
    pub const US: u64 = 1 << 2;
    /// RSVD, bit 3: reserved bit set in a nested entry.
    pub const RSVD: u64 = 1 << 3;
    /// ID, bit 4: instruction fetch.
    pub const ID: u64 = 1 << 4;
    /// Bit 32: fault on the final guest-physical address.
    pub const FINAL: u64 = 1 << 32;
    /// Bit 33: fault on a guest page-table access.
    pub const TABLE: u64 = 1 << 33;
}

/// Names the set bits of an NPF EXITINFO1, e.g. "P RW final".
pub fn describe_npf(exitinfo1: u64) -> String {
    let names: [(u64, &str); 7] = [
        (npf::P, "P"),
        (npf::RW, "RW"),
        (npf::US, "US"),
        (npf::RSVD, "RSVD"),
        (npf::ID, "ID"),
        (npf::FINAL, "final"),
        (npf::TABLE, "table"),
    ];
    let set: Vec<&str> = names
        .iter()
        .filter(|(b, _)| exitinfo1 & b != 0)
        .map(|(_, n)| *n)
        .collect();
    if set.is_empty() {
        "not-present".to_string()
    } else {
        set.join(" ")
    }
}

/// A short human suffix for traces, e.g. "port=0x3f8 out size=1".
pub fn describe(exitcode: u64, exitinfo1: u64, exitinfo2: u64) -> String {
    use crate::exitcode as c;
    match exitcode {
        c::VMEXIT_IOIO => {
            let i = decode_ioio(exitinfo1);
            let mut s = format!(
                "port={:#x} {} size={}",
                i.port,
                if i.input { "in" } else { "out" },
                i.size
            );
            if i.string {
                s.push_str(" str");
            }
            if i.rep {
                s.push_str(" rep");
            }
            s
        }
        c::VMEXIT_MSR => if exitinfo1 & 1 != 0 { "wrmsr" } else { "rdmsr" }.to_string(),
        0x000..=0x03F => {
            if exitinfo1 >> 63 != 0 || exitcode >= c::VMEXIT_DR0_READ {
                format!("gpr={}", exitinfo1 & 0xF)
            } else {
                "lmsw/clts/smsw".to_string()
            }
        }
        c::VMEXIT_EXCP14 => format!("error_code={exitinfo1:#x} cr2={exitinfo2:#x}"),
        0x040..=0x05F => format!("error_code={exitinfo1:#x}"),
        c::VMEXIT_NPF => format!("gpa={exitinfo2:#x} {}", describe_npf(exitinfo1)),
        c::VMEXIT_INVLPG => format!("linear={exitinfo1:#x}"),
        c::VMEXIT_SWINT => format!("vector={exitinfo1:#x}"),
        _ => format!("info1={exitinfo1:#x} info2={exitinfo2:#x}"),
    }
}
