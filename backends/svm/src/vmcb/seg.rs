//! VMCB segment slots: selector, attributes, limit, base (AMD APM vol. 2,
//! appendix B, Table B-2 offsets 0x400-0x49F; attribute format per 15.5.1
//! "Segment state in the VMCB").

use hyperplug_plugin_api::state::Segment;

/// One segment or descriptor-table register as the VMCB stores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VmcbSeg {
    /// Selector (+0).
    pub selector: u16,
    /// Attributes (+2): type 3:0, S 4, DPL 6:5, P 7, AVL 8, L 9, D/B 10, G 11.
    pub attrib: u16,
    /// Limit (+4), expanded to bytes.
    pub limit: u32,
    /// Base (+8).
    pub base: u64,
}

/// The ten segment slots of the state save area, in VMCB order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegReg {
    /// ES at 0x400.
    Es,
    /// CS at 0x410.
    Cs,
    /// SS at 0x420.
    Ss,
    /// DS at 0x430.
    Ds,
    /// FS at 0x440.
    Fs,
    /// GS at 0x450.
    Gs,
    /// GDTR at 0x460 (limit and base only).
    Gdtr,
    /// LDTR at 0x470.
    Ldtr,
    /// IDTR at 0x480 (limit and base only).
    Idtr,
    /// TR at 0x490.
    Tr,
}

impl SegReg {
    /// All slots in VMCB order.
    pub const ALL: [SegReg; 10] = [
        SegReg::Es,
        SegReg::Cs,
        SegReg::Ss,
        SegReg::Ds,
        SegReg::Fs,
        SegReg::Gs,
        SegReg::Gdtr,
        SegReg::Ldtr,
        SegReg::Idtr,
        SegReg::Tr,
    ];

    /// Byte offset of the slot (Table B-2: 0x400 + 16 * index).
    pub const fn offset(self) -> usize {
        0x400 + 16 * self as usize
    }

    /// The APM's name of the slot.
    pub const fn name(self) -> &'static str {
        match self {
            SegReg::Es => "ES",
            SegReg::Cs => "CS",
            SegReg::Ss => "SS",
            SegReg::Ds => "DS",
            SegReg::Fs => "FS",
            SegReg::Gs => "GS",
            SegReg::Gdtr => "GDTR",
            SegReg::Ldtr => "LDTR",
            SegReg::Idtr => "IDTR",
            SegReg::Tr => "TR",
        }
    }
}

/// VMCB segment attribute bits (APM vol. 2, 15.5.1: descriptor bits 47:40
/// in attrib 7:0 and descriptor bits 55:52 in attrib 11:8).
pub mod attr {
    /// Type, bits 3:0.
    pub const TYPE_MASK: u16 = 0xF;
    /// S (code/data), bit 4.
    pub const S: u16 = 1 << 4;
    /// DPL shift, bits 6:5.
    pub const DPL_SHIFT: u16 = 5;
    /// P (present), bit 7.
    pub const P: u16 = 1 << 7;
    /// AVL, bit 8.
    pub const AVL: u16 = 1 << 8;
    /// L (64-bit code), bit 9.
    pub const L: u16 = 1 << 9;
    /// D/B, bit 10.
    pub const DB: u16 = 1 << 10;
    /// G (granularity), bit 11.
    pub const G: u16 = 1 << 11;
}

impl VmcbSeg {
    /// DPL from the attributes (bits 6:5).
    pub const fn dpl(&self) -> u8 {
        ((self.attrib >> attr::DPL_SHIFT) & 3) as u8
    }

    /// Converts a plugin-api segment; an unusable (or not present) segment gets P = 0.
    pub fn from_segment(s: &Segment) -> Self {
        let bit = |v: u8, b: u16| if v != 0 { b } else { 0 };
        let present = s.present != 0 && s.unusable == 0;
        let attrib = (u16::from(s.type_) & attr::TYPE_MASK)
            | bit(s.s, attr::S)
            | (u16::from(s.dpl & 3) << attr::DPL_SHIFT)
            | if present { attr::P } else { 0 }
            | bit(s.avl, attr::AVL)
            | bit(s.l, attr::L)
            | bit(s.db, attr::DB)
            | bit(s.g, attr::G);
        Self {
            selector: s.selector,
            attrib,
            limit: s.limit,
            base: s.base,
        }
    }

    /// Converts to a plugin-api segment; P = 0 makes it unusable.
    pub fn to_segment(&self) -> Segment {
        let a = self.attrib;
        let flag = |b: u16| u8::from(a & b != 0);
        Segment {
            base: self.base,
            limit: self.limit,
            selector: self.selector,
            type_: (a & attr::TYPE_MASK) as u8,
            present: flag(attr::P),
            dpl: self.dpl(),
            db: flag(attr::DB),
            s: flag(attr::S),
            l: flag(attr::L),
            g: flag(attr::G),
            avl: flag(attr::AVL),
            unusable: u8::from(a & attr::P == 0),
            padding: 0,
        }
    }
}
