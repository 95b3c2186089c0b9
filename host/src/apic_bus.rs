//! Routing between the local APICs, the IOAPIC and the vCPUs: device lines
//! to IOAPIC pins, IOAPIC messages and IPIs to local APICs, level-triggered
//! EOIs back to the IOAPIC, local APIC timers onto the host's timers, and
//! INIT / start-up IPIs to the vCPUs' mailboxes (SDM vol. 3, 11.6 "Issuing
//! Interprocessor Interrupts", 9.4 "Multiple-Processor (MP) Initialization").
//!
//! Lock discipline: at most one local APIC lock is held at a time, and the
//! IOAPIC lock is never held while a local APIC is locked or a message is
//! being delivered.

use crate::apic::{
    ApicEffect, ApicMessage, ApicMode, DeliveryMode, IoApic, Ipi, Lapic, LapicConfig, Received,
};
use crate::bus::BusDevice;
use crate::clock::{TimerSink, Timers, VirtualClock};
use crate::stop::VcpuWaker;
use hyperplug_plugin_api::device::{AddressSpace, TIMER_OFF};
use std::sync::{Arc, Mutex, OnceLock, Weak};

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(e) => e.into_inner(),
    }
}

/// IOAPIC MMIO base (82093AA default; the MADT says the same).
pub const IOAPIC_BASE: u64 = 0xFEC0_0000;
/// Size of the IOAPIC MMIO window the host claims.
pub const IOAPIC_SIZE: u64 = 0x1000;
/// Size of a local APIC register page.
pub const LAPIC_PAGE: u64 = 0x1000;

/// The IOAPIC's ID: after the CPUs' APIC IDs when that fits its 4-bit field.
pub fn ioapic_id(cpus: u32) -> u8 {
    if cpus < 16 {
        cpus as u8
    } else {
        0
    }
}

/// The IOAPIC pin an ISA IRQ line arrives on: IRQ 0 (the PIT) on pin 2, as
/// the MADT's interrupt source override says; the others on their own pin.
pub fn isa_to_gsi(line: u32) -> u32 {
    if line == 0 {
        2
    } else {
        line
    }
}

/// vCPU-level events that are not plain vectors.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Mailbox {
    /// An INIT arrived.
    pub init: bool,
    /// A start-up IPI arrived with this vector (page number).
    pub sipi: Option<u8>,
    /// An NMI arrived.
    pub nmi: bool,
}

struct CpuApic {
    lapic: Mutex<Lapic>,
    waker: Arc<VcpuWaker>,
    mailbox: Mutex<Mailbox>,
    timer_index: OnceLock<usize>,
}

/// The VM's APIC system.
pub struct ApicBus {
    cpus: Vec<CpuApic>,
    ioapic: Mutex<IoApic>,
    clock: Arc<VirtualClock>,
    timers: Arc<Timers>,
}

struct LapicTimer {
    bus: Weak<ApicBus>,
    cpu: usize,
}

impl TimerSink for LapicTimer {
    fn fire(&self, _id: u32) -> Result<(), String> {
        if let Some(bus) = self.bus.upgrade() {
            bus.lapic_timer_fired(self.cpu);
        }
        Ok(())
    }
}

impl ApicBus {
    /// `cpus` local APICs (IDs 0..cpus, vCPU 0 the BSP) and one IOAPIC; each
    /// vCPU gets a waker under `root`.
    pub fn new(
        cpus: u32,
        clock: Arc<VirtualClock>,
        timers: Arc<Timers>,
        root: &VcpuWaker,
    ) -> Result<Arc<Self>, String> {
        let mut v = Vec::new();
        for id in 0..cpus {
            let lapic = Lapic::new(LapicConfig::new(id, id == 0))
                .map_err(|e| format!("local APIC {id}: {e}"))?;
            v.push(CpuApic {
                lapic: Mutex::new(lapic),
                waker: root.child(),
                mailbox: Mutex::new(Mailbox::default()),
                timer_index: OnceLock::new(),
            });
        }
        let ioapic = IoApic::new(ioapic_id(cpus)).map_err(|e| format!("IOAPIC: {e}"))?;
        let bus = Arc::new(ApicBus {
            cpus: v,
            ioapic: Mutex::new(ioapic),
            clock,
            timers,
        });
        for cpu in 0..bus.cpus.len() {
            let idx = bus.timers.register(Arc::new(LapicTimer {
                bus: Arc::downgrade(&bus),
                cpu,
            }));
            let _ = bus.cpus[cpu].timer_index.set(idx);
        }
        Ok(bus)
    }

    /// Number of vCPUs.
    pub fn cpus(&self) -> usize {
        self.cpus.len()
    }

    /// vCPU `cpu`'s waker.
    pub fn waker(&self, cpu: usize) -> Option<&Arc<VcpuWaker>> {
        self.cpus.get(cpu).map(|c| &c.waker)
    }

    /// Runs `f` on vCPU `cpu`'s local APIC.
    pub fn with_lapic<T>(&self, cpu: usize, f: impl FnOnce(&mut Lapic) -> T) -> Option<T> {
        self.cpus.get(cpu).map(|c| f(&mut lock(&c.lapic)))
    }

    /// Takes vCPU `cpu`'s pending INIT/SIPI/NMI events.
    pub fn take_mailbox(&self, cpu: usize) -> Mailbox {
        self.cpus
            .get(cpu)
            .map(|c| std::mem::take(&mut *lock(&c.mailbox)))
            .unwrap_or_default()
    }

    /// Puts back events taken with [`ApicBus::take_mailbox`] (merging with new ones).
    pub fn restore_mailbox(&self, cpu: usize, m: Mailbox) {
        if let Some(c) = self.cpus.get(cpu) {
            let mut b = lock(&c.mailbox);
            b.init |= m.init;
            b.nmi |= m.nmi;
            if b.sipi.is_none() {
                b.sipi = m.sipi;
            }
        }
    }

    /// Whether `gpa` lies in vCPU `cpu`'s active local APIC page.
    pub fn is_lapic_mmio(&self, cpu: usize, gpa: u64) -> bool {
        self.with_lapic(cpu, |l| {
            let base = l.base_address();
            l.mmio_active() && gpa >= base && gpa < base + LAPIC_PAGE
        })
        .unwrap_or(false)
    }

    /// A read of vCPU `cpu`'s local APIC page.
    pub fn lapic_read(&self, cpu: usize, gpa: u64, data: &mut [u8]) {
        let now = self.clock.now_ns();
        self.with_lapic(cpu, |l| {
            let off = gpa - l.base_address();
            l.mmio_read(off, data, now)
        });
        self.rearm_timer(cpu);
    }

    /// A write to vCPU `cpu`'s local APIC page; delivers what it causes.
    pub fn lapic_write(&self, cpu: usize, gpa: u64, data: &[u8]) {
        let now = self.clock.now_ns();
        let effect = self.with_lapic(cpu, |l| {
            let off = gpa - l.base_address();
            l.mmio_write(off, data, now)
        });
        if let Some(e) = effect {
            self.apply_effect(e);
        }
        self.rearm_timer(cpu);
    }

    /// RDMSR of a local APIC MSR on vCPU `cpu`; `None` means #GP(0).
    pub fn lapic_read_msr(&self, cpu: usize, msr: u32) -> Option<u64> {
        let now = self.clock.now_ns();
        let r = self
            .with_lapic(cpu, |l| l.read_msr(msr, now))
            .and_then(|r| r.ok());
        self.rearm_timer(cpu);
        r
    }

    /// WRMSR of a local APIC MSR on vCPU `cpu`; false means #GP(0) (nothing changed).
    pub fn lapic_write_msr(&self, cpu: usize, msr: u32, value: u64) -> bool {
        let now = self.clock.now_ns();
        let r = self.with_lapic(cpu, |l| l.write_msr(msr, value, now));
        let ok = match r {
            Some(Ok(effect)) => {
                self.apply_effect(effect);
                true
            }
            _ => false,
        };
        self.rearm_timer(cpu);
        ok
    }

    /// Writes a local APIC register directly (firmware set-up).
    pub fn lapic_write_register(&self, cpu: usize, offset: u32, value: u32) {
        let now = self.clock.now_ns();
        if let Some(e) = self.with_lapic(cpu, |l| l.write_register(offset, value, now)) {
            self.apply_effect(e);
        }
        self.rearm_timer(cpu);
    }

    fn apply_effect(&self, e: ApicEffect) {
        match e {
            ApicEffect::None => {}
            ApicEffect::Ipi(ipi) => self.deliver_ipi(&ipi),
            ApicEffect::Eoi(eoi) => {
                if eoi.level_triggered {
                    let msgs = lock(&self.ioapic).eoi(eoi.vector);
                    for m in msgs {
                        self.deliver_message(&m);
                    }
                }
            }
        }
    }

    fn deliver_ipi(&self, ipi: &Ipi) {
        for cpu in 0..self.cpus.len() {
            let r = self.with_lapic(cpu, |l| {
                if l.is_ipi_target(ipi) {
                    Some(l.receive_ipi(ipi))
                } else {
                    None
                }
            });
            if let Some(Some(r)) = r {
                self.act(cpu, r);
            }
        }
    }

    /// Delivers an IOAPIC message (SDM vol. 3, 11.6.2 destinations; lowest
    /// priority picks the matching APIC with the lowest arbitration priority).
    pub fn deliver_message(&self, m: &ApicMessage) {
        let targets: Vec<usize> = (0..self.cpus.len())
            .filter(|&c| {
                self.with_lapic(c, |l| l.destination_matches(m.dest, m.dest_logical))
                    .unwrap_or(false)
            })
            .collect();
        let chosen: Vec<usize> = if m.delivery_mode == DeliveryMode::LowestPriority {
            targets
                .iter()
                .copied()
                .min_by_key(|&c| self.with_lapic(c, |l| l.apr()).unwrap_or(u8::MAX))
                .into_iter()
                .collect()
        } else {
            targets
        };
        for cpu in chosen {
            if let Some(r) = self.with_lapic(cpu, |l| l.receive(m)) {
                self.act(cpu, r);
            }
        }
    }

    fn act(&self, cpu: usize, r: Received) {
        let Some(c) = self.cpus.get(cpu) else { return };
        match r {
            Received::Dropped | Received::InitDeassert | Received::Smi => return,
            Received::Accepted(_) | Received::ExtInt => {}
            Received::Nmi => lock(&c.mailbox).nmi = true,
            Received::Init => lock(&c.mailbox).init = true,
            Received::StartUp(v) => lock(&c.mailbox).sipi = Some(v),
        }
        c.waker.wake();
    }

    /// A device line changed: drive the IOAPIC pin it is wired to.
    pub fn set_isa_line(&self, line: u32, level: bool) -> Result<(), String> {
        let gsi = isa_to_gsi(line);
        let msgs = lock(&self.ioapic)
            .set_pin(gsi, level)
            .map_err(|e| e.to_string())?;
        for m in msgs {
            self.deliver_message(&m);
        }
        Ok(())
    }

    /// The vector vCPU `cpu`'s local APIC wants to deliver now, if any.
    pub fn pending_vector(&self, cpu: usize) -> Option<u8> {
        self.with_lapic(cpu, |l| l.pending_vector()).flatten()
    }

    /// The INTA cycle on vCPU `cpu`'s local APIC.
    pub fn acknowledge(&self, cpu: usize) -> Option<u8> {
        self.with_lapic(cpu, |l| l.acknowledge()).flatten()
    }

    /// Whether the 8259A's INTR reaches vCPU `cpu`: only the BSP's, and
    /// only while its local APIC is disabled (PIC mode) or LINT0 is
    /// unmasked in ExtINT mode (virtual wire mode, SDM vol. 3, 11.5.1).
    pub fn pic_reaches(&self, cpu: usize) -> bool {
        cpu == 0
            && self
                .with_lapic(cpu, |l| {
                    l.mode() == ApicMode::Disabled
                        || !l.software_enabled()
                        || l.lint0_mode() == Some(DeliveryMode::ExtInt)
                })
                .unwrap_or(false)
    }

    fn rearm_timer(&self, cpu: usize) {
        let Some(c) = self.cpus.get(cpu) else { return };
        let Some(&idx) = c.timer_index.get() else {
            return;
        };
        let deadline = lock(&c.lapic).timer_deadline_ns();
        self.timers.set(idx, 0, deadline.unwrap_or(TIMER_OFF));
    }

    fn lapic_timer_fired(&self, cpu: usize) {
        let now = self.clock.now_ns();
        if let Some(c) = self.cpus.get(cpu) {
            if lock(&c.lapic).timer_expired(now) {
                c.waker.wake();
            }
        }
        self.rearm_timer(cpu);
    }

    /// Leaves the BSP's local APIC as a BIOS does: software-enabled with
    /// spurious vector 0xFF, LINT0 in ExtINT mode (virtual wire, so the
    /// 8259A's interrupts pass) and LINT1 as NMI (MP spec 1.4, 3.6.2.2).
    pub fn virtual_wire(&self) {
        self.lapic_write_register(0, 0xF0, 0x1FF);
        self.lapic_write_register(0, 0x350, 0x700);
        self.lapic_write_register(0, 0x360, 0x400);
    }
}

/// The IOAPIC's register window on the device bus.
pub struct IoApicMmio(pub Arc<ApicBus>);

impl BusDevice for IoApicMmio {
    fn read(&mut self, _space: AddressSpace, addr: u64, data: &mut [u8]) -> Result<(), String> {
        lock(&self.0.ioapic).mmio_read(addr - IOAPIC_BASE, data);
        Ok(())
    }

    fn write(&mut self, _space: AddressSpace, addr: u64, data: &[u8]) -> Result<(), String> {
        let msgs = lock(&self.0.ioapic).mmio_write(addr - IOAPIC_BASE, data);
        for m in msgs {
            self.0.deliver_message(&m);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bus(cpus: u32) -> (Arc<ApicBus>, Arc<VcpuWaker>) {
        let clock = Arc::new(VirtualClock::default());
        let timers = Arc::new(Timers::new(Arc::clone(&clock), Arc::new(|_| {})));
        let root = Arc::new(VcpuWaker::default());
        (ApicBus::new(cpus, clock, timers, &root).unwrap(), root)
    }

    #[test]
    fn init_sipi_reach_every_ap_mailbox() {
        let (b, _) = bus(4);
        for cpu in 0..4 {
            b.lapic_write_register(cpu, 0xF0, 0x1FF);
        }
        // INIT, all excluding self (ICR shorthand 11b, level assert).
        b.lapic_write_register(0, 0x300, 0x000C_4500);
        // SIPI vector 0x10, all excluding self.
        b.lapic_write_register(0, 0x300, 0x000C_4610);
        assert_eq!(
            b.take_mailbox(0),
            Mailbox::default(),
            "the sender is excluded"
        );
        for ap in 1..4 {
            let m = b.take_mailbox(ap);
            assert!(m.init, "AP {ap} INIT");
            assert_eq!(m.sipi, Some(0x10), "AP {ap} SIPI");
        }
    }

    #[test]
    fn ioapic_line_to_lapic_vector_and_level_eoi() {
        let (b, _) = bus(2);
        b.lapic_write_register(1, 0xF0, 0x1FF);
        // Pin 4: vector 0x41, level-triggered (bit 15), physical destination APIC 1.
        let mut io = IoApicMmio(Arc::clone(&b));
        let reg = |io: &mut IoApicMmio, index: u8, value: u32| {
            io.write(AddressSpace::Mmio, IOAPIC_BASE, &[index]).unwrap();
            io.write(AddressSpace::Mmio, IOAPIC_BASE + 0x10, &value.to_le_bytes())
                .unwrap();
        };
        reg(&mut io, 0x10 + 8, 0x41 | (1 << 15));
        reg(&mut io, 0x10 + 9, 1 << 24);
        b.set_isa_line(4, true).unwrap();
        assert_eq!(b.pending_vector(1), Some(0x41));
        assert_eq!(b.pending_vector(0), None);
        assert_eq!(b.acknowledge(1), Some(0x41));
        // EOI while the line is still high: the IOAPIC re-delivers.
        b.lapic_write(1, 0xFEE0_00B0, &0u32.to_le_bytes());
        assert_eq!(b.pending_vector(1), Some(0x41));
    }

    #[test]
    fn pic_reaches_only_the_bsp_in_virtual_wire_or_pic_mode() {
        let (b, _) = bus(2);
        assert!(b.pic_reaches(0), "software-disabled APIC: PIC mode");
        assert!(!b.pic_reaches(1));
        b.lapic_write_register(0, 0xF0, 0x1FF); // enabled, LINT0 still masked
        assert!(!b.pic_reaches(0));
        b.virtual_wire();
        assert!(b.pic_reaches(0));
    }

    #[test]
    fn x2apic_msrs_through_the_bus() {
        let (b, _) = bus(2);
        // Enable x2APIC: IA32_APIC_BASE = base | EN (11) | EXTD (10) | BSP (8).
        assert!(b.lapic_write_msr(0, 0x1B, 0xFEE0_0000 | (1 << 11) | (1 << 10) | (1 << 8)));
        assert_eq!(b.lapic_read_msr(0, 0x802), Some(0), "x2APIC ID of vCPU 0");
        assert_eq!(
            b.lapic_read_msr(1, 0x802),
            None,
            "vCPU 1 is still in xAPIC mode: #GP"
        );
        assert!(b.lapic_write_msr(0, 0x80F, 0x1FF), "SVR");
        // Self IPI, vector 0x55.
        assert!(b.lapic_write_msr(0, 0x83F, 0x55));
        assert_eq!(b.pending_vector(0), Some(0x55));
        assert!(!b.lapic_write_msr(0, 0x802, 5), "the ID is read-only: #GP");
    }

    #[test]
    fn isa_irq0_is_gsi2() {
        assert_eq!(isa_to_gsi(0), 2);
        assert_eq!(isa_to_gsi(8), 8);
        assert_eq!(ioapic_id(4), 4);
        assert_eq!(ioapic_id(64), 0);
    }
}
