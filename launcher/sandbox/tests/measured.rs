//! MeasuredExecutable: the hash is of the bytes that run, the copy cannot
//! be changed, and bad input is refused with the path and the reason.
#![cfg(target_os = "linux")]

mod common;

use std::os::fd::AsRawFd;

use common::*;
use launcher_sandbox::{MAX_EXECUTABLE_BYTES, MeasureError, MeasuredExecutable};

#[test]
fn hash_length_and_interpreter_match_the_file() {
    let path = fixture("well_behaved");
    let bytes = std::fs::read(&path).unwrap();
    let exe = MeasuredExecutable::open(&path).unwrap();
    assert_eq!(exe.sha256_hex(), sha256_hex(&bytes));
    assert_eq!(exe.sha256(), openssl::sha::sha256(&bytes));
    assert_eq!(exe.len(), bytes.len() as u64);
    assert_eq!(exe.source_path(), path);
    let interp = exe.elf().interpreter.clone().expect("dynamically linked");
    assert!(interp.contains("ld-linux"), "{interp}");
}

#[test]
fn the_copy_is_a_sealed_memfd_that_cannot_be_written() {
    let exe = MeasuredExecutable::open(fixture("well_behaved")).unwrap();
    let fd = exe.as_fd().as_raw_fd();
    let link = std::fs::read_link(format!("/proc/self/fd/{fd}")).unwrap();
    assert!(
        link.to_string_lossy()
            .starts_with("/memfd:attestable-executable"),
        "{}",
        link.display()
    );
    // SAFETY: fcntl/write/ftruncate on a descriptor we own, buffer on stack.
    unsafe {
        let seals = libc::fcntl(fd, libc::F_GET_SEALS);
        let want = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE | libc::F_SEAL_SEAL;
        assert_eq!(seals & want, want, "seals {seals:#x}");
        assert!(libc::pwrite(fd, b"x".as_ptr().cast(), 1, 0) < 0);
        assert_eq!(
            std::io::Error::last_os_error().raw_os_error(),
            Some(libc::EPERM)
        );
        assert!(libc::ftruncate(fd, 0) < 0);
        assert!(
            libc::fcntl(fd, libc::F_ADD_SEALS, 0) < 0,
            "F_SEAL_SEAL must forbid new seals"
        );
    }
    // Reading it back gives the measured bytes.
    let copy = std::fs::read(format!("/proc/self/fd/{fd}")).unwrap();
    assert_eq!(sha256_hex(&copy), exe.sha256_hex());
}

#[test]
fn bad_input_is_refused_with_path_and_reason() {
    let area = Area::new();

    let missing = area.path().join("missing");
    let err = MeasuredExecutable::open(&missing).unwrap_err();
    assert!(matches!(err, MeasureError::Open { .. }), "{err}");
    assert!(
        err.to_string().contains(&missing.display().to_string()),
        "{err}"
    );

    let err = MeasuredExecutable::open(area.path()).unwrap_err();
    assert!(matches!(err, MeasureError::NotRegular { .. }), "{err}");

    let script = area.path().join("script.sh");
    std::fs::write(&script, "#!/bin/sh\necho hi\n").unwrap();
    let err = MeasuredExecutable::open(&script).unwrap_err();
    assert!(matches!(err, MeasureError::NotElf { .. }), "{err}");
    assert!(err.to_string().contains("23 21 2f 62"), "{err}");

    let empty = area.path().join("empty");
    std::fs::write(&empty, "").unwrap();
    assert!(matches!(
        MeasuredExecutable::open(&empty).unwrap_err(),
        MeasureError::NotElf { .. }
    ));

    // A sparse file just over the limit is refused before it is read.
    let huge = area.path().join("huge");
    let f = std::fs::File::create(&huge).unwrap();
    f.set_len(MAX_EXECUTABLE_BYTES + 1).unwrap();
    let err = MeasuredExecutable::open(&huge).unwrap_err();
    assert!(matches!(err, MeasureError::TooLarge { .. }), "{err}");
}
