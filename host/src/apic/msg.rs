//! Messages between the interrupt controllers: delivery modes, IPIs from a
//! local APIC's ICR, interrupt messages from the IOAPIC, and the effects a
//! register access has outside the controller that took it.
//!
//! Encodings follow the Intel SDM vol. 3, chapter 11: the delivery-mode field
//! (bits 10:8) is the same in the ICR (11.6.1, Figure 11-12), the LVT entries
//! (11.5.1, Figure 11-8) and the IOAPIC redirection entries (82093AA datasheet,
//! 3.2.4).

/// Physical destination that addresses every local APIC: 0xFF in xAPIC
/// format (11.6.2.1), 0xFFFF_FFFF in x2APIC format (11.12.10). A message
/// carrying this value broadcasts in both modes because xAPIC matching only
/// looks at the low 8 bits.
pub const BROADCAST: u32 = 0xFFFF_FFFF;

/// The 8-bit xAPIC broadcast destination (11.6.2.1).
pub const XAPIC_BROADCAST: u32 = 0xFF;

/// Delivery mode, bits 10:8 of the ICR, an LVT entry or a redirection entry
/// (SDM 11.5.1, 11.6.1; 82093AA 3.2.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeliveryMode {
    /// 000b: the vector is delivered as a maskable interrupt.
    Fixed,
    /// 001b: to the target with the lowest priority (ICR and IOAPIC only).
    LowestPriority,
    /// 010b: system management interrupt; the vector is ignored.
    Smi,
    /// 100b: non-maskable interrupt; the vector is ignored.
    Nmi,
    /// 101b: INIT signal; the vector is ignored.
    Init,
    /// 110b: start-up IPI (ICR only); the vector is the start page.
    StartUp,
    /// 111b: the vector comes from an external 8259A (LVT and IOAPIC only).
    ExtInt,
}

impl DeliveryMode {
    /// Decodes bits 10:8 (already shifted down); None for the reserved 011b.
    pub fn from_bits(bits: u32) -> Option<Self> {
        match bits & 7 {
            0 => Some(Self::Fixed),
            1 => Some(Self::LowestPriority),
            2 => Some(Self::Smi),
            4 => Some(Self::Nmi),
            5 => Some(Self::Init),
            6 => Some(Self::StartUp),
            7 => Some(Self::ExtInt),
            _ => None,
        }
    }

    /// The 3-bit encoding (not shifted).
    pub fn bits(self) -> u32 {
        match self {
            Self::Fixed => 0,
            Self::LowestPriority => 1,
            Self::Smi => 2,
            Self::Nmi => 4,
            Self::Init => 5,
            Self::StartUp => 6,
            Self::ExtInt => 7,
        }
    }

    /// Whether the mode carries a vector that must be 16..=255 (fixed and
    /// lowest priority; 11.5.2).
    pub fn uses_vector(self) -> bool {
        matches!(self, Self::Fixed | Self::LowestPriority)
    }
}

/// ICR destination shorthand, bits 19:18 (SDM 11.6.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Shorthand {
    /// 00b: the destination field selects the targets.
    None,
    /// 01b: the sender only.
    SelfOnly,
    /// 10b: every local APIC, the sender included.
    AllIncludingSelf,
    /// 11b: every local APIC but the sender.
    AllExcludingSelf,
}

impl Shorthand {
    /// Decodes bits 19:18 (already shifted down).
    pub fn from_bits(bits: u32) -> Self {
        match bits & 3 {
            0 => Self::None,
            1 => Self::SelfOnly,
            2 => Self::AllIncludingSelf,
            _ => Self::AllExcludingSelf,
        }
    }
}

/// What an IPI asks of its targets (SDM 11.6.1, ICR delivery mode plus the
/// level/trigger bits that turn INIT into INIT level de-assert).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IpiKind {
    /// Fixed interrupt with this vector.
    Fixed(u8),
    /// Lowest-priority interrupt with this vector (the host picks one target).
    LowestPriority(u8),
    /// System management interrupt.
    Smi,
    /// Non-maskable interrupt.
    Nmi,
    /// INIT (level assert).
    Init,
    /// INIT level de-assert (INIT with level 0 and trigger mode level): the
    /// arbitration-ID synchronisation of older processors; no effect on a
    /// vCPU's execution (11.4.7.4).
    InitDeassert,
    /// Start-up IPI; the vector is the 4-KiB page the AP starts at
    /// (execution begins at vector << 12 in real mode, 11.6.1).
    StartUp(u8),
}

/// An inter-processor interrupt produced by a write to the ICR (xAPIC
/// 0x300, x2APIC MSR 0x830) or the x2APIC SELF IPI register.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipi {
    /// APIC ID of the sender (needed by the self/all-excluding-self shorthands).
    pub source: u32,
    /// What to deliver.
    pub kind: IpiKind,
    /// Destination field: ICR[63:56] in xAPIC mode, ICR[63:32] in x2APIC mode.
    pub dest: u32,
    /// Destination mode bit 11: logical when true, physical when false.
    pub dest_logical: bool,
    /// Destination shorthand, bits 19:18.
    pub shorthand: Shorthand,
    /// Level bit 14 (1 = assert).
    pub level_assert: bool,
    /// Trigger-mode bit 15 (1 = level).
    pub level_triggered: bool,
}

/// An interrupt message from the IOAPIC (82093AA 3.2.4 redirection entry)
/// or any other source that addresses local APICs by destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ApicMessage {
    /// Destination: an APIC ID (physical) or a logical mask/cluster
    /// (logical); a physical 0xFF from an 8-bit source is sent as
    /// [`BROADCAST`] so x2APIC-mode targets also see a broadcast.
    pub dest: u32,
    /// Logical destination mode when true.
    pub dest_logical: bool,
    /// Vector (ignored for SMI, NMI, INIT and ExtINT).
    pub vector: u8,
    /// How the targets take it.
    pub delivery_mode: DeliveryMode,
    /// Level-triggered: the target sets TMR and owes an EOI to the source.
    pub level_triggered: bool,
}

/// The effect of an EOI: the vector that left the ISR and whether it was
/// level-triggered (TMR set), in which case the host broadcasts an EOI to
/// the IOAPIC (`IoApic::eoi`), SDM 11.8.5.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EoiEffect {
    /// The vector that was in service.
    pub vector: u8,
    /// TMR was set for it.
    pub level_triggered: bool,
}

/// What a local APIC register write asks the host to do afterwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ApicEffect {
    /// Nothing beyond the register change itself.
    None,
    /// Deliver this IPI to its targets (delivery is immediate: the ICR's
    /// delivery-status bit always reads 0).
    Ipi(Ipi),
    /// An EOI retired a vector.
    Eoi(EoiEffect),
}

/// How a local APIC took an interrupt that arrived on a message, a LINT pin
/// or an IPI: what the vCPU has to do about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Received {
    /// Dropped: masked, software-disabled APIC, or an illegal vector
    /// (recorded in the ESR).
    Dropped,
    /// The vector is now in the IRR; ask `pending_vector` / `acknowledge`.
    Accepted(u8),
    /// Raise NMI on the vCPU.
    Nmi,
    /// Raise SMI on the vCPU.
    Smi,
    /// INIT the vCPU (the local APIC has already done its INIT reset).
    Init,
    /// INIT level de-assert: nothing to do on a modern vCPU.
    InitDeassert,
    /// Start-up IPI with this vector (page number) for a vCPU waiting for SIPI.
    StartUp(u8),
    /// External interrupt: take the vector from the 8259A PIC (its INTA).
    ExtInt,
}
