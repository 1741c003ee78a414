//! One module's tests at a time. The end-to-end tests share a control plane and its cluster-wide
//! state (CRDs installed and removed, webhooks, the node's network); each module was a test
//! binary of its own, and cargo runs binaries one after another. In the single `e2e` binary the
//! tests of one module may still run together (as they always did), but a test of another module
//! waits until they are done.

use std::sync::{Condvar, Mutex, MutexGuard};

struct Gate {
    module: Option<&'static str>,
    running: usize,
}

static GATE: Mutex<Gate> = Mutex::new(Gate {
    module: None,
    running: 0,
});
static CHANGED: Condvar = Condvar::new();

/// Held for the length of a test; dropped on failure too (unwinding), so a failed test does not
/// hold up the others.
pub struct Serial(&'static str);

fn lock() -> MutexGuard<'static, Gate> {
    // A test that panicked while holding the lock leaves the counts consistent (see `Drop`).
    GATE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Waits until no test of another module runs, then counts this one in. Call with
/// `module_path!()`.
pub fn module(module: &'static str) -> Serial {
    let mut gate = lock();
    while gate.module.is_some_and(|m| m != module) {
        gate = CHANGED.wait(gate).unwrap_or_else(|e| e.into_inner());
    }
    gate.module = Some(module);
    gate.running += 1;
    Serial(module)
}

impl Drop for Serial {
    fn drop(&mut self) {
        let mut gate = lock();
        debug_assert_eq!(gate.module, Some(self.0));
        gate.running -= 1;
        if gate.running == 0 {
            gate.module = None;
            CHANGED.notify_all();
        }
    }
}
