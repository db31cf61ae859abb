//! The wormhole-sync core for browsers and other JavaScript hosts: the
//! transcribe-mode state machine (`Exchange`) through wasm-bindgen. It does
//! no I/O and reads no clock: `wormhole-sync.js` drives it with `fetch` and
//! `setTimeout`, passing the time in (milliseconds since the epoch, as
//! `Date.now()` gives) and a seed from `crypto.getRandomValues`.

use std::time::Duration;

use js_sys::{Object, Reflect, Uint8Array};
use wasm_bindgen::prelude::*;
use wormhole_sync_core::builder::{Builder, Client};
use wormhole_sync_core::{
    Error, Event, Exchange as CoreExchange, RequestId, Role, Schedule, Timestamp, TransportError,
};

/// A machine built and not yet started.
struct Bare<const INITIATOR: bool>(CoreExchange);

impl<const INITIATOR: bool> Client for Bare<INITIATOR> {
    type Http = ();
    type Machine = CoreExchange;
    const ROLE: Role = if INITIATOR { Role::Initiator } else { Role::Receiver };

    fn from_machine(machine: CoreExchange, _: Option<()>) -> Self {
        Bare(machine)
    }
}

/// `error` as a JavaScript `Error` whose `name` is its class (as
/// `wormhole-sync.js` defines them) and whose `serverCode` is the server's
/// code, if any. Its message has its causes and never a secret.
fn to_js(error: &Error) -> JsValue {
    let js = js_sys::Error::new(&error.message_with_causes());
    js.set_name(error.binding_class());
    if let Some(code) = error.server_code() {
        let _ = Reflect::set(&js, &"serverCode".into(), &code.to_string().into());
    }
    js.into()
}

fn usage(message: &str) -> JsValue {
    to_js(&Error::InvalidConfig(message.into()))
}

fn timestamp(now: f64) -> Result<Timestamp, JsValue> {
    if !now.is_finite() || now < 0.0 {
        return Err(usage("now must be milliseconds since the Unix epoch, as Date.now() gives"));
    }
    Ok(Timestamp::from_millis(now as u64))
}

fn seconds(value: f64, what: &str) -> Result<Duration, JsValue> {
    Duration::try_from_secs_f64(value).map_err(|_| usage(&format!("{what} must be a non-negative number of seconds")))
}

/// A plain object with these fields.
fn object(fields: &[(&str, JsValue)]) -> JsValue {
    let object = Object::new();
    for (name, value) in fields {
        let _ = Reflect::set(&object, &(*name).into(), value);
    }
    object.into()
}

/// One side of a transcribe-mode exchange, as a state machine.
#[wasm_bindgen]
pub struct Exchange {
    inner: CoreExchange,
}

#[wasm_bindgen]
impl Exchange {
    /// A new side. `role` is "initiator" or "receiver" (which needs `code`);
    /// `seed` is 32 random bytes (crypto.getRandomValues); `schedule` is
    /// flattened `[when, interval, ...]` seconds; `timeout` in seconds.
    #[allow(clippy::too_many_arguments)]
    #[wasm_bindgen(constructor)]
    pub fn new(
        role: &str,
        appid: &str,
        data: &[u8],
        seed: &[u8],
        code: Option<String>,
        rendezvous: Option<String>,
        schedule: Option<Vec<f64>>,
        timeout: Option<f64>,
        code_words: Option<u32>,
    ) -> Result<Exchange, JsValue> {
        let seed: [u8; 32] = seed.try_into().map_err(|_| usage("seed must be 32 random bytes"))?;
        fn configure<C: Client>(
            mut builder: Builder<C>,
            code: Option<String>,
            rendezvous: Option<String>,
            schedule: Option<Vec<f64>>,
            timeout: Option<f64>,
            code_words: Option<u32>,
        ) -> Result<Builder<C>, JsValue> {
            if let Some(code) = code {
                builder = builder.code(code.as_str());
            }
            if let Some(url) = rendezvous {
                builder = builder.rendezvous(&url);
            }
            if let Some(flat) = schedule {
                if flat.len() % 2 != 0 {
                    return Err(usage("the schedule must be [when, interval] pairs"));
                }
                let pairs: Vec<(f64, f64)> = flat.chunks(2).map(|p| (p[0], p[1])).collect();
                builder = builder.schedule(Schedule::from_secs(&pairs).map_err(|e| to_js(&e))?);
            }
            if let Some(timeout) = timeout {
                builder = builder.timeout(seconds(timeout, "timeout")?);
            }
            if let Some(words) = code_words {
                builder = builder.code_words(words as usize);
            }
            Ok(builder)
        }
        let data = data.to_vec();
        let inner = match role {
            "initiator" => {
                configure(Builder::<Bare<true>>::new(appid, data), code, rendezvous, schedule, timeout, code_words)?
                    .seed(seed)
                    .build()
                    .map_err(|e| to_js(&e))?
                    .0
            }
            "receiver" => {
                configure(Builder::<Bare<false>>::new(appid, data), code, rendezvous, schedule, timeout, code_words)?
                    .seed(seed)
                    .build()
                    .map_err(|e| to_js(&e))?
                    .0
            }
            _ => return Err(usage("role must be \"initiator\" or \"receiver\"")),
        };
        Ok(Exchange { inner })
    }

    /// Restores a side from `serialize()`'s output (of any client of this
    /// project); its role is read from the state.
    #[wasm_bindgen(js_name = fromSerialized)]
    pub fn from_serialized(data: &[u8]) -> Result<Exchange, JsValue> {
        Ok(Exchange { inner: CoreExchange::from_serialized(data).map_err(|e| to_js(&e))? })
    }

    pub fn start(&mut self, now: f64) -> Result<(), JsValue> {
        self.inner.start(timestamp(now)?);
        Ok(())
    }

    #[wasm_bindgen(js_name = handleTimeout)]
    pub fn handle_timeout(&mut self, now: f64) -> Result<(), JsValue> {
        self.inner.handle_timeout(timestamp(now)?);
        Ok(())
    }

    #[wasm_bindgen(js_name = handleResponse)]
    pub fn handle_response(&mut self, now: f64, id: f64, status: u16, body: &[u8]) -> Result<(), JsValue> {
        self.inner.handle_response(timestamp(now)?, RequestId::from_u64(id as u64), status, body);
        Ok(())
    }

    #[wasm_bindgen(js_name = handleTransportError)]
    pub fn handle_transport_error(
        &mut self,
        now: f64,
        id: f64,
        description: &str,
        permanent: bool,
    ) -> Result<(), JsValue> {
        let cause = TransportError::from_message(description);
        let cause = if permanent { cause.into_permanent() } else { cause };
        self.inner.handle_transport_error(timestamp(now)?, RequestId::from_u64(id as u64), cause);
        Ok(())
    }

    pub fn cancel(&mut self, now: f64) -> Result<(), JsValue> {
        self.inner.cancel(timestamp(now)?);
        Ok(())
    }

    /// The next request to send, `{id, method, url, body, timeoutMs}`, or
    /// `undefined`.
    #[wasm_bindgen(js_name = pollTransmit)]
    pub fn poll_transmit(&mut self, now: f64) -> Result<JsValue, JsValue> {
        Ok(match self.inner.poll_transmit(timestamp(now)?) {
            None => JsValue::UNDEFINED,
            Some(transmit) => object(&[
                ("id", JsValue::from_f64(transmit.id().as_u64() as f64)),
                ("method", transmit.method().into()),
                ("url", transmit.url().into()),
                ("body", Uint8Array::from(transmit.body().as_slice()).into()),
                ("timeoutMs", JsValue::from_f64(transmit.timeout().as_millis() as f64)),
            ]),
        })
    }

    /// The next event, `{type: "code", code}`, `{type: "verifier",
    /// verifier}`, `{type: "data", data}` or `{type: "failed", error}`, or
    /// `undefined`.
    #[wasm_bindgen(js_name = pollEvent)]
    pub fn poll_event(&mut self) -> JsValue {
        let bytes = |b: &[u8]| JsValue::from(Uint8Array::from(b));
        match self.inner.poll_event() {
            None => JsValue::UNDEFINED,
            Some(Event::Code(code)) => object(&[("type", "code".into()), ("code", code.to_string().into())]),
            Some(Event::Verifier(v)) => object(&[("type", "verifier".into()), ("verifier", bytes(v.as_bytes()))]),
            Some(Event::Outcome(Ok(data))) => object(&[("type", "data".into()), ("data", bytes(&data))]),
            Some(Event::Outcome(Err(error))) => object(&[("type", "failed".into()), ("error", to_js(&error))]),
            // A kind of event added later: nothing this version hands out.
            Some(_) => object(&[("type", "unknown".into())]),
        }
    }

    /// When to call `handleTimeout` (milliseconds since the epoch), or
    /// `undefined`.
    #[wasm_bindgen(js_name = pollTimeout)]
    pub fn poll_timeout(&self) -> Option<f64> {
        self.inner.poll_timeout().map(|t| t.as_millis() as f64)
    }

    #[wasm_bindgen(js_name = isFinished)]
    pub fn is_finished(&self) -> bool {
        self.inner.is_finished()
    }

    /// The whole state as printable JSON bytes; it contains secrets.
    pub fn serialize(&self) -> Vec<u8> {
        self.inner.serialize()
    }

    #[wasm_bindgen(getter)]
    pub fn role(&self) -> String {
        match self.inner.role() {
            Role::Initiator => "initiator".into(),
            Role::Receiver => "receiver".into(),
        }
    }
}

/// The 256 words a code's word at `position` (0 for the first) is one of,
/// for completing what a person types.
#[wasm_bindgen(js_name = wordList)]
pub fn word_list(position: usize) -> Vec<String> {
    wormhole_sync_core::word_list(position).iter().map(|w| w.to_string()).collect()
}

/// A QR code of `text` as an SVG document (black modules on white, with the
/// quiet zone), for a phone's camera to read a link from a screen.
#[wasm_bindgen(js_name = qrCodeSvg)]
pub fn qr_code_svg(text: &str) -> Result<String, JsValue> {
    let code = qrcode::QrCode::with_error_correction_level(text.as_bytes(), qrcode::EcLevel::M)
        .map_err(|e| usage(&format!("no QR code for this text: {e}")))?;
    Ok(code.render::<qrcode::render::svg::Color>().min_dimensions(240, 240).build())
}
