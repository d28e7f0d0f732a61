//! NVML through `dlopen("libnvidia-ml.so.1")` at run time: the reader has no
//! link-time tie to NVIDIA's libraries (it runs where there is none), and
//! NVML reads the kernel driver's accounting without creating a CUDA
//! context, which would itself take hundreds of MiB on the GPU measured.
//! Only the calls below, with NVML's ABI (`native/include/nvml.h`).

use std::ffi::{c_char, c_uint, c_ulonglong, c_void, CStr};

pub const LIBRARY: &str = "libnvidia-ml.so.1";

const SUCCESS: c_uint = 0;
const INSUFFICIENT_SIZE: c_uint = 7;
/// `usedGpuMemory` when the driver cannot say (Windows WDDM, some vGPUs).
const VALUE_NOT_AVAILABLE: c_ulonglong = !0;

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Memory {
    total: c_ulonglong,
    free: c_ulonglong,
    used: c_ulonglong,
}

/// `nvmlProcessInfo_t` of the `_v3` process query.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct ProcessInfo {
    pid: c_uint,
    used_gpu_memory: c_ulonglong,
    gpu_instance_id: c_uint,
    compute_instance_id: c_uint,
}

type Device = *mut c_void;
type Init = unsafe extern "C" fn() -> c_uint;
type ErrorString = unsafe extern "C" fn(c_uint) -> *const c_char;
type Count = unsafe extern "C" fn(*mut c_uint) -> c_uint;
type Handle = unsafe extern "C" fn(c_uint, *mut Device) -> c_uint;
type Uuid = unsafe extern "C" fn(Device, *mut c_char, c_uint) -> c_uint;
type MemInfo = unsafe extern "C" fn(Device, *mut Memory) -> c_uint;
type Procs = unsafe extern "C" fn(Device, *mut c_uint, *mut ProcessInfo) -> c_uint;

/// One process on one GPU, as NVML reports it.
#[derive(Clone, Debug, PartialEq)]
pub struct ProcessUse {
    /// In the host's PID namespace (the driver's).
    pub host_pid: u32,
    /// None: NVML could not say.
    pub used_bytes: Option<u64>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Gpu {
    pub index: u32,
    pub uuid: String,
    pub total_bytes: u64,
    pub used_bytes: u64,
    pub processes: Vec<ProcessUse>,
}

struct Lib {
    handle: *mut c_void,
    error_string: ErrorString,
    shutdown: Init,
}

impl Drop for Lib {
    fn drop(&mut self) {
        // SAFETY: nvmlShutdown after a successful nvmlInit_v2 (Lib exists
        // only then); dlclose on the handle dlopen returned.
        unsafe {
            (self.shutdown)();
            libc::dlclose(self.handle);
        }
    }
}

impl Lib {
    fn error(&self, call: &str, code: c_uint) -> String {
        // SAFETY: nvmlErrorString returns a static NUL-terminated string.
        let text = unsafe { CStr::from_ptr((self.error_string)(code)) };
        format!("NVML {call}: {} ({code})", text.to_string_lossy())
    }

    fn check(&self, call: &str, code: c_uint) -> Result<(), String> {
        if code == SUCCESS {
            Ok(())
        } else {
            Err(self.error(call, code))
        }
    }
}

/// A function of the loaded library, or the one-line reason it is missing.
fn symbol<T: Copy>(handle: *mut c_void, name: &CStr) -> Result<T, String> {
    // SAFETY: dlsym on a live handle with a NUL-terminated name.
    let p = unsafe { libc::dlsym(handle, name.as_ptr()) };
    if p.is_null() {
        return Err(format!(
            "{LIBRARY} has no {} (an NVML older than the driver API 11.x?)",
            name.to_string_lossy()
        ));
    }
    debug_assert_eq!(std::mem::size_of::<T>(), std::mem::size_of::<*mut c_void>());
    // SAFETY: T is the function pointer type of that NVML symbol, the size of a pointer.
    Ok(unsafe { std::mem::transmute_copy::<*mut c_void, T>(&p) })
}

/// Every GPU NVML sees, with the processes that hold memory on it.
pub fn read() -> Result<Vec<Gpu>, String> {
    let name = std::ffi::CString::new(LIBRARY).map_err(|e| e.to_string())?;
    // SAFETY: dlopen with a NUL-terminated name; RTLD_LOCAL keeps NVML's
    // symbols out of the global scope.
    let handle = unsafe { libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
    if handle.is_null() {
        return Err(format!("no NVML: {LIBRARY} could not be loaded (no NVIDIA driver here; device-level reading needs it)"));
    }
    let closed = |e: String| {
        // SAFETY: the handle from dlopen above, closed once on this path.
        unsafe { libc::dlclose(handle) };
        e
    };
    let init: Init = symbol(handle, c"nvmlInit_v2").map_err(closed)?;
    let error_string: ErrorString = symbol(handle, c"nvmlErrorString").map_err(closed)?;
    let shutdown: Init = symbol(handle, c"nvmlShutdown").map_err(closed)?;
    // SAFETY: nvmlInit_v2 takes no arguments.
    let code = unsafe { init() };
    if code != SUCCESS {
        // SAFETY: a static string for any code.
        let text = unsafe { CStr::from_ptr(error_string(code)) }
            .to_string_lossy()
            .into_owned();
        // SAFETY: as `closed`.
        unsafe { libc::dlclose(handle) };
        return Err(format!("no NVML: nvmlInit_v2 failed: {text} ({code})"));
    }
    let lib = Lib {
        handle,
        error_string,
        shutdown,
    };
    let count_fn: Count = symbol(handle, c"nvmlDeviceGetCount_v2")?;
    let handle_fn: Handle = symbol(handle, c"nvmlDeviceGetHandleByIndex_v2")?;
    let uuid_fn: Uuid = symbol(handle, c"nvmlDeviceGetUUID")?;
    let mem_fn: MemInfo = symbol(handle, c"nvmlDeviceGetMemoryInfo")?;
    let procs_fn: Procs = symbol(handle, c"nvmlDeviceGetComputeRunningProcesses_v3")?;
    let mut count: c_uint = 0;
    // SAFETY: a valid out pointer.
    lib.check("nvmlDeviceGetCount_v2", unsafe { count_fn(&mut count) })?;
    let mut gpus = Vec::new();
    for index in 0..count {
        let mut dev: Device = std::ptr::null_mut();
        // SAFETY: an index below the count, a valid out pointer.
        lib.check("nvmlDeviceGetHandleByIndex_v2", unsafe {
            handle_fn(index, &mut dev)
        })?;
        let mut buf = [0 as c_char; 96];
        // SAFETY: a buffer of NVML_DEVICE_UUID_V2_BUFFER_SIZE bytes.
        lib.check("nvmlDeviceGetUUID", unsafe {
            uuid_fn(dev, buf.as_mut_ptr(), buf.len() as c_uint)
        })?;
        // SAFETY: NVML wrote a NUL-terminated string into buf (zeroed before).
        let uuid = unsafe { CStr::from_ptr(buf.as_ptr()) }
            .to_string_lossy()
            .into_owned();
        let mut mem = Memory::default();
        // SAFETY: a valid out pointer.
        lib.check("nvmlDeviceGetMemoryInfo", unsafe { mem_fn(dev, &mut mem) })?;
        gpus.push(Gpu {
            index,
            uuid,
            total_bytes: mem.total,
            used_bytes: mem.used,
            processes: processes(&lib, procs_fn, dev)?,
        });
    }
    Ok(gpus)
}

/// The compute processes of one GPU: asked again with a larger buffer while
/// NVML says it is too small (processes can start between two calls).
fn processes(lib: &Lib, procs_fn: Procs, dev: Device) -> Result<Vec<ProcessUse>, String> {
    let mut cap: c_uint = 16;
    for _ in 0..8 {
        let mut buf = vec![ProcessInfo::default(); cap as usize];
        let mut n = cap;
        // SAFETY: buf holds `n` entries of NVML's process-info layout.
        let code = unsafe { procs_fn(dev, &mut n, buf.as_mut_ptr()) };
        if code == INSUFFICIENT_SIZE {
            cap = n.max(cap) * 2;
            continue;
        }
        lib.check("nvmlDeviceGetComputeRunningProcesses_v3", code)?;
        buf.truncate(n.min(cap) as usize);
        return Ok(buf
            .iter()
            .map(|p| ProcessUse {
                host_pid: p.pid,
                used_bytes: (p.used_gpu_memory != VALUE_NOT_AVAILABLE).then_some(p.used_gpu_memory),
            })
            .collect());
    }
    Err("NVML nvmlDeviceGetComputeRunningProcesses_v3: the process list kept growing".into())
}
