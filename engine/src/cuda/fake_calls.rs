//! TEST DOUBLE support: the call ledger the NVDEC and NVENC doubles share. Per thread and per
//! double, it records each call (its name and the arguments that matter), answers scripted
//! failures (the nth call of an entry point returns a status), and counts the resources of each
//! kind alive (created minus released), so a leak shows.

use std::cell::RefCell;
use std::collections::HashMap;

/// One double's calls on this thread.
#[derive(Debug, Default)]
struct Calls {
    log: Vec<String>,
    /// Entry point -> (the 1-based call of it that fails, the status it answers).
    fail: HashMap<&'static str, (u32, u32)>,
    made: HashMap<&'static str, u32>,
    live: HashMap<&'static str, i64>,
}

thread_local! {
    static LEDGERS: RefCell<HashMap<&'static str, Calls>> = RefCell::new(HashMap::new());
}

/// A double's ledger on the calling thread, named by the double ("nvdec", "nvenc").
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ledger(pub(crate) &'static str);

impl Ledger {
    fn with<R>(self, f: impl FnOnce(&mut Calls) -> R) -> R {
        LEDGERS.with(|l| f(l.borrow_mut().entry(self.0).or_default()))
    }

    /// Forgets every call, script and count.
    pub(crate) fn reset(self) {
        self.with(|c| *c = Calls::default());
    }

    /// Records a call of `api` (with `detail` when it has any); the status scripted for it, or 0
    /// (success for both cuvid's `CUresult` and `NVENCSTATUS`).
    pub(crate) fn record(self, api: &'static str, detail: String) -> u32 {
        self.with(|c| {
            c.log.push(if detail.is_empty() { api.to_string() } else { format!("{api}({detail})") });
            let n = c.made.entry(api).or_insert(0);
            *n += 1;
            match c.fail.get(api) {
                Some(&(nth, status)) if nth == *n => status,
                _ => 0,
            }
        })
    }

    /// A line of the log that is not a call: a refusal and its reason.
    pub(crate) fn note(self, line: String) {
        self.with(|c| c.log.push(line));
    }

    /// Makes the `nth` (1-based) call of `api` answer `status`.
    pub(crate) fn fail(self, api: &'static str, nth: u32, status: u32) {
        self.with(|c| c.fail.insert(api, (nth, status)));
    }

    /// Makes the next call of `api` answer `status`.
    pub(crate) fn fail_next(self, api: &'static str, status: u32) {
        self.with(|c| {
            let nth = c.made.get(api).copied().unwrap_or(0) + 1;
            c.fail.insert(api, (nth, status));
        });
    }

    /// `d` more (or fewer) resources of `kind` alive.
    pub(crate) fn count(self, kind: &'static str, d: i64) {
        self.with(|c| *c.live.entry(kind).or_insert(0) += d);
    }

    pub(crate) fn live(self, kind: &'static str) -> i64 {
        self.with(|c| c.live.get(kind).copied().unwrap_or(0))
    }

    /// The calls (and notes) so far, in order.
    pub(crate) fn log(self) -> Vec<String> {
        self.with(|c| c.log.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::Ledger;

    #[test]
    fn scripted_failures_hit_the_named_call_only_and_doubles_keep_apart() {
        let (a, b) = (Ledger("a"), Ledger("b"));
        a.reset();
        b.reset();
        a.fail("open", 2, 7);
        assert_eq!(a.record("open", String::new()), 0);
        b.fail_next("open", 9);
        assert_eq!(a.record("open", "x".into()), 7, "the 2nd call");
        assert_eq!(a.record("open", String::new()), 0, "once");
        assert_eq!(b.record("open", String::new()), 9, "b's next call");
        assert_eq!(b.record("open", String::new()), 0);
        a.count("session", 1);
        a.count("session", 1);
        a.count("session", -1);
        a.note("refused: why".into());
        assert_eq!((a.live("session"), b.live("session")), (1, 0));
        assert_eq!(a.log(), ["open", "open(x)", "open", "refused: why"]);
        a.reset();
        assert!(a.log().is_empty());
        assert_eq!(b.log().len(), 2);
    }
}
