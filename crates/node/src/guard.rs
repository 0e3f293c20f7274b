//! Core errors and panics as JavaScript errors.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Mutex, MutexGuard};

use napi::bindgen_prelude::*;
use napi_derive::napi;
use stoxnet_core::engine;

fn js_err(e: stoxnet_core::Error) -> napi::Error {
    napi::Error::new(Status::InvalidArg, e.0)
}

/// Runs `f`, turning a panic into an error carrying the panic message.
pub fn guarded<T>(f: impl FnOnce() -> stoxnet_core::Result<T>) -> napi::Result<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r.map_err(js_err),
        Err(payload) => {
            let msg = payload.downcast_ref::<String>().cloned().or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_else(|| "unknown panic".into());
            Err(napi::Error::new(Status::GenericFailure, format!("stoxnet internal error (panic): {msg}")))
        }
    }
}

/// Locks `m`; a lock poisoned by an earlier panic is an error.
pub fn lock<'a, T>(m: &'a Mutex<T>, what: &str) -> stoxnet_core::Result<MutexGuard<'a, T>> {
    m.lock().map_err(|_| stoxnet_core::Error::new(format!("{what} is poisoned by an earlier panic")))
}

/// A test hook, not API: panics with `message` on one of the engine's worker
/// threads, off the JS thread, to show that the panic reaches JavaScript as
/// a rejected promise carrying the message.
#[napi(js_name = "__panicForTest", ts_return_type = "Promise<void>")]
pub fn panic_for_test(message: String) -> AsyncTask<PanicTask> {
    AsyncTask::new(PanicTask { message })
}

pub struct PanicTask {
    message: String,
}

impl Task for PanicTask {
    type Output = ();
    type JsValue = ();

    fn compute(&mut self) -> napi::Result<()> {
        guarded(|| engine::thread_pool(2)?.install(|| panic!("{}", self.message)))
    }

    fn resolve(&mut self, _env: Env, _: ()) -> napi::Result<()> {
        Ok(())
    }
}

/// Lets JavaScript stop a long native call (an `AbortSignal` listener calls
/// `abort()`); the call then rejects with "cancelled".
#[napi]
pub struct AbortHandle {
    pub(crate) cancel: engine::Cancel,
}

#[napi]
impl AbortHandle {
    #[napi(constructor)]
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        AbortHandle { cancel: engine::Cancel::default() }
    }

    #[napi]
    pub fn abort(&self) {
        self.cancel.cancel();
    }
}

/// The cancel flag of an optional handle.
pub fn cancel_of(abort: Option<&AbortHandle>) -> engine::Cancel {
    abort.map(|a| a.cancel.clone()).unwrap_or_default()
}
