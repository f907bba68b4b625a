//! Reading Python objects: straight from their structs on a per-CPython-version build, through
//! the stable ABI's functions on the abi3 fallback build (`--features abi3`).
//!
//! Only layouts CPython documents as macros are read here (list and tuple items and sizes, a
//! float's value, a new ASCII string's data), never private ones such as dict internals.

use pyo3::ffi;

/// Length of a list or tuple (exact type or subclass; `is_list` says which).
///
/// # Safety
/// `obj` is a live list or tuple as `is_list` says; the GIL is held.
#[inline(always)]
pub unsafe fn seq_len(obj: *mut ffi::PyObject, is_list: bool) -> ffi::Py_ssize_t {
    #[cfg(not(feature = "abi3"))]
    {
        if is_list {
            ffi::PyList_GET_SIZE(obj)
        } else {
            ffi::PyTuple_GET_SIZE(obj)
        }
    }
    #[cfg(feature = "abi3")]
    {
        if is_list {
            ffi::PyList_Size(obj)
        } else {
            ffi::PyTuple_Size(obj)
        }
    }
}

/// Item `i` (borrowed) of a list or tuple; `i` is below [`seq_len`] read just before.
///
/// # Safety
/// As for [`seq_len`], and `0 <= i < seq_len(obj, is_list)`.
#[inline(always)]
pub unsafe fn seq_item(
    obj: *mut ffi::PyObject,
    is_list: bool,
    i: ffi::Py_ssize_t,
) -> *mut ffi::PyObject {
    #[cfg(not(feature = "abi3"))]
    {
        if is_list {
            ffi::PyList_GET_ITEM(obj, i)
        } else {
            ffi::PyTuple_GET_ITEM(obj, i)
        }
    }
    #[cfg(feature = "abi3")]
    {
        if is_list {
            ffi::PyList_GetItem(obj, i)
        } else {
            ffi::PyTuple_GetItem(obj, i)
        }
    }
}

/// The value of a `float` (exact type or subclass).
///
/// # Safety
/// `obj` is a live float; the GIL is held.
#[inline(always)]
pub unsafe fn float_value(obj: *mut ffi::PyObject) -> f64 {
    #[cfg(not(feature = "abi3"))]
    {
        ffi::PyFloat_AS_DOUBLE(obj)
    }
    #[cfg(feature = "abi3")]
    {
        ffi::PyFloat_AsDouble(obj)
    }
}

/// A new `str` holding `ascii` (bytes below 0x80 only), or null with an exception set.
///
/// # Safety
/// Every byte of `ascii` is below 0x80; the GIL is held.
#[inline]
pub unsafe fn ascii_str(ascii: &[u8]) -> *mut ffi::PyObject {
    debug_assert!(ascii.is_ascii());
    #[cfg(not(feature = "abi3"))]
    {
        // Allocate the compact ASCII string and fill it, instead of decoding UTF-8 into it.
        let s = ffi::PyUnicode_New(ascii.len() as ffi::Py_ssize_t, 127);
        if !s.is_null() {
            let data = ffi::PyUnicode_DATA(s) as *mut u8;
            std::ptr::copy_nonoverlapping(ascii.as_ptr(), data, ascii.len());
        }
        s
    }
    #[cfg(feature = "abi3")]
    {
        ffi::PyUnicode_FromStringAndSize(ascii.as_ptr().cast(), ascii.len() as ffi::Py_ssize_t)
    }
}

/// The name of this build: `abi3` (the fallback), or the CPython version it was built for
/// (which is the running one: a per-version module loads into no other).
pub fn build_name(py: pyo3::Python<'_>) -> String {
    if cfg!(feature = "abi3") {
        "abi3".to_owned()
    } else {
        let v = py.version_info();
        format!("cpython-{}.{}", v.major, v.minor)
    }
}
