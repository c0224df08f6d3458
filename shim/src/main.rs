//! The `cradle-shim` executable: argv to [`cradle_shim::main`], and the two things a
//! `no_std` binary must bring itself (a panic handler and an allocator).
#![no_std]
#![no_main]

extern crate alloc;

use alloc::vec::Vec;
use core::alloc::{GlobalAlloc, Layout};
use core::ffi::{CStr, c_char, c_int};

/// libc's malloc, for the few vectors the shim builds before it forks.
struct Malloc;

// SAFETY: malloc/free/realloc meet GlobalAlloc's contract for alignments up to
// max_align_t (16 on the targets we build); larger ones go through aligned_alloc.
unsafe impl GlobalAlloc for Malloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: plain allocation calls; a null return is how GlobalAlloc reports failure.
        unsafe {
            if layout.align() <= 16 {
                libc::malloc(layout.size()).cast()
            } else {
                libc::aligned_alloc(layout.align(), layout.size()).cast()
            }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: ptr came from malloc or aligned_alloc above.
        unsafe { libc::free(ptr.cast()) }
    }
}

// The C library (musl in scripts/build) is linked by name here: in a workspace build cargo
// unifies the libc crate's features with the launcher's, and with `std` on, libc leaves
// linking the C library to std, which this binary does not have.
#[link(name = "c")]
unsafe extern "C" {}

#[global_allocator]
static ALLOCATOR: Malloc = Malloc;

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    // SAFETY: abort has no preconditions.
    unsafe { libc::abort() }
}

/// The precompiled `alloc` crate is built for unwinding and names the unwinder's entry
/// points; the shim is built with `panic = "abort"`, so nothing ever unwinds and these are
/// never called. They stand in for libgcc's, which would add its whole unwinder.
#[unsafe(no_mangle)]
extern "C" fn _Unwind_Resume() -> ! {
    // SAFETY: abort has no preconditions.
    unsafe { libc::abort() }
}

#[unsafe(no_mangle)]
extern "C" fn rust_eh_personality() {}

/// 32-bit ARM's unwind tables (.ARM.exidx) name the EHABI personality routines of every
/// function that has any; libgcc's would bring its unwinder, and nothing unwinds here.
#[cfg(target_arch = "arm")]
#[unsafe(no_mangle)]
extern "C" fn __aeabi_unwind_cpp_pr0() -> ! {
    // SAFETY: abort has no preconditions.
    unsafe { libc::abort() }
}

#[cfg(target_arch = "arm")]
#[unsafe(no_mangle)]
extern "C" fn __aeabi_unwind_cpp_pr1() -> ! {
    // SAFETY: abort has no preconditions.
    unsafe { libc::abort() }
}

#[unsafe(no_mangle)]
extern "C" fn main(argc: c_int, argv: *const *const c_char, envp: *const *const c_char) -> c_int {
    // SAFETY: the kernel gives argc valid, NUL-terminated strings in argv.
    let arg = |i: usize| unsafe { CStr::from_ptr(*argv.add(i)) };
    if argc > 0 {
        cradle_shim::name_process(arg(0));
    }
    let args: Vec<&CStr> = (1..argc.max(1) as usize).map(arg).collect();
    cradle_shim::main(&args, cradle_shim::Environment(envp)) as c_int
}
