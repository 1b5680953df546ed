//! Signals: Ctrl-C (SIGINT), SIGTERM and SIGHUP during `train` and
//! `extract`.
//!
//! ```text
//! first signal  ─▶ stop_flag() raised ─▶ the loops stop after the current batch
//!                  (writers' Drop deletes their temporary files; the best model stays)
//! second signal ─▶ temp_files::remove_own() ─▶ exit(cli::INTERRUPTED_EXIT_STATUS)
//! ```
//!
//! Training, extraction and fine-tuning loops poll [`stop_flag`] after
//! every batch; `main` exits with [`crate::cli::INTERRUPTED_EXIT_STATUS`]
//! when it was raised. What happens to temporary files is told in
//! [`crate::temp_files`].

use std::sync::atomic::{AtomicBool, Ordering};

/// Raised by Ctrl-C, SIGTERM or SIGHUP; training and extraction loops poll
/// it after every batch.
pub fn stop_flag() -> &'static AtomicBool {
    static STOP: AtomicBool = AtomicBool::new(false);
    &STOP
}

/// Installs the handler of Ctrl-C, SIGTERM and SIGHUP (once per process):
/// the first signal stops training or extraction after the current batch,
/// a second one deletes this process's temporary files
/// ([`crate::temp_files::remove_own`]) and exits at once.
pub fn install_ctrlc_handler() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        let result = ctrlc::set_handler(|| {
            if stop_flag().swap(true, Ordering::SeqCst) {
                let removed = crate::temp_files::remove_own();
                eprintln!(
                    "\nsecond interrupt: exiting now ({removed} temporary file(s) deleted; \
                     files already complete stay as they are)"
                );
                std::process::exit(crate::cli::INTERRUPTED_EXIT_STATUS);
            }
            eprintln!(
                "\ninterrupt: stopping after the current batch (the best model file on disk \
                 stays intact; press Ctrl-C again to exit at once)"
            );
        });
        if let Err(e) = result {
            eprintln!("note: Ctrl-C handler not installed ({e}); Ctrl-C will end the run at once");
        }
    });
}
