//! The `steadytext` binary of this crate as a test daemon ([`steadytext_testkit::daemon`]).

use std::ops::{Deref, DerefMut};

pub use steadytext_testkit::daemon::wait_until;
use steadytext_testkit::daemon::{self, Spawn};

/// A running, ready daemon process of this crate's binary; killed on drop.
pub struct Daemon(daemon::Daemon);

impl Daemon {
    /// `steadytext serve --port 0` plus `extra` args; returns once it is ready.
    pub fn serve(extra: &[&str]) -> Self {
        Self::serve_with_env(extra, &[])
    }

    /// [`Daemon::serve`] with extra environment variables.
    pub fn serve_with_env(extra: &[&str], env: &[(&str, &str)]) -> Self {
        Self::spawn("serve", &[&["--port", "0"], extra].concat(), env)
    }

    /// `steadytext worker` plus `extra` args; returns once its worker listens.
    pub fn worker(extra: &[&str]) -> Self {
        Self::spawn("worker", extra, &[])
    }

    fn spawn(command: &str, args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut spec = Spawn::new(env!("CARGO_BIN_EXE_steadytext"), command, args);
        spec.env = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        Self(daemon::Daemon::start(&spec).unwrap_or_else(|e| panic!("{e}")))
    }
}

impl Deref for Daemon {
    type Target = daemon::Daemon;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl DerefMut for Daemon {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}
