//! Shadow paging in the engine (DESIGN.md "Memory and MMU"): with
//! [`Engine::set_shadow_paging`] on, guest-linear translations come from the
//! host MMU's shadow tables ([`ShadowMmu`]) instead of the engine's own walk
//! and TLB, the way a shadow-paging hypervisor's hardware translates through
//! the hypervisor's tables. A miss is the #PF intercept: with vector 14 in
//! the exception bitmap the engine stops before the access (the backend
//! calls [`Engine::shadow_page_fault`], then injects #PF or re-executes);
//! without it the engine resolves the miss itself.

use crate::bus::Bus;
use crate::exception::{Exception, OpResult};
use crate::exec::{Ctx, Engine};
use crate::mem::walk_fault;
use hyperplug_mmu::fault::{PfErrorCode, WalkError};
use hyperplug_mmu::shadow::{access_from_error_code, ShadowFault, ShadowMmu, DEFAULT_MAX_ROOTS};
use hyperplug_mmu::{Access, AccessKind, PagingContext};

/// The #PF error code of a shadow miss for `access`: P = 0 (the shadow has
/// no entry), W/R, U/S (CPL 3 and not an implicit supervisor access) and
/// I/D (SDM vol. 3, 4.7 "Page-Fault Exceptions").
pub(crate) fn miss_error_code(access: Access) -> u32 {
    let mut ec = PfErrorCode::empty();
    match access.kind {
        AccessKind::Write => ec |= PfErrorCode::WRITE,
        AccessKind::Execute => ec |= PfErrorCode::FETCH,
        _ => {}
    }
    if access.cpl == 3 && !access.implicit_supervisor {
        ec |= PfErrorCode::USER;
    }
    ec.bits()
}

impl<B: Bus> Ctx<'_, B> {
    /// Translates `lin` through the shadow tables (see the module docs).
    pub(crate) fn translate_shadow(
        &mut self,
        ctx: &PagingContext,
        lin: u64,
        access: Access,
    ) -> OpResult<u64> {
        let intercepted = self.policy.exceptions & (1 << 14) != 0;
        let Some(sh) = self.eng.shadow.as_mut() else {
            return Err(Exception::gp(0).into());
        };
        if let Some(t) = sh.lookup(ctx, lin, access) {
            return Ok(t.gpa);
        }
        if intercepted {
            self.eng.shadow_miss = Some((lin, access));
            return Err(Exception::pf(lin, miss_error_code(access)).into());
        }
        match sh.page_fault(&*self.bus, ctx, lin, access) {
            ShadowFault::Fixed(t) => Ok(t.gpa),
            ShadowFault::Reflect(pf) => Err(walk_fault(WalkError::PageFault(pf))),
            ShadowFault::Phys(e) => Err(walk_fault(WalkError::Phys(e))),
        }
    }
}

impl Engine {
    /// Turns shadow paging on or off (dropping every cached translation).
    pub fn set_shadow_paging(&mut self, on: bool) {
        self.st.shadow = on.then(|| ShadowMmu::new(self.st.tracker.clone(), DEFAULT_MAX_ROOTS));
        self.st.shadow_miss = None;
        self.flush();
    }

    /// Whether shadow paging is on.
    pub fn shadow_paging(&self) -> bool {
        self.st.shadow.is_some()
    }

    /// The #PF intercept handler of a shadow-paging backend: walks the
    /// guest's tables for the access at `linear` (the access of the last
    /// miss at that address, else the one `error_code` describes) and
    /// installs a shadow ([`ShadowFault::Fixed`]) or returns the guest's own
    /// #PF ([`ShadowFault::Reflect`]). With shadow paging off, the answer
    /// comes from a plain walk.
    pub fn shadow_page_fault<M: hyperplug_mmu::PhysMemory + ?Sized>(
        &mut self,
        cpu: &crate::Cpu,
        mem: &M,
        linear: u64,
        error_code: u32,
    ) -> ShadowFault {
        let access = match self.st.shadow_miss.take() {
            Some((l, a)) if l == linear => a,
            _ => access_from_error_code(PfErrorCode::from_bits_truncate(error_code)),
        };
        let ctx = cpu.paging();
        self.st.utlb.invalidate();
        match self.st.shadow.as_mut() {
            Some(sh) => sh.page_fault(mem, &ctx, linear, access),
            None => match hyperplug_mmu::walk::walk(
                mem,
                &ctx,
                linear,
                access,
                hyperplug_mmu::walk::AdUpdate::Set,
            ) {
                Ok(t) => ShadowFault::Fixed(t),
                Err(WalkError::PageFault(pf)) => ShadowFault::Reflect(pf),
                Err(WalkError::Phys(e)) => ShadowFault::Phys(e),
            },
        }
    }
}
