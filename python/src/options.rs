//! The options every flavour takes from Python, checked into a builder.

use std::time::Duration;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use wormhole_sync_core::builder::{Builder, Client, Machine};
use wormhole_sync_core::{Role, Schedule};

/// A machine built and not yet started, whatever will drive it.
pub(crate) struct Bare<M, const INITIATOR: bool>(pub(crate) M);

impl<M: Machine, const INITIATOR: bool> Client for Bare<M, INITIATOR> {
    type Http = ();
    type Machine = M;
    const ROLE: Role = if INITIATOR { Role::Initiator } else { Role::Receiver };

    fn from_machine(machine: M, _: Option<()>) -> Self {
        Bare(machine)
    }
}

/// The options of one side, as Python passed them.
pub(crate) struct Options<'a> {
    pub(crate) appid: &'a str,
    pub(crate) data: Vec<u8>,
    pub(crate) code: Option<&'a str>,
    pub(crate) rendezvous: Option<&'a str>,
    pub(crate) schedule: Option<Vec<(f64, f64)>>,
    pub(crate) timeout: Option<f64>,
    pub(crate) code_words: Option<usize>,
    /// A magic-wormhole receiver answering `wormhole send --text`.
    pub(crate) answer_text: bool,
}

/// `role` as Python spells it.
pub(crate) fn role(name: &str) -> PyResult<Role> {
    match name {
        "initiator" => Ok(Role::Initiator),
        "receiver" => Ok(Role::Receiver),
        _ => Err(PyValueError::new_err("role must be 'initiator' or 'receiver'")),
    }
}

/// A timeout in seconds.
pub(crate) fn seconds(timeout: f64) -> PyResult<Duration> {
    Duration::try_from_secs_f64(timeout)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| PyValueError::new_err("timeout must be a positive number of seconds"))
}

impl Options<'_> {
    /// Builds the machine for `role`: its options checked, not started.
    pub(crate) fn build<M: Machine>(self, py: Python<'_>, role: Role) -> PyResult<M> {
        match role {
            Role::Initiator => {
                Ok(self.builder::<Bare<M, true>>()?.build().map_err(|e| crate::errors::to_py(py, &e))?.0)
            }
            Role::Receiver => {
                Ok(self.builder::<Bare<M, false>>()?.build().map_err(|e| crate::errors::to_py(py, &e))?.0)
            }
        }
    }

    fn builder<C: Client>(self) -> PyResult<Builder<C>> {
        let mut builder = Builder::<C>::new(self.appid, self.data);
        if let Some(code) = self.code {
            builder = builder.code(code);
        }
        if let Some(url) = self.rendezvous {
            builder = builder.rendezvous(url);
        }
        if let Some(steps) = self.schedule {
            let schedule = Schedule::from_secs(&steps).map_err(|e| PyValueError::new_err(e.to_string()))?;
            builder = builder.schedule(schedule);
        }
        if let Some(timeout) = self.timeout {
            builder = builder.timeout(seconds(timeout)?);
        }
        if let Some(words) = self.code_words {
            builder = builder.code_words(words);
        }
        if self.answer_text {
            builder = builder.answer_text_offers(true);
        }
        Ok(builder)
    }
}
