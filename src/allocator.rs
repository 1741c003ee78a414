//! mimalloc, tuned for a small resident set. With its defaults on Linux it commits arena
//! memory eagerly and returns freed pages after a delay: the offline audit of the 10k-workload
//! benchmark corpus peaked at 132 MiB instead of 66 MiB, for no CPU gain
//! (`MIMALLOC_ARENA_EAGER_COMMIT=0 MIMALLOC_PURGE_DELAY=0` measured the same). The operator
//! runs for weeks; it should hold what it uses, not what it once used.

use std::ffi::{c_int, c_long};

// Option numbers of `enum mi_option_e` in mimalloc.h (mimalloc v3, as built by libmimalloc-sys
// 0.1.49; Cargo.toml pins the version, since the numbering is the C header's).
const ARENA_EAGER_COMMIT: c_int = 4;
const PURGE_DELAY: c_int = 15;

#[allow(unsafe_code)]
mod ffi {
    use super::{c_int, c_long};
    extern "C" {
        pub fn mi_option_set(option: c_int, value: c_long);
        #[cfg(test)]
        pub fn mi_option_get(option: c_int) -> c_long;
    }
}

/// Applies the options; call first thing in `main`, before threads start.
pub fn tune() {
    #[allow(unsafe_code)]
    // SAFETY: plain setters of mimalloc's global option table, called before any other thread
    // exists; the values are ones mimalloc documents (0 = off / purge immediately).
    unsafe {
        ffi::mi_option_set(ARENA_EAGER_COMMIT, 0);
        ffi::mi_option_set(PURGE_DELAY, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_options_are_the_ones_mimalloc_reads() {
        tune();
        // If the numbering moved (another mimalloc version), the defaults would show here:
        // arena_eager_commit defaults to 2 and purge_delay to 10.
        #[allow(unsafe_code)]
        // SAFETY: plain getters of mimalloc's option table.
        let (eager, purge) = unsafe {
            (
                ffi::mi_option_get(ARENA_EAGER_COMMIT),
                ffi::mi_option_get(PURGE_DELAY),
            )
        };
        assert_eq!((eager, purge), (0, 0));
    }
}
