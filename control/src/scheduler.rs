//! Where segments run: the orchestrator's placement state machine. Sans-IO and clock-free: every
//! call that depends on time takes `now`, so tests drive it with simulated time.
//!
//! * A stream's first segment goes to the transcoder with the lowest load/capacity among those
//!   with room; ties go to the larger absolute capacity, then the lower id. Later segments of the
//!   stream stay there (warm sessions) unless it is gone or full.
//! * Capacity and load come from the transcoders' live reports; the scheduler also counts the
//!   tasks it placed, and uses the larger of the two.
//! * Only transcoders whose capabilities fit the segment's ladder (largest output size, output
//!   codec) are considered; a segment no connected transcoder can make is refused as such, not
//!   queued.
//! * A task whose transcoder disconnects or misses its deadline is retried elsewhere when no
//!   result byte has reached the broadcaster yet, else it fails.
//! * A transcoder that failed a task (deadline, broken result stream) is put on probation: for
//!   a cool-down that doubles with each failure in a row (5 s, 10 s, ... up to 2 min) new work
//!   goes to it only when no other transcoder has room. A task it completes clears the record.
#![forbid(unsafe_code)]

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

/// A transcoder, as the orchestrator numbers them.
pub type TranscoderId = u64;
/// A task (one attempt at one segment).
pub type TaskId = u64;

/// Default deadline of a task: max(8 s, 4 x the segment's duration).
pub fn default_deadline(segment: Duration) -> Duration {
    (segment * 4).max(Duration::from_secs(8))
}

/// What a transcoder can make, from its registration. Zero means "no limit".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Capabilities {
    /// Largest output width and height its encoders accept (NVENC: 4096 for H.264).
    pub max_width: u32,
    pub max_height: u32,
    /// Whether it encodes H.264 (every backend today; a decode-only GPU node would not).
    pub no_h264: bool,
}

/// What a segment needs: its ladder's largest rendition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Need {
    pub width: u32,
    pub height: u32,
}

impl Capabilities {
    pub fn fits(&self, need: Need) -> bool {
        !self.no_h264
            && (self.max_width == 0 || need.width <= self.max_width)
            && (self.max_height == 0 || need.height <= self.max_height)
    }
}

/// One transcoder as [`Scheduler::snapshot`] shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TranscoderState {
    pub id: TranscoderId,
    /// The in-process engine.
    pub local: bool,
    pub capacity: u32,
    /// max(reported load, tasks placed here).
    pub load: u32,
    pub tasks: u32,
    pub caps: Capabilities,
    /// Failed tasks in a row.
    pub strikes: u32,
    /// Left of its cool-down after failures.
    pub cooldown: Duration,
}

/// Cool-down after the first failed task; doubles per failure in a row up to [`MAX_COOLDOWN`].
pub const FIRST_COOLDOWN: Duration = Duration::from_secs(5);
pub const MAX_COOLDOWN: Duration = Duration::from_secs(120);

#[derive(Debug, Clone)]
struct Transcoder {
    /// Tasks here have no deadline (the in-process engine: nothing to fail over from).
    exempt: bool,
    caps: Capabilities,
    capacity: u32,
    reported_load: u32,
    tasks: u32,
    /// Failed tasks in a row, and until when it gets new work only as a last resort.
    strikes: u32,
    cooldown_until: Option<Instant>,
}

impl Transcoder {
    fn load(&self) -> u32 {
        self.reported_load.max(self.tasks)
    }
    fn has_room(&self) -> bool {
        self.load() < self.capacity
    }
    fn cooling(&self, now: Instant) -> bool {
        self.cooldown_until.is_some_and(|u| now < u)
    }
}

#[derive(Debug, Clone)]
struct Task {
    stream: String,
    need: Need,
    transcoder: TranscoderId,
    deadline: Option<Instant>,
    result_started: bool,
    attempts: u32,
}

/// What to do with a task whose transcoder failed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failover {
    /// Nothing reached the broadcaster: run it again as `task` on `transcoder`.
    Retry { task: TaskId, transcoder: TranscoderId },
    /// Bytes were already sent, or no other transcoder has room: end it with an error.
    Fail { reason: &'static str },
}

/// Why a segment cannot be placed now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlaceError {
    #[error("no transcoder is connected")]
    NoTranscoders,
    #[error("every transcoder is at capacity")]
    AtCapacity,
    #[error("no connected transcoder can make a {}x{} rendition", .0.width, .0.height)]
    NoneFits(Need),
}

/// The placement state machine. See the module documentation.
#[derive(Debug)]
pub struct Scheduler {
    transcoders: BTreeMap<TranscoderId, Transcoder>,
    /// Where each stream's sessions are, and when it last placed a segment there.
    affinity: HashMap<String, (TranscoderId, Instant)>,
    tasks: HashMap<TaskId, Task>,
    next_task: TaskId,
    deadline: Duration,
    max_attempts: u32,
}

impl Scheduler {
    /// `deadline`: how long a task may run before it is failed over.
    pub fn new(deadline: Duration) -> Scheduler {
        Scheduler {
            transcoders: BTreeMap::new(),
            affinity: HashMap::new(),
            tasks: HashMap::new(),
            next_task: 1,
            deadline,
            max_attempts: 3,
        }
    }

    /// A transcoder joined (or re-registered) with `capacity` sessions.
    pub fn add_transcoder(&mut self, id: TranscoderId, capacity: u32) {
        let tasks = self.tasks.values().filter(|t| t.transcoder == id).count() as u32;
        let caps = Capabilities::default();
        let t = Transcoder { exempt: false, caps, capacity, reported_load: 0, tasks, strikes: 0, cooldown_until: None };
        self.transcoders.insert(id, t);
    }

    /// What transcoder `id` can make (from its registration).
    pub fn set_capabilities(&mut self, id: TranscoderId, caps: Capabilities) {
        if let Some(t) = self.transcoders.get_mut(&id) {
            t.caps = caps;
        }
    }

    /// The in-process engine: scheduled like the others, but its tasks have no deadline.
    pub fn add_local(&mut self, id: TranscoderId, capacity: u32) {
        self.add_transcoder(id, capacity);
        if let Some(t) = self.transcoders.get_mut(&id) {
            t.exempt = true;
        }
    }

    /// A live report from a transcoder.
    pub fn report(&mut self, id: TranscoderId, capacity: u32, load: u32) {
        if let Some(t) = self.transcoders.get_mut(&id) {
            t.capacity = capacity;
            t.reported_load = load;
        }
    }

    /// Total (capacity, load) over connected transcoders.
    pub fn totals(&self) -> (u32, u32) {
        self.transcoders.values().fold((0, 0), |(c, l), t| (c + t.capacity, l + t.load()))
    }

    pub fn transcoders(&self) -> usize {
        self.transcoders.len()
    }

    /// Every transcoder's placement state, in id order (for the status endpoint).
    pub fn snapshot(&self, now: Instant) -> Vec<TranscoderState> {
        self.transcoders
            .iter()
            .map(|(&id, t)| TranscoderState {
                id,
                local: t.exempt,
                capacity: t.capacity,
                load: t.load(),
                tasks: t.tasks,
                caps: t.caps,
                strikes: t.strikes,
                cooldown: t.cooldown_until.map_or(Duration::ZERO, |u| u.saturating_duration_since(now)),
            })
            .collect()
    }

    /// The transcoder a task runs on.
    pub fn transcoder_of(&self, task: TaskId) -> Option<TranscoderId> {
        self.tasks.get(&task).map(|t| t.transcoder)
    }

    fn pick(
        &self,
        stream: &str,
        need: Need,
        exclude: Option<TranscoderId>,
        now: Instant,
    ) -> Result<TranscoderId, PlaceError> {
        if self.transcoders.is_empty() {
            return Err(PlaceError::NoTranscoders);
        }
        if !self.transcoders.values().any(|t| t.caps.fits(need)) {
            return Err(PlaceError::NoneFits(need));
        }
        if let Some(&(id, _)) = self.affinity.get(stream)
            && Some(id) != exclude
            && self.transcoders.get(&id).is_some_and(|t| t.has_room() && t.caps.fits(need) && !t.cooling(now))
        {
            return Ok(id);
        }
        self.transcoders
            .iter()
            .filter(|(id, t)| Some(**id) != exclude && t.has_room() && t.caps.fits(need))
            .min_by(|(ia, a), (ib, b)| {
                // Those on probation last; then load/capacity compared exactly
                // (a.load * b.cap vs b.load * a.cap).
                let ra = u64::from(a.load()) * u64::from(b.capacity);
                let rb = u64::from(b.load()) * u64::from(a.capacity);
                a.cooling(now).cmp(&b.cooling(now)).then(ra.cmp(&rb)).then(b.capacity.cmp(&a.capacity)).then(ia.cmp(ib))
            })
            .map(|(id, _)| *id)
            .ok_or(PlaceError::AtCapacity)
    }

    fn start(&mut self, stream: &str, need: Need, transcoder: TranscoderId, attempts: u32, now: Instant) -> TaskId {
        let id = self.next_task;
        self.next_task += 1;
        self.affinity.insert(stream.to_string(), (transcoder, now));
        let mut exempt = false;
        if let Some(t) = self.transcoders.get_mut(&transcoder) {
            t.tasks += 1;
            exempt = t.exempt;
        }
        let task = Task {
            stream: stream.to_string(),
            need,
            transcoder,
            deadline: (!exempt).then(|| now + self.deadline),
            result_started: false,
            attempts,
        };
        self.tasks.insert(id, task);
        id
    }

    /// Places a segment of `stream` that any transcoder can make.
    pub fn place(&mut self, stream: &str, now: Instant) -> Result<(TaskId, TranscoderId), PlaceError> {
        self.place_fitting(stream, Need::default(), now)
    }

    /// Places a segment of `stream` on a transcoder whose capabilities fit `need`.
    pub fn place_fitting(
        &mut self,
        stream: &str,
        need: Need,
        now: Instant,
    ) -> Result<(TaskId, TranscoderId), PlaceError> {
        let t = self.pick(stream, need, None, now)?;
        Ok((self.start(stream, need, t, 1, now), t))
    }

    /// Gives `task` (placed at `placed`) at least `deadline` before it is failed over: a segment
    /// whose duration is known (a Livepeer gateway's) gets max(8 s, 4 x its duration), as
    /// go-livepeer waits for it.
    pub fn at_least(&mut self, task: TaskId, placed: Instant, deadline: Duration) {
        if let Some(t) = self.tasks.get_mut(&task)
            && let Some(d) = t.deadline.as_mut()
        {
            *d = (*d).max(placed + deadline);
        }
    }

    /// The first result byte of `task` went to the broadcaster: it can no longer be retried.
    pub fn result_started(&mut self, task: TaskId) {
        if let Some(t) = self.tasks.get_mut(&task) {
            t.result_started = true;
        }
    }

    /// The task's transcoder delivered all of it: its failure record is cleared.
    pub fn succeeded(&mut self, task: TaskId) {
        if let Some(t) = self.tasks.get(&task).map(|t| t.transcoder)
            && let Some(tr) = self.transcoders.get_mut(&t)
        {
            tr.strikes = 0;
            tr.cooldown_until = None;
        }
        self.finish(task);
    }

    /// The task ended (successfully or with an error the broadcaster was told).
    pub fn finish(&mut self, task: TaskId) {
        if let Some(t) = self.tasks.remove(&task)
            && let Some(tr) = self.transcoders.get_mut(&t.transcoder)
        {
            tr.tasks = tr.tasks.saturating_sub(1);
        }
    }

    /// The task's transcoder failed it (disconnect, deadline, broken result stream).
    pub fn fail(&mut self, task: TaskId, now: Instant) -> Failover {
        let Some(t) = self.tasks.get(&task).cloned() else {
            return Failover::Fail { reason: "unknown task" };
        };
        self.finish(task);
        if let Some(tr) = self.transcoders.get_mut(&t.transcoder)
            && !tr.exempt
        {
            tr.strikes += 1;
            let cooldown = FIRST_COOLDOWN.saturating_mul(1 << (tr.strikes - 1).min(10)).min(MAX_COOLDOWN);
            tr.cooldown_until = Some(now + cooldown);
        }
        if t.result_started {
            return Failover::Fail { reason: "result bytes were already sent" };
        }
        if t.attempts >= self.max_attempts {
            return Failover::Fail { reason: "too many attempts" };
        }
        if self.affinity.get(&t.stream).is_some_and(|(id, _)| *id == t.transcoder) {
            self.affinity.remove(&t.stream);
        }
        match self.pick(&t.stream, t.need, Some(t.transcoder), now) {
            Ok(other) => {
                Failover::Retry { task: self.start(&t.stream, t.need, other, t.attempts + 1, now), transcoder: other }
            }
            Err(_) => Failover::Fail { reason: "no other transcoder has room" },
        }
    }

    /// A transcoder is gone: its tasks, each with its failover.
    pub fn remove_transcoder(&mut self, id: TranscoderId, now: Instant) -> Vec<(TaskId, Failover)> {
        self.transcoders.remove(&id);
        self.affinity.retain(|_, (t, _)| *t != id);
        let mut failed: Vec<TaskId> = self.tasks.iter().filter(|(_, t)| t.transcoder == id).map(|(k, _)| *k).collect();
        failed.sort_unstable();
        failed.into_iter().map(|task| (task, self.fail(task, now))).collect()
    }

    /// Tasks past their deadline, each with its failover.
    pub fn expire(&mut self, now: Instant) -> Vec<(TaskId, Failover)> {
        let mut late: Vec<TaskId> =
            self.tasks.iter().filter(|(_, t)| t.deadline.is_some_and(|d| now >= d)).map(|(k, _)| *k).collect();
        late.sort_unstable();
        late.into_iter().map(|task| (task, self.fail(task, now))).collect()
    }

    /// A stream ended: forget its affinity. Returns the transcoder that held its sessions, to be
    /// told to free them.
    pub fn end_stream(&mut self, stream: &str) -> Option<TranscoderId> {
        self.affinity.remove(stream).map(|(id, _)| id)
    }

    /// Forgets the placement of streams that placed no segment for `idle` and have none running
    /// (their sessions were closed as idle where they ran): without this the table would grow
    /// by one entry per stream name ever seen.
    pub fn expire_affinity(&mut self, now: Instant, idle: Duration) {
        // Called often (housekeeping): nothing to look at unless some placement is stale.
        if self.affinity.values().all(|(_, used)| now.duration_since(*used) < idle) {
            return;
        }
        let running: std::collections::HashSet<&str> = self.tasks.values().map(|t| t.stream.as_str()).collect();
        self.affinity.retain(|stream, (_, used)| now.duration_since(*used) < idle || running.contains(stream.as_str()));
    }

    /// Streams whose placement is remembered.
    pub fn streams_placed(&self) -> usize {
        self.affinity.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    /// A scheduler with an 8 s deadline and these transcoders (id, capacity), and the time now.
    fn with_transcoders(transcoders: &[(TranscoderId, u32)]) -> (Instant, Scheduler) {
        let mut s = Scheduler::new(secs(8));
        for &(id, capacity) in transcoders {
            s.add_transcoder(id, capacity);
        }
        (Instant::now(), s)
    }

    #[test]
    fn placement_prefers_lowest_relative_load_then_larger_capacity() {
        let now = Instant::now();
        let mut s = Scheduler::new(secs(8));
        assert_eq!(s.place("a", now), Err(PlaceError::NoTranscoders));
        s.add_transcoder(1, 2);
        s.add_transcoder(2, 8);
        // Both idle: tie on 0/cap, the larger capacity wins.
        assert_eq!(s.place("a", now).map(|p| p.1), Ok(2));
        // 2 has 1/8, 1 has 0/2: transcoder 1 is relatively less loaded.
        assert_eq!(s.place("b", now).map(|p| p.1), Ok(1));
        // Live reports count: 2 reports 6/8 busy; 1 is 1/2: 0.5 < 0.75.
        s.report(2, 8, 6);
        assert_eq!(s.place("c", now).map(|p| p.1), Ok(1));
        assert_eq!(s.totals(), (10, 8));
        let snap = s.snapshot(now);
        assert_eq!(
            snap.iter().map(|t| (t.id, t.capacity, t.load, t.tasks)).collect::<Vec<_>>(),
            [(1, 2, 2, 2), (2, 8, 6, 1)]
        );
    }

    #[test]
    fn idle_streams_are_forgotten_unless_a_segment_runs() {
        let (t0, mut s) = with_transcoders(&[(1, 4)]);
        let (a, _) = s.place("a", t0).expect("a");
        s.finish(a);
        let (_b, _) = s.place("b", t0).expect("b"); // still running
        assert_eq!(s.streams_placed(), 2);
        s.expire_affinity(t0 + secs(30), secs(60));
        assert_eq!(s.streams_placed(), 2, "not idle yet");
        s.expire_affinity(t0 + secs(61), secs(60));
        assert_eq!(s.streams_placed(), 1, "a is forgotten, b has a segment running");
    }

    #[test]
    fn affinity_keeps_a_stream_on_its_transcoder_until_full_or_gone() {
        let (now, mut s) = with_transcoders(&[(1, 2), (2, 2)]);
        let (_, on) = s.place("live", now).expect("place");
        // Another stream goes to the idle peer.
        let (_, other_on) = s.place("other", now).expect("place");
        assert_ne!(other_on, on);
        // Both at 1/2: the stream returns to its transcoder (warm sessions), filling it.
        let (_, again) = s.place("live", now).expect("place");
        assert_eq!(again, on, "affinity");
        // Its transcoder is full: the stream moves.
        let (_, moved) = s.place("live", now).expect("place");
        assert_ne!(moved, on);
        // Everything full: refused at once.
        assert_eq!(s.place("x", now), Err(PlaceError::AtCapacity));
    }

    #[test]
    fn a_transcoder_that_fails_tasks_gets_new_work_last_for_a_doubling_cool_down() {
        // 1 is preferred on ties: the larger capacity.
        let (t0, mut s) = with_transcoders(&[(1, 8), (2, 1)]);
        let (a, on) = s.place("a", t0).expect("a");
        assert_eq!(on, 1);
        // 1 breaks the task: retried on 2, and 1 is on probation for 5 s.
        assert!(matches!(s.fail(a, t0), Failover::Retry { transcoder: 2, .. }));
        let st = &s.snapshot(t0)[0];
        assert_eq!((st.strikes, st.cooldown), (1, FIRST_COOLDOWN));
        // While 2 has room, new streams go there although 1 is idle and larger.
        s.add_transcoder(3, 1);
        assert_eq!(s.place("b", t0).map(|p| p.1), Ok(3));
        // Nobody else has room: the probation transcoder is still used rather than refusing.
        let (c, on) = s.place("c", t0).expect("c");
        assert_eq!(on, 1, "last resort");
        // A second failure in a row doubles the cool-down.
        let t1 = t0 + secs(1);
        s.fail(c, t1);
        assert_eq!(s.snapshot(t1)[0].cooldown, FIRST_COOLDOWN * 2);
        // After it, 1 is preferred again (idle, larger); a completed task clears its record.
        let t2 = t1 + FIRST_COOLDOWN * 2;
        let (d, on) = s.place("d", t2).expect("d");
        assert_eq!(on, 1);
        s.succeeded(d);
        assert_eq!(s.snapshot(t2)[0].strikes, 0);
        // The cool-down is capped.
        for i in 0..20 {
            let (t, _) = s.place(&format!("e{i}"), t2).expect("e");
            if s.transcoder_of(t) == Some(1) {
                s.fail(t, t2);
            } else {
                s.finish(t);
            }
        }
        assert!(s.snapshot(t2)[0].cooldown <= MAX_COOLDOWN);
    }

    #[test]
    fn disconnect_retries_unstarted_tasks_and_fails_started_ones() {
        let (now, mut s) = with_transcoders(&[(1, 4)]);
        let (a, _) = s.place("a", now).expect("a");
        let (b, _) = s.place("b", now).expect("b");
        s.add_transcoder(2, 4);
        s.result_started(b);
        let out = s.remove_transcoder(1, now);
        assert_eq!(out.len(), 2);
        assert!(matches!(out[0], (t, Failover::Retry { transcoder: 2, .. }) if t == a));
        assert_eq!(out[1], (b, Failover::Fail { reason: "result bytes were already sent" }));
        assert_eq!(s.totals(), (4, 1));
    }

    #[test]
    fn a_long_segments_task_gets_its_longer_deadline() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(default_deadline(secs(2)));
        s.add_transcoder(1, 2);
        let (a, _) = s.place("a", t0).expect("a");
        let (b, _) = s.place("b", t0).expect("b");
        s.at_least(a, t0, default_deadline(secs(10)));
        s.at_least(b, t0, default_deadline(secs(1)));
        let out = s.expire(t0 + secs(8));
        assert_eq!(out.iter().map(|(t, _)| *t).collect::<Vec<_>>(), vec![b], "b at 8 s, a not yet");
        assert!(s.expire(t0 + secs(39)).is_empty());
        assert_eq!(s.expire(t0 + secs(40)).len(), 1, "a at 4 x 10 s");
    }

    #[test]
    fn deadlines_fail_over_with_simulated_time() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(default_deadline(secs(2)));
        s.add_transcoder(1, 1);
        s.add_transcoder(2, 1);
        let (a, on) = s.place("a", t0).expect("a");
        assert!(s.expire(t0 + secs(7)).is_empty());
        let out = s.expire(t0 + secs(8));
        let [(task, Failover::Retry { task: retry, transcoder })] = &out[..] else { panic!("{out:?}") };
        assert_eq!(*task, a);
        assert_ne!(*transcoder, on);
        // The retry has its own deadline, from when it started.
        assert!(s.expire(t0 + secs(15)).is_empty());
        let out = s.expire(t0 + secs(16));
        assert_eq!(out[0].0, *retry);
        // Third attempt is the last one.
        let Failover::Retry { task: third, .. } = out[0].1 else { panic!("{out:?}") };
        let out = s.expire(t0 + secs(24));
        assert_eq!(out, vec![(third, Failover::Fail { reason: "too many attempts" })]);
        assert_eq!(s.totals(), (2, 0));
    }

    #[test]
    fn local_engine_tasks_have_no_deadline() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(secs(8));
        s.add_local(0, 1);
        s.add_transcoder(1, 1);
        let (a, on_a) = s.place("a", t0).expect("a");
        let (b, on_b) = s.place("b", t0).expect("b");
        assert_eq!((on_a, on_b), (0, 1), "equal load and capacity: lower id first");
        // Only the remote task expires; the local one keeps its slot however long it runs.
        let out = s.expire(t0 + secs(3600));
        assert_eq!(out, vec![(b, Failover::Fail { reason: "no other transcoder has room" })]);
        assert_eq!(s.totals(), (2, 1));
        s.finish(a);
        assert_eq!(s.totals(), (2, 0));
    }

    #[test]
    fn only_transcoders_whose_capabilities_fit_are_chosen() {
        let (now, mut s) = with_transcoders(&[(1, 8), (2, 2)]);
        // 1 is a GPU capped at 1920x1080 outputs; 2 has no limit.
        s.set_capabilities(1, Capabilities { max_width: 1920, max_height: 1080, no_h264: false });
        let uhd = Need { width: 3840, height: 2160 };
        let hd = Need { width: 1280, height: 720 };
        assert_eq!(s.place_fitting("4k", uhd, now).map(|p| p.1), Ok(2), "only 2 fits 4K");
        // Affinity does not override a misfit: "4k" now asks for HD and may use the larger 1.
        assert_eq!(s.place_fitting("hd", hd, now).map(|p| p.1), Ok(1));
        let (_, again) = s.place_fitting("4k", uhd, now).expect("fits on 2");
        assert_eq!(again, 2);
        // 2 is full; 1 has room but cannot make 4K: at capacity, not misplaced.
        assert_eq!(s.place_fitting("4k", uhd, now), Err(PlaceError::AtCapacity));
        // No one encodes 8K at all: a distinct refusal.
        let eight_k = Need { width: 7680, height: 4320 };
        s.set_capabilities(2, Capabilities { max_width: 4096, max_height: 4096, no_h264: false });
        assert_eq!(s.place_fitting("8k", eight_k, now), Err(PlaceError::NoneFits(eight_k)));
        // A transcoder that lost H.264 encode (e.g. a decode-only GPU) gets nothing.
        s.set_capabilities(1, Capabilities { no_h264: true, ..Capabilities::default() });
        assert_eq!(s.place_fitting("hd2", hd, now).map(|p| p.1), Err(PlaceError::AtCapacity));
    }

    #[test]
    fn retries_keep_the_segments_needs() {
        let (now, mut s) = with_transcoders(&[(1, 1), (2, 1), (3, 4)]);
        s.set_capabilities(3, Capabilities { max_width: 640, max_height: 360, no_h264: false });
        let need = Need { width: 1280, height: 720 };
        let (a, on) = s.place_fitting("a", need, now).expect("a");
        assert_ne!(on, 3);
        let f = s.fail(a, now);
        let Failover::Retry { transcoder, .. } = f else { panic!("{f:?}") };
        assert!(transcoder != 3 && transcoder != on, "retry went to {transcoder}");
    }

    #[test]
    fn end_stream_names_the_transcoder_holding_its_sessions() {
        let (now, mut s) = with_transcoders(&[(7, 2)]);
        let (t, _) = s.place("live", now).expect("place");
        s.finish(t);
        assert_eq!(s.end_stream("live"), Some(7));
        assert_eq!(s.end_stream("live"), None);
    }
}
