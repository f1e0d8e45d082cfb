//! `sysctlbyname` for the few values the backend reads.

use std::ffi::CString;
use std::io;

fn raw(name: &str) -> io::Result<Vec<u8>> {
    let cname = CString::new(name).map_err(|_| io::Error::other("NUL in sysctl name"))?;
    let mut len: libc::size_t = 0;
    // SAFETY: size query with a NULL buffer.
    let rc = unsafe {
        libc::sysctlbyname(
            cname.as_ptr(),
            std::ptr::null_mut(),
            &mut len,
            std::ptr::null(),
            0,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut buf = vec![0u8; len];
    // SAFETY: `buf` has `len` bytes.
    let rc = unsafe {
        libc::sysctlbyname(
            cname.as_ptr(),
            buf.as_mut_ptr().cast(),
            &mut len,
            std::ptr::null(),
            0,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    buf.truncate(len);
    Ok(buf)
}

pub(crate) fn string(name: &str) -> io::Result<String> {
    let mut b = raw(name)?;
    while b.last() == Some(&0) {
        b.pop();
    }
    Ok(String::from_utf8_lossy(&b).into_owned())
}

pub(crate) fn int(name: &str) -> io::Result<i64> {
    let b = raw(name)?;
    match b.len() {
        4 => Ok(i32::from_ne_bytes([b[0], b[1], b[2], b[3]]).into()),
        8 => Ok(i64::from_ne_bytes([
            b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7],
        ])),
        n => Err(io::Error::other(format!("sysctl {name}: {n}-byte value"))),
    }
}

/// Whether the kernel supports Capsicum capability mode.
pub(crate) fn capsicum_supported() -> Result<(), String> {
    match int("kern.features.security_capability_mode") {
        Ok(1) => Ok(()),
        Ok(v) => Err(format!("kern.features.security_capability_mode = {v}")),
        Err(e) => Err(format!(
            "kern.features.security_capability_mode: {e} (kernel without options CAPABILITY_MODE)"
        )),
    }
}
