//! A KVM VM: memory slots and vCPU creation. No in-kernel irqchip: the host
//! owns the PIC/IOAPIC/LAPIC and injects with `KVM_INTERRUPT`.

use crate::cpuid::{hide_absent_apic, set_apic_id};
use crate::detect::{check_kvm, open_kvm};
use crate::vcpu::KvmVcpu;
use crate::{log, os_err};
use hyperplug_plugin_api::backend::{BackendHost, LogLevel, MemorySlot, Vm, VmConfig};
use hyperplug_plugin_api::PluginError;
use kvm_bindings::{
    kvm_cpuid_entry2, kvm_userspace_memory_region, CpuId, KVM_MAX_CPUID_ENTRIES,
    KVM_MEM_LOG_DIRTY_PAGES, KVM_MEM_READONLY,
};
use kvm_ioctls::{Cap, Kvm, VmFd};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, MutexGuard};

/// Page size memory slots must be aligned to.
pub const PAGE_SIZE: u64 = 4096;

/// Guest-physical address of the 3-page TSS KVM needs for real mode on VMX
/// (just below the 4 GiB BIOS area; it must not overlap guest RAM or MMIO).
pub const TSS_ADDRESS: usize = 0xfffb_d000;
/// Guest-physical address of KVM's one-page identity-map table (just below the TSS).
pub const IDENTITY_MAP_ADDRESS: u64 = 0xfffb_c000;

/// What the VM learned about this KVM when it was created.
#[derive(Debug, Clone, Copy)]
pub struct VmCaps {
    /// `KVM_CAP_READONLY_MEM`.
    pub readonly_mem: bool,
    /// `KVM_CAP_XSAVE`.
    pub xsave: bool,
    /// `KVM_CAP_XSAVE2`: size of the whole `kvm_xsave` in bytes (4096 if absent).
    pub xsave_size: usize,
    /// `KVM_CAP_NR_MEMSLOTS`.
    pub max_slots: usize,
    /// `KVM_CAP_MAX_VCPU_ID`.
    pub max_vcpu_id: usize,
    /// Size of the kvm_run mapping (`KVM_GET_VCPU_MMAP_SIZE`).
    pub run_size: usize,
}

/// A VM on /dev/kvm.
pub struct KvmVm {
    fd: VmFd,
    host: Option<BackendHost>,
    caps: VmCaps,
    cpuid: Vec<kvm_cpuid_entry2>,
    slots: Mutex<BTreeMap<u32, MemorySlot>>,
    vcpus: Mutex<BTreeSet<u32>>,
    // Kept open for the VM's lifetime (system ioctls).
    _kvm: Kvm,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn range(s: &MemorySlot) -> String {
    format!(
        "[{:#x}, {:#x})",
        s.guest_phys_addr,
        s.guest_phys_addr.saturating_add(s.size)
    )
}

impl KvmVm {
    /// Opens /dev/kvm and creates a VM; `host` receives log messages.
    pub fn new(host: Option<BackendHost>, config: &VmConfig) -> Result<Self, PluginError> {
        let kvm = open_kvm().map_err(PluginError::unsupported)?;
        check_kvm(&kvm).map_err(PluginError::unsupported)?;
        let max_vcpus = kvm.get_max_vcpus();
        if config.vcpus == 0 || config.vcpus as usize > max_vcpus {
            return Err(PluginError::invalid(format!(
                "kvm: {} vCPUs requested, this KVM allows 1 to {max_vcpus}",
                config.vcpus
            )));
        }
        let fd = kvm.create_vm().map_err(|e| os_err("KVM_CREATE_VM", e))?;
        // VMX needs these two guest-physical pages to run real mode; other
        // implementations refuse or ignore them, which is harmless.
        if let Err(e) = fd.set_identity_map_address(IDENTITY_MAP_ADDRESS) {
            log(
                &host,
                LogLevel::Debug,
                &format!("KVM_SET_IDENTITY_MAP_ADDR {IDENTITY_MAP_ADDRESS:#x} refused: {e}"),
            );
        }
        if let Err(e) = fd.set_tss_address(TSS_ADDRESS) {
            log(
                &host,
                LogLevel::Debug,
                &format!("KVM_SET_TSS_ADDR {TSS_ADDRESS:#x} refused: {e}"),
            );
        }
        let xsave2 = fd.check_extension_int(Cap::Xsave2);
        let caps = VmCaps {
            readonly_mem: fd.check_extension(Cap::ReadonlyMem),
            xsave: kvm.check_extension(Cap::Xsave),
            xsave_size: usize::try_from(xsave2)
                .ok()
                .filter(|&n| n >= crate::convert::XSAVE_LEGACY_BYTES)
                .unwrap_or(crate::convert::XSAVE_LEGACY_BYTES),
            max_slots: kvm.get_nr_memslots(),
            max_vcpu_id: kvm.get_max_vcpu_id(),
            run_size: kvm
                .get_vcpu_mmap_size()
                .map_err(|e| os_err("KVM_GET_VCPU_MMAP_SIZE", e))?,
        };
        let cpuid = kvm
            .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
            .map_err(|e| os_err("KVM_GET_SUPPORTED_CPUID", e))?
            .as_slice()
            .to_vec();
        let mut cpuid = cpuid;
        let host_lapic = config.flags & VmConfig::HOST_LAPIC != 0;
        if host_lapic {
            if let Err(e) = crate::msr::forward_apic_msrs(&fd) {
                log(
                    &host,
                    LogLevel::Info,
                    &format!("IA32_APIC_BASE stays in KVM: {e}"),
                );
            }
        }
        // x2APIC MSRs cannot reach a user-space local APIC (see msr.rs).
        hide_absent_apic(&mut cpuid, host_lapic, false);
        log(
            &host,
            LogLevel::Debug,
            &format!("kvm VM created: {caps:?}, {} CPUID entries", cpuid.len()),
        );
        Ok(Self {
            fd,
            host,
            caps,
            cpuid,
            slots: Mutex::new(BTreeMap::new()),
            vcpus: Mutex::new(BTreeSet::new()),
            _kvm: kvm,
        })
    }

    /// What this KVM supports.
    pub fn caps(&self) -> VmCaps {
        self.caps
    }

    /// The slots currently mapped, by id.
    pub fn slots(&self) -> Vec<MemorySlot> {
        lock(&self.slots).values().copied().collect()
    }

    /// Checks `slot` against the rules and the existing slots; returns the KVM flags.
    fn validate(
        &self,
        slot: &MemorySlot,
        existing: &BTreeMap<u32, MemorySlot>,
    ) -> Result<u32, PluginError> {
        let id = slot.id;
        let known = MemorySlot::READONLY | MemorySlot::LOG_DIRTY;
        if slot.flags & !known != 0 {
            return Err(PluginError::invalid(format!(
                "memory slot {id}: unknown flags {:#x}",
                slot.flags & !known
            )));
        }
        if id as usize >= self.caps.max_slots {
            return Err(PluginError::invalid(format!(
                "memory slot {id}: id out of range (this KVM has {} slots)",
                self.caps.max_slots
            )));
        }
        if slot.size == 0 {
            return Err(PluginError::invalid(format!(
                "memory slot {id}: size is 0 (use remove_memory_slot to unmap)"
            )));
        }
        for (what, v) in [
            ("guest_phys_addr", slot.guest_phys_addr),
            ("size", slot.size),
            ("host_addr", slot.host_addr),
        ] {
            if v & (PAGE_SIZE - 1) != 0 {
                return Err(PluginError::invalid(format!(
                    "memory slot {id}: {what} {v:#x} is not 4 KiB aligned"
                )));
            }
        }
        if slot.host_addr == 0 {
            return Err(PluginError::invalid(format!(
                "memory slot {id}: host_addr is null"
            )));
        }
        if slot.guest_phys_addr.checked_add(slot.size).is_none()
            || slot.host_addr.checked_add(slot.size).is_none()
        {
            return Err(PluginError::invalid(format!(
                "memory slot {id}: range wraps around the address space"
            )));
        }
        if existing.contains_key(&id) {
            return Err(PluginError::invalid(format!(
                "memory slot {id}: id already in use"
            )));
        }
        if let Some(other) = existing.values().find(|o| o.overlaps(slot)) {
            return Err(PluginError::invalid(format!(
                "memory slot {id} {} overlaps slot {} {}",
                range(slot),
                other.id,
                range(other)
            )));
        }
        let mut flags = 0;
        if slot.flags & MemorySlot::READONLY != 0 {
            if !self.caps.readonly_mem {
                return Err(PluginError::unsupported(format!(
                    "memory slot {id}: read-only slots need KVM_CAP_READONLY_MEM, which this KVM lacks"
                )));
            }
            flags |= KVM_MEM_READONLY;
        }
        if slot.flags & MemorySlot::LOG_DIRTY != 0 {
            flags |= KVM_MEM_LOG_DIRTY_PAGES;
        }
        Ok(flags)
    }
}

impl Vm for KvmVm {
    type Vcpu = KvmVcpu;

    fn add_memory_slot(&self, slot: MemorySlot) -> Result<(), PluginError> {
        let mut slots = lock(&self.slots);
        let flags = self.validate(&slot, &slots)?;
        let region = kvm_userspace_memory_region {
            slot: slot.id,
            flags,
            guest_phys_addr: slot.guest_phys_addr,
            memory_size: slot.size,
            userspace_addr: slot.host_addr,
        };
        // SAFETY: the host guarantees (MemorySlot contract) that
        // host_addr..host_addr+size stays mapped until the slot is removed; the
        // range was checked for alignment, wrap-around and overlap above.
        unsafe { self.fd.set_user_memory_region(region) }.map_err(|e| {
            os_err(
                &format!(
                    "KVM_SET_USER_MEMORY_REGION slot {} {}",
                    slot.id,
                    range(&slot)
                ),
                e,
            )
        })?;
        slots.insert(slot.id, slot);
        Ok(())
    }

    fn remove_memory_slot(&self, id: u32) -> Result<(), PluginError> {
        let mut slots = lock(&self.slots);
        let Some(slot) = slots.get(&id).copied() else {
            return Err(PluginError::invalid(format!(
                "memory slot {id}: no such slot"
            )));
        };
        let region = kvm_userspace_memory_region {
            slot: id,
            flags: 0,
            guest_phys_addr: slot.guest_phys_addr,
            memory_size: 0,
            userspace_addr: slot.host_addr,
        };
        // SAFETY: a zero-sized region deletes the slot; KVM stops using the memory.
        unsafe { self.fd.set_user_memory_region(region) }
            .map_err(|e| os_err(&format!("KVM_SET_USER_MEMORY_REGION delete slot {id}"), e))?;
        slots.remove(&id);
        Ok(())
    }

    fn create_vcpu(&self, id: u32) -> Result<KvmVcpu, PluginError> {
        if id as usize >= self.caps.max_vcpu_id {
            return Err(PluginError::invalid(format!(
                "vCPU {id}: id out of range (this KVM allows ids below {})",
                self.caps.max_vcpu_id
            )));
        }
        let mut vcpus = lock(&self.vcpus);
        if vcpus.contains(&id) {
            return Err(PluginError::invalid(format!("vCPU {id} already exists")));
        }
        let fd = self
            .fd
            .create_vcpu(u64::from(id))
            .map_err(|e| os_err(&format!("KVM_CREATE_VCPU {id}"), e))?;
        let mut entries = self.cpuid.clone();
        set_apic_id(&mut entries, id);
        let cpuid = CpuId::from_entries(&entries)
            .map_err(|e| PluginError::other(format!("vCPU {id}: CPUID table: {e:?}")))?;
        fd.set_cpuid2(&cpuid)
            .map_err(|e| os_err(&format!("KVM_SET_CPUID2 vCPU {id}"), e))?;
        let vcpu = KvmVcpu::new(fd, id, self.caps, self.host.clone())?;
        vcpus.insert(id);
        Ok(vcpu)
    }
}
