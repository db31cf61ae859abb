//! What a simulated run is made of: the plot (who does what), the faults
//! of the network, the clients' machines and the server's operator, and
//! the seeded generator that draws them.

use std::time::Duration;

use crate::config::{Config, Schedule};
use crate::rendezvous::RendezvousConfig;

/// A small, fast, seeded generator for the simulation's choices (SplitMix64).
/// Not for secrets: exchange seeds are drawn from it only to make runs replayable.
#[derive(Clone, Debug)]
pub struct SimRng(u64);

impl SimRng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> SimRng {
        SimRng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `low..=high`.
    pub fn range(&mut self, low: u64, high: u64) -> u64 {
        low + self.next_u64() % (high - low + 1)
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.range(0, 99) < percent
    }

    /// 32 random bytes.
    pub fn bytes32(&mut self) -> [u8; 32] {
        let mut out = [0u8; 32];
        for chunk in out.chunks_mut(8) {
            chunk.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        out
    }
}

/// What the network, the clients' machines and the server's operator do wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Faults {
    /// Shortest one-way delay.
    pub min_delay_ms: u64,
    /// Longest one-way delay (different delays reorder packets).
    pub max_delay_ms: u64,
    /// Chance that a packet is lost.
    pub drop_percent: u64,
    /// Chance that a packet is delivered twice.
    pub duplicate_percent: u64,
    /// Chance, at each simulation step, that a client restarts from its
    /// serialized state, losing whatever was in flight.
    pub restart_percent: u64,
    /// Most restarts per client.
    pub max_restarts: u32,
    /// Largest step back of a client's clock at a restart (the state moves
    /// to a machine whose clock is behind, or the clock was set back).
    pub restart_clock_back_ms: u64,
    /// Largest step forward of a client's clock at a restart.
    pub restart_clock_forward_ms: u64,
    /// Chance, at each step, that a running client's clock jumps (NTP, a
    /// person setting it), forwards or backwards.
    pub clock_jump_percent: u64,
    /// Largest clock jump, either way.
    pub max_clock_jump_ms: u64,
    /// Most clock jumps per client.
    pub max_clock_jumps: u32,
    /// Chance, at each step, that the server is killed (`kill -9`): it
    /// restarts from what it had committed, and every connection to it is
    /// reset. `0`: the server never crashes and commits at once.
    pub server_crash_percent: u64,
    /// Most server crashes in a run.
    pub max_server_crashes: u32,
    /// Longest time the server stays down after a crash (connections are
    /// refused meanwhile).
    pub max_server_downtime_ms: u64,
    /// Longest group-commit window: an answer leaves the server only once
    /// the change it reports (and everything before it) is committed, and a
    /// crash loses what was not committed.
    pub max_commit_delay_ms: u64,
}

impl Faults {
    /// A perfect network, machines and operator.
    pub fn none() -> Faults {
        Faults {
            min_delay_ms: 1,
            max_delay_ms: 1,
            drop_percent: 0,
            duplicate_percent: 0,
            restart_percent: 0,
            max_restarts: 0,
            restart_clock_back_ms: 0,
            restart_clock_forward_ms: 0,
            clock_jump_percent: 0,
            max_clock_jump_ms: 0,
            max_clock_jumps: 0,
            server_crash_percent: 0,
            max_server_crashes: 0,
            max_server_downtime_ms: 0,
            max_commit_delay_ms: 0,
        }
    }
}

/// Who takes part and how: each plot has exactly one right outcome per
/// side (see [`check`](super::check)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plot {
    /// The receiver types the code the initiator shows.
    Honest,
    /// The receiver types the code with a wrong word.
    WrongCode,
    /// A third party, who saw only the channel number, joins with a guess
    /// as soon as the code is shown, before the receiver; the receiver
    /// types the code once the guesser has given up.
    GuesserFirst,
    /// A third party joins with a guess once the receiver has joined.
    GuesserLate,
    /// The initiator's machine sleeps right after showing the code, for
    /// longer than both sides' timeouts.
    InitiatorVanishes,
    /// The receiver's machine sleeps as soon as the server first answers
    /// it, likewise.
    ReceiverVanishes,
    /// A third party, who saw only the channel number, races the receiver
    /// to the second seat, posts its PAKE message for a guess and then goes
    /// silent (an attacker testing its guess offline against the data the
    /// initiator seals for it); the receiver types the code after that. It
    /// gets one guess: the receiver is told `Crowded`, the initiator ends
    /// with `PeerVanished` and burns the channel.
    RacingGuesser,
}

/// One simulated run, fully determined by its fields.
#[derive(Clone, Debug)]
pub struct Scenario {
    /// Seed of every random choice in the run.
    pub seed: u64,
    /// Who does what.
    pub plot: Plot,
    /// Network, machine and operator faults.
    pub faults: Faults,
    /// Whether the network loses so much that the server may never be
    /// reached (then each side's outcome follows from what it was told).
    pub severe: bool,
    /// Both sides' configuration.
    pub config: Config,
    /// The rendezvous's limits.
    pub server: RendezvousConfig,
    /// The initiator's data.
    pub initiator_data: Vec<u8>,
    /// The receiver's data.
    pub receiver_data: Vec<u8>,
    /// Longest time the person takes to type the code.
    pub typing_delay_ms: u64,
    /// How far each client's clock (initiator, receiver) is ahead of the
    /// server's (negative: behind).
    pub clock_offsets_ms: [i64; 2],
}

impl Scenario {
    /// An honest scenario with a perfect network and the default configuration.
    pub fn simple(seed: u64) -> Scenario {
        Scenario {
            seed,
            plot: Plot::Honest,
            faults: Faults::none(),
            severe: false,
            config: Config::new("example.com/sim").expect("valid appid"),
            server: RendezvousConfig::default(),
            initiator_data: b"initiator's data".to_vec(),
            receiver_data: b"receiver's data".to_vec(),
            typing_delay_ms: 3_000,
            clock_offsets_ms: [0, 0],
        }
    }

    /// A scenario drawn from `seed`: mostly honest runs with recoverable
    /// faults, and wrong codes, guessers and vanishing machines; some
    /// network faults severe enough to time out; client restarts and clock
    /// jumps; server crashes with group commit; varied schedules (some with
    /// intervals of minutes to an hour and a timeout of days), long-polling
    /// on or off, verifier confirmation on or off, clocks that disagree.
    pub fn from_seed(seed: u64) -> Scenario {
        let mut rng = SimRng::new(seed ^ 0x5eed_5eed_5eed_5eed);
        let mut scenario = Scenario::simple(seed);
        let severe = rng.chance(10);
        let max_delay_ms = rng.range(1, if severe { 20_000 } else { 2_000 });
        let crashes = rng.chance(20);
        let jumps = rng.chance(20);
        scenario.faults = Faults {
            min_delay_ms: rng.range(0, max_delay_ms),
            max_delay_ms,
            drop_percent: if severe { rng.range(40, 95) } else { rng.range(0, 10) },
            duplicate_percent: rng.range(0, 10),
            restart_percent: rng.range(0, 5),
            max_restarts: 5,
            restart_clock_back_ms: if rng.chance(30) { rng.range(0, 120_000) } else { 0 },
            restart_clock_forward_ms: if rng.chance(30) { rng.range(0, 10_000) } else { 0 },
            clock_jump_percent: if jumps { rng.range(1, 5) } else { 0 },
            max_clock_jump_ms: rng.range(0, 3_600_000),
            max_clock_jumps: 3,
            server_crash_percent: if crashes { rng.range(1, 5) } else { 0 },
            max_server_crashes: 4,
            max_server_downtime_ms: rng.range(0, 60_000),
            max_commit_delay_ms: if crashes { rng.range(0, 50) } else { 0 },
        };
        let max_delay = scenario.faults.max_delay_ms;
        scenario.faults.min_delay_ms = scenario.faults.min_delay_ms.min(max_delay);
        scenario.severe = severe;
        scenario.plot = match rng.range(0, 99) {
            0..=14 => Plot::WrongCode,
            15..=19 if !severe => Plot::GuesserFirst,
            20..=24 if !severe => Plot::GuesserLate,
            25..=27 if !severe => Plot::InitiatorVanishes,
            28..=30 if !severe => Plot::ReceiverVanishes,
            31..=33 if !severe => Plot::RacingGuesser,
            _ => Plot::Honest,
        };
        let long_intervals = rng.chance(10);
        let interval = if long_intervals {
            Duration::from_millis(rng.range(20_000, 3_600_000))
        } else {
            Duration::from_millis(rng.range(100, 2_000))
        };
        let mut config = Config::new("example.com/sim")
            .expect("valid appid")
            .with_schedule(Schedule::every(interval).expect("valid interval"))
            .with_long_poll(if rng.chance(80) { Duration::from_secs(30) } else { Duration::ZERO })
            .with_verifier_confirmation(rng.chance(20))
            .with_code_words(rng.range(1, 4) as usize)
            .expect("valid word count");
        if severe {
            config = config.with_timeout(Duration::from_secs(rng.range(20, 120)));
        } else if long_intervals {
            config = config.with_timeout(Duration::from_secs(3 * 24 * 3600));
        }
        scenario.config = config;
        let len = rng.range(0, 2_000) as usize;
        scenario.initiator_data = (0..len).map(|_| rng.next_u64() as u8).collect();
        let len = rng.range(0, 2_000) as usize;
        scenario.receiver_data = (0..len).map(|_| rng.next_u64() as u8).collect();
        scenario.typing_delay_ms = rng.range(0, 30_000);
        if rng.chance(30) {
            let mut offset = || i64::try_from(rng.range(0, 240_000)).unwrap_or(0) - 120_000;
            scenario.clock_offsets_ms = [offset(), offset()];
        }
        scenario
    }

    /// How long a vanishing machine sleeps: past both sides' deadlines,
    /// however their clocks were set or jumped.
    pub fn vanish_for(&self) -> Duration {
        let clocks = self.faults.max_clock_jump_ms * u64::from(self.faults.max_clock_jumps)
            + self.faults.restart_clock_back_ms * u64::from(self.faults.max_restarts)
            + 240_000;
        self.config.timeout() + Duration::from_millis(self.typing_delay_ms + clocks + 3_600_000)
    }
}
