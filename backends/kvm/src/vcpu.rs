//! A KVM vCPU: `KVM_RUN`, exit completion, interrupt injection, state access.

use crate::convert::*;
use crate::exit::{decode, interrupted, Pending};
use crate::ioctl::{KVM_INTERRUPT, KVM_RUN};
use crate::kick::{install_kick_handler, KickShared, KvmKicker, RunMapping};
use crate::vm::VmCaps;
use crate::{log, os_err};
use hyperplug_plugin_api::backend::{kicker_into_ffi, BackendHost, LogLevel, Vcpu, VcpuKicker};
use hyperplug_plugin_api::state::{Fpu, MsrEntry, Regs, Sregs, VcpuEvents, Xsave};
use hyperplug_plugin_api::{Exit, ExitReason, PluginError};
use kvm_bindings::{
    kvm_interrupt, kvm_msr_entry, kvm_run, kvm_xsave, Msrs, KVM_EXIT_MEMORY_FAULT,
    KVM_MAX_MSR_ENTRIES,
};
use kvm_ioctls::VcpuFd;
use std::os::unix::io::AsRawFd;
use std::sync::Arc;

/// A vCPU on a KVM VM.
pub struct KvmVcpu {
    fd: VcpuFd,
    id: u32,
    caps: VmCaps,
    pending: Pending,
    host: Option<BackendHost>,
    kick: Arc<KickShared>,
    map: RunMapping,
}

impl KvmVcpu {
    pub(crate) fn new(
        fd: VcpuFd,
        id: u32,
        caps: VmCaps,
        host: Option<BackendHost>,
    ) -> Result<Self, PluginError> {
        install_kick_handler();
        let map = RunMapping::new(fd.as_raw_fd(), caps.run_size)
            .map_err(|e| PluginError::os(format!("mmap of vCPU {id}'s kvm_run: {e}")))?;
        Ok(Self {
            fd,
            id,
            caps,
            pending: Pending::None,
            host,
            kick: Arc::new(KickShared::default()),
            map,
        })
    }

    /// This vCPU's id.
    pub fn id(&self) -> u32 {
        self.id
    }

    fn run_ptr(&mut self) -> *mut kvm_run {
        self.map.run()
    }

    fn run_ref(&mut self) -> &mut kvm_run {
        // SAFETY: the mapping is at least size_of::<kvm_run>() bytes (KVM's mmap
        // size covers it), lives as long as `self`, and `&mut self` makes this
        // the only reference; the kick handler writes it only during KVM_RUN.
        unsafe { &mut *self.map.run() }
    }

    fn exit_after_error(&mut self, err: std::io::Error) -> Result<Exit, PluginError> {
        match err.raw_os_error() {
            Some(libc::EINTR) => return Ok(interrupted("EINTR")),
            Some(libc::EAGAIN) => return Ok(interrupted("EAGAIN")),
            _ => {}
        }
        let run = self.run_ref();
        if err.raw_os_error() == Some(libc::EFAULT) && run.exit_reason == KVM_EXIT_MEMORY_FAULT {
            // SAFETY: KVM_RUN failed with EFAULT and exit_reason is KVM_EXIT_MEMORY_FAULT, so
            // `memory_fault` is the live union member (plain integers).
            let f = unsafe { run.__bindgen_anon_1.memory_fault };
            let d = format!("gpa={:#x} size={:#x} flags={:#x}", f.gpa, f.size, f.flags);
            return Ok(Exit::new(
                ExitReason::InternalError {
                    description: format!("KVM memory fault: {d}").into(),
                },
                KVM_EXIT_MEMORY_FAULT.into(),
                "KVM_EXIT_MEMORY_FAULT",
                d,
            ));
        }
        Err(PluginError::os(format!("KVM_RUN vCPU {}: {err}", self.id)))
    }
}

/// Splits `n` items into chunks KVM's MSR ioctls accept.
fn msr_chunks<T>(items: &[T]) -> impl Iterator<Item = &[T]> {
    items.chunks(KVM_MAX_MSR_ENTRIES)
}

impl Vcpu for KvmVcpu {
    fn get_regs(&mut self) -> Result<Regs, PluginError> {
        self.fd
            .get_regs()
            .map(|r| regs_from_kvm(&r))
            .map_err(|e| os_err("KVM_GET_REGS", e))
    }

    fn set_regs(&mut self, regs: &Regs) -> Result<(), PluginError> {
        self.fd
            .set_regs(&regs_to_kvm(regs))
            .map_err(|e| os_err("KVM_SET_REGS", e))
    }

    fn get_sregs(&mut self) -> Result<Sregs, PluginError> {
        self.fd
            .get_sregs()
            .map(|s| sregs_from_kvm(&s))
            .map_err(|e| os_err("KVM_GET_SREGS", e))
    }

    fn set_sregs(&mut self, sregs: &Sregs) -> Result<(), PluginError> {
        self.fd
            .set_sregs(&sregs_to_kvm(sregs))
            .map_err(|e| os_err("KVM_SET_SREGS", e))
    }

    fn get_fpu(&mut self) -> Result<Fpu, PluginError> {
        self.fd
            .get_fpu()
            .map(|f| fpu_from_kvm(&f))
            .map_err(|e| os_err("KVM_GET_FPU", e))
    }

    fn set_fpu(&mut self, fpu: &Fpu) -> Result<(), PluginError> {
        self.fd
            .set_fpu(&fpu_to_kvm(fpu))
            .map_err(|e| os_err("KVM_SET_FPU", e))
    }

    fn get_xsave(&mut self) -> Result<Xsave, PluginError> {
        if !self.caps.xsave {
            return Err(PluginError::unsupported(
                "KVM_GET_XSAVE: this KVM lacks KVM_CAP_XSAVE",
            ));
        }
        let extra = (self.caps.xsave_size - XSAVE_LEGACY_BYTES) / 4;
        let words: Vec<u32> = if extra == 0 {
            let x = self
                .fd
                .get_xsave()
                .map_err(|e| os_err("KVM_GET_XSAVE", e))?;
            x.region.to_vec()
        } else {
            let mut x = kvm_bindings::Xsave::new(extra)
                .map_err(|e| PluginError::other(format!("KVM_GET_XSAVE2: buffer: {e:?}")))?;
            // SAFETY: `x` was allocated with the FAM length derived from KVM_CAP_XSAVE2,
            // so it holds the whole structure KVM writes.
            unsafe { self.fd.get_xsave2(&mut x) }.map_err(|e| os_err("KVM_GET_XSAVE2", e))?;
            let mut w = x.as_fam_struct_ref().xsave.region.to_vec();
            w.extend_from_slice(x.as_slice());
            w
        };
        Ok(Xsave {
            region: xsave_words_to_bytes(&words).into(),
        })
    }

    fn set_xsave(&mut self, xsave: &Xsave) -> Result<(), PluginError> {
        if !self.caps.xsave {
            return Err(PluginError::unsupported(
                "KVM_SET_XSAVE: this KVM lacks KVM_CAP_XSAVE",
            ));
        }
        let full = self.caps.xsave_size;
        let len = xsave.region.len();
        if len != XSAVE_LEGACY_BYTES && len != full {
            return Err(PluginError::invalid(format!(
                "xsave: region is {len} bytes, expected {XSAVE_LEGACY_BYTES} or {full}"
            )));
        }
        let mut words = xsave_bytes_to_words(&xsave.region)?;
        // A legacy-sized image on a larger XSAVE layout: extended components beyond
        // 4 KiB start in their initial (zero) state.
        words.resize(full / 4, 0);
        let (region, extra) = words.split_at(XSAVE_LEGACY_BYTES / 4);
        if extra.is_empty() {
            let mut x = kvm_xsave::default();
            x.region.copy_from_slice(region);
            // SAFETY: KVM_CAP_XSAVE2 reported no more than sizeof(kvm_xsave), so KVM reads
            // exactly the 4096 bytes of `x`.
            unsafe { self.fd.set_xsave(&x) }.map_err(|e| os_err("KVM_SET_XSAVE", e))
        } else {
            let mut x = kvm_bindings::Xsave::new(extra.len())
                .map_err(|e| PluginError::other(format!("KVM_SET_XSAVE: buffer: {e:?}")))?;
            // SAFETY: only plain u32 words are written into the owned buffer.
            unsafe { x.as_mut_fam_struct() }
                .xsave
                .region
                .copy_from_slice(region);
            x.as_mut_slice().copy_from_slice(extra);
            // SAFETY: `x` holds the full KVM_CAP_XSAVE2 size KVM reads.
            unsafe { self.fd.set_xsave2(&x) }.map_err(|e| os_err("KVM_SET_XSAVE", e))
        }
    }

    fn get_msrs(&mut self, indices: &[u32]) -> Result<Vec<MsrEntry>, PluginError> {
        let mut out = Vec::with_capacity(indices.len());
        for chunk in msr_chunks(indices) {
            let mut rest = chunk;
            while !rest.is_empty() {
                let entries: Vec<kvm_msr_entry> = rest
                    .iter()
                    .map(|&index| kvm_msr_entry {
                        index,
                        ..Default::default()
                    })
                    .collect();
                let mut msrs = Msrs::from_entries(&entries)
                    .map_err(|e| PluginError::other(format!("KVM_GET_MSRS: buffer: {e:?}")))?;
                let n = self
                    .fd
                    .get_msrs(&mut msrs)
                    .map_err(|e| os_err("KVM_GET_MSRS", e))?
                    .min(rest.len());
                out.extend(msrs.as_slice()[..n].iter().map(msr_from_kvm));
                if n < rest.len() {
                    // KVM stops at the first MSR it does not know; leave it out and go on.
                    log(
                        &self.host,
                        LogLevel::Debug,
                        &format!("KVM_GET_MSRS: MSR {:#x} unknown, left out", rest[n]),
                    );
                    rest = &rest[n + 1..];
                } else {
                    rest = &[];
                }
            }
        }
        Ok(out)
    }

    fn set_msrs(&mut self, entries: &[MsrEntry]) -> Result<(), PluginError> {
        let mut written = 0usize;
        for chunk in msr_chunks(entries) {
            let k: Vec<kvm_msr_entry> = chunk.iter().map(msr_to_kvm).collect();
            let msrs = Msrs::from_entries(&k)
                .map_err(|e| PluginError::other(format!("KVM_SET_MSRS: buffer: {e:?}")))?;
            let n = self
                .fd
                .set_msrs(&msrs)
                .map_err(|e| os_err("KVM_SET_MSRS", e))?;
            if n < chunk.len() {
                return Err(PluginError::invalid(format!(
                    "KVM_SET_MSRS: MSR {:#x} (value {:#x}) refused after {} of {} were written",
                    chunk[n].index,
                    chunk[n].data,
                    written + n,
                    entries.len()
                )));
            }
            written += n;
        }
        Ok(())
    }

    fn get_events(&mut self) -> Result<VcpuEvents, PluginError> {
        self.fd
            .get_vcpu_events()
            .map(|e| events_from_kvm(&e))
            .map_err(|e| os_err("KVM_GET_VCPU_EVENTS", e))
    }

    fn set_events(&mut self, events: &VcpuEvents) -> Result<(), PluginError> {
        self.fd
            .set_vcpu_events(&events_to_kvm(events))
            .map_err(|e| os_err("KVM_SET_VCPU_EVENTS", e))
    }

    fn run(&mut self) -> Result<Exit, PluginError> {
        match self.pending {
            Pending::None => {}
            Pending::IoIn { .. } | Pending::MmioRead { .. } => {
                return Err(PluginError::invalid(format!(
                    "vCPU {}: run() before complete_io() answered the last IoIn/MmioRead exit",
                    self.id
                )))
            }
            Pending::Msr => {
                return Err(PluginError::invalid(format!(
                    "vCPU {}: run() before complete_msr() answered the last MsrRead/MsrWrite exit",
                    self.id
                )))
            }
        }
        if !self.kick.enter(&self.map) {
            return Ok(interrupted("kick"));
        }
        // SAFETY: the fd is a KVM vCPU fd owned by `self`; KVM_RUN takes no argument.
        let ret = unsafe { libc::ioctl(self.fd.as_raw_fd(), KVM_RUN, 0) };
        self.kick.leave(&self.map);
        if ret < 0 {
            let err = std::io::Error::last_os_error();
            return self.exit_after_error(err);
        }
        let size = self.caps.run_size;
        let p = self.run_ptr();
        // SAFETY: `p` is the start of our own mapping of the run area, run_size
        // (KVM_GET_VCPU_MMAP_SIZE) bytes long, alive as long as `self`; no mutable
        // reference to it is live while these shared views exist.
        let (run, area) = unsafe { (&*p, std::slice::from_raw_parts(p as *const u8, size)) };
        let d = decode(run, area);
        self.pending = d.pending;
        Ok(d.exit)
    }

    fn complete_io(&mut self, data: &[u8]) -> Result<(), PluginError> {
        let id = self.id;
        match self.pending {
            Pending::None | Pending::Msr => Err(PluginError::invalid(format!(
                "vCPU {id}: complete_io() without an IoIn/MmioRead exit waiting for data"
            ))),
            Pending::IoIn { offset, len } => {
                if data.len() != len {
                    return Err(PluginError::invalid(format!(
                        "vCPU {id}: IoIn needs {len} bytes, complete_io() got {}",
                        data.len()
                    )));
                }
                let p = self.run_ptr() as *mut u8;
                // SAFETY: decode() checked offset+len <= run_size, the size of the
                // mapping starting at `p`; `data` is a separate host buffer.
                unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), p.add(offset), len) };
                self.pending = Pending::None;
                Ok(())
            }
            Pending::MmioRead { len } => {
                if data.len() != len {
                    return Err(PluginError::invalid(format!(
                        "vCPU {id}: MmioRead needs {len} bytes, complete_io() got {}",
                        data.len()
                    )));
                }
                let run = self.run_ref();
                // SAFETY: the last exit was KVM_EXIT_MMIO, so `mmio` is the live member;
                // decode() checked len <= 8.
                unsafe { run.__bindgen_anon_1.mmio.data[..len].copy_from_slice(data) };
                self.pending = Pending::None;
                Ok(())
            }
        }
    }

    fn inject_interrupt(&mut self, vector: u8) -> Result<(), PluginError> {
        let irq = kvm_interrupt {
            irq: u32::from(vector),
        };
        // SAFETY: KVM_INTERRUPT reads one `struct kvm_interrupt`, which `irq` is.
        let ret = unsafe {
            libc::ioctl(
                self.fd.as_raw_fd(),
                KVM_INTERRUPT,
                &irq as *const kvm_interrupt,
            )
        };
        if ret < 0 {
            let e = std::io::Error::last_os_error();
            return Err(PluginError::os(format!(
                "KVM_INTERRUPT vector {vector:#x} vCPU {}: {e}",
                self.id
            )));
        }
        Ok(())
    }

    fn request_interrupt_window(&mut self, request: bool) -> Result<(), PluginError> {
        self.run_ref().request_interrupt_window = u8::from(request);
        Ok(())
    }

    fn interrupt_window_open(&mut self) -> Result<bool, PluginError> {
        let run = self.run_ref();
        Ok(run.ready_for_interrupt_injection != 0 && run.if_flag != 0)
    }

    fn complete_msr(&mut self, value: u64, fault: bool) -> Result<(), PluginError> {
        if self.pending != Pending::Msr {
            return Err(PluginError::invalid(format!(
                "vCPU {}: complete_msr() without an MsrRead/MsrWrite exit waiting",
                self.id
            )));
        }
        let run = self.run_ref();
        // Writing a union field is safe; the last exit was KVM_EXIT_X86_RDMSR/WRMSR,
        // so `msr` is the member KVM reads (`data`, `error`) on the next KVM_RUN.
        run.__bindgen_anon_1.msr.data = value;
        run.__bindgen_anon_1.msr.error = u8::from(fault);
        self.pending = Pending::None;
        Ok(())
    }

    fn inject_nmi(&mut self) -> Result<(), PluginError> {
        self.fd
            .nmi()
            .map_err(|e| PluginError::os(format!("KVM_NMI vCPU {}: {e}", self.id)))
    }

    fn kicker(&self) -> Result<VcpuKicker, PluginError> {
        Ok(kicker_into_ffi(KvmKicker(Arc::clone(&self.kick))))
    }
}
