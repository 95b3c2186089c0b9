//! Whether the svm backend can run here: it is software, so anywhere the
//! host offers its engine.

use hyperplug_plugin_api::backend::Detection;

/// The svm backend's verdict: usable, not hardware-assisted.
pub fn detect() -> Detection {
    Detection {
        usable: true,
        hardware_assisted: false,
        reason: "AMD-V modelled in software on the host's emulator and MMU (no hardware needed)"
            .into(),
    }
}
