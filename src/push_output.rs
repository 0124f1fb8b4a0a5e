//! The renditions of one pushed segment, from the node's result records to files, with no
//! network: `zerohop push` feeds it every record the server sends, the tests and the fuzz target
//! feed it arbitrary ones.
//!
//! The names of the renditions come from the server (the start record) and become part of file
//! names, so a name is used only when it is a safe file name ([`check_name`]); a rendition whose
//! name is not, or whose file would be another rendition's, is refused with a problem naming it
//! and nothing is written for it. Each file is written as `<file>.part` and renamed to its final
//! name only when the segment completed, the rendition included; otherwise the `.part` is
//! removed. Nothing here panics on what a server sends, and nothing is created outside the
//! output directory.
//!
//! Depends only on `std`, `serde_json`, the record format and [`crate::part_file`]: the fuzz
//! target includes this file as it is.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use zerohop_control::framing::{Kind, Record};

use crate::part_file::PartFile;

/// Longest rendition name used in a file name, in bytes.
pub const MAX_NAME_BYTES: usize = 100;
/// Problems kept per segment (a hostile stream could make one per record).
const MAX_PROBLEMS: usize = 8;

/// Whether `name` may be part of a file name: `Err` says why not.
pub fn check_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        Err("it is empty")
    } else if name.len() > MAX_NAME_BYTES {
        Err("it is longer than 100 bytes")
    } else if name == "." || name == ".." {
        Err("it names a directory")
    } else if name.contains(['/', '\\']) {
        Err("it contains a path separator")
    } else if name.chars().any(char::is_control) {
        Err("it contains a control character")
    } else {
        Ok(())
    }
}

/// A name as an error message shows it: quoted, escaped, and cut short.
fn shown(name: &str) -> String {
    let cut: String = name.chars().take(40).collect();
    let more = if cut.len() < name.len() { "..." } else { "" };
    format!("{cut:?}{more}")
}

/// One rendition named in the start record.
#[derive(Debug)]
struct Slot {
    name: String,
    /// Where its file goes; `None` when the name was refused.
    path: Option<PathBuf>,
    file: Option<PartFile>,
    done: bool,
    failed: bool,
}

/// What became of the segment's renditions.
#[derive(Debug, Default)]
pub struct Written {
    /// The files renamed into place (sorted); empty unless the segment completed.
    pub files: Vec<PathBuf>,
    /// What was wrong with what the server sent (refused names, records out of order). Any
    /// problem fails the segment.
    pub problems: Vec<String>,
}

/// The files of one segment being pushed.
#[derive(Debug)]
pub struct SegmentOutput {
    dir: PathBuf,
    prefix: String,
    /// `None` until the start record.
    slots: Option<Vec<Slot>>,
    problems: Vec<String>,
    io_error: Option<std::io::Error>,
}

impl SegmentOutput {
    /// Rendition `name` goes to `dir/<prefix>_<name>.ts`.
    pub fn new(dir: &Path, prefix: impl Into<String>) -> SegmentOutput {
        SegmentOutput {
            dir: dir.to_path_buf(),
            prefix: prefix.into(),
            slots: None,
            problems: Vec::new(),
            io_error: None,
        }
    }

    fn problem(&mut self, p: impl FnOnce() -> String) {
        if self.problems.len() < MAX_PROBLEMS {
            self.problems.push(p());
        }
    }

    /// Takes one record of the result stream.
    pub fn record(&mut self, rec: &Record) {
        match rec.kind {
            Kind::Start => self.start(&rec.payload),
            Kind::Chunk => self.chunk(rec.rendition, &rec.payload),
            Kind::Done => {
                if let Some(s) = self.slot(rec.rendition, "done") {
                    if s.done || s.failed {
                        let name = shown(&s.name);
                        self.problem(|| format!("rendition {name} ended twice"));
                    } else {
                        s.done = true;
                    }
                }
            }
            Kind::Error => {
                // The error itself reaches the caller through the push outcome; here the
                // rendition's partial file goes.
                if let Some(s) = self.slots.as_mut().and_then(|s| s.get_mut(usize::from(rec.rendition))) {
                    s.failed = true;
                    if let Some(mut f) = s.file.take() {
                        f.discard();
                    }
                }
            }
            Kind::End => {}
        }
    }

    fn start(&mut self, payload: &[u8]) {
        if self.slots.is_some() {
            return self.problem(|| "a second start record".into());
        }
        let v: serde_json::Value = serde_json::from_slice(payload).unwrap_or_default();
        let Some(list) = v.get("renditions").and_then(|r| r.as_array()) else {
            self.slots = Some(Vec::new());
            return self.problem(|| "the start record names no renditions".into());
        };
        let mut slots = Vec::with_capacity(list.len());
        let mut refused = Vec::new();
        for (i, n) in list.iter().enumerate() {
            let name = n.as_str().map_or_else(|| format!("#{i}"), str::to_string);
            let checked = match n.as_str() {
                None => Err("it is not a string"),
                Some(s) => check_name(s),
            };
            let path = match checked {
                Ok(()) => Some(self.dir.join(format!("{}_{name}.ts", self.prefix))),
                Err(why) => {
                    refused.push(format!("rendition name {} refused: {why}", shown(&name)));
                    None
                }
            };
            slots.push(Slot { name, path, file: None, done: false, failed: false });
        }
        // Two renditions must not share a file, on case-insensitive file systems either.
        let key = |p: &PathBuf| p.to_string_lossy().to_lowercase();
        let mut seen: HashMap<String, usize> = HashMap::new();
        for p in slots.iter().filter_map(|s| s.path.as_ref()) {
            *seen.entry(key(p)).or_default() += 1;
        }
        for s in &mut slots {
            if s.path.as_ref().is_some_and(|p| seen[&key(p)] > 1) {
                s.path = None;
                refused.push(format!("rendition name {} refused: another rendition has the same file", shown(&s.name)));
            }
        }
        self.slots = Some(slots);
        for r in refused {
            self.problem(|| r);
        }
    }

    /// The slot of rendition `i` for a `what` record, or `None` (with a problem when it is not
    /// one the start record named).
    fn slot(&mut self, i: u8, what: &str) -> Option<&mut Slot> {
        let known = self.slots.as_ref().map(|s| usize::from(i) < s.len());
        match known {
            None => {
                self.problem(|| format!("a {what} record before the start record"));
                None
            }
            Some(false) => {
                self.problem(|| format!("a {what} record for rendition {i}, which the start record does not name"));
                None
            }
            Some(true) => self.slots.as_mut().and_then(|s| s.get_mut(usize::from(i))),
        }
    }

    fn chunk(&mut self, i: u8, data: &[u8]) {
        let Some(s) = self.slot(i, "chunk") else { return };
        let Some(path) = &s.path else { return }; // refused: nothing is written
        if s.done || s.failed {
            let name = shown(&s.name);
            return self.problem(|| format!("a chunk of rendition {name} after its end"));
        }
        let written = match &mut s.file {
            Some(f) => f.write(data),
            None => PartFile::create(path.clone()).and_then(|f| s.file.insert(f).write(data)),
        };
        if let Err(e) = written {
            s.failed = true;
            s.file = None;
            self.io_error.get_or_insert(e);
        }
    }

    /// Ends the segment: when the node said it completed (`server_ok`) and nothing was wrong,
    /// every rendition's file is renamed into place; otherwise every `.part` is removed. `Err`:
    /// a file could not be written (a local fault, not the server's).
    pub fn finish(mut self, server_ok: bool) -> std::io::Result<Written> {
        if let Some(e) = self.io_error.take() {
            return Err(e);
        }
        let started = self.slots.is_some();
        let mut slots = self.slots.take().unwrap_or_default();
        if server_ok {
            if !started {
                self.problem(|| "no start record".into());
            }
            for s in &slots {
                if (!s.done || s.failed) && s.path.is_some() {
                    let name = shown(&s.name);
                    self.problem(|| format!("rendition {name} did not complete"));
                }
            }
        }
        let mut files = Vec::new();
        if server_ok && self.problems.is_empty() {
            for f in slots.iter_mut().filter_map(|s| s.file.as_mut()) {
                f.commit()?;
                files.push(f.path().to_path_buf());
            }
        }
        files.sort();
        // Whatever was not committed is removed as the slots drop.
        Ok(Written { files, problems: std::mem::take(&mut self.problems) })
    }
}

#[cfg(test)]
mod tests {

    use proptest::prelude::*;
    use zerohop_control::framing::{Kind, Record, RecordReader, SEGMENT, record};

    use super::*;

    /// A fresh directory `<scratch>/out` (the test checks that nothing appears beside `out`),
    /// removed with its root when dropped, whatever the test's outcome.
    struct Scratch {
        root: crate::scratch::ScratchDir,
        out: PathBuf,
    }

    impl Scratch {
        fn new() -> Scratch {
            let root = crate::scratch::ScratchDir::new("push-output");
            let out = root.path().join("out");
            std::fs::create_dir_all(&out).expect("scratch dir");
            Scratch { root, out }
        }

        /// A segment's output in `out` after `recs`.
        fn fed(&self, prefix: &str, recs: &[Record]) -> SegmentOutput {
            let mut o = SegmentOutput::new(&self.out, prefix);
            for r in recs {
                o.record(r);
            }
            o
        }
    }

    fn rec(kind: Kind, rendition: u8, payload: &[u8]) -> Record {
        Record { kind, rendition, payload: bytes::Bytes::copy_from_slice(payload) }
    }

    fn start(names: &[&str]) -> Record {
        rec(Kind::Start, SEGMENT, serde_json::json!({ "renditions": names }).to_string().as_bytes())
    }

    fn listing(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn names_that_are_not_safe_file_names_are_refused() {
        for bad in ["", ".", "..", "a/b", "../x", "/etc", "a\\b", "a\0b", "a\nb", "\u{7f}", &"x".repeat(101)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        for good in ["720p", "P360p30fps16x9", "a.b", "...", "720p high", "é", &"x".repeat(100)] {
            assert_eq!(check_name(good), Ok(()), "{good:?}");
        }
    }

    #[test]
    fn a_completed_segment_is_renamed_into_place() {
        let dir = Scratch::new();
        let head = [start(&["720p", "360p"]), rec(Kind::Chunk, 0, b"ab"), rec(Kind::Chunk, 1, b"c")];
        let mut o = dir.fed("s_0", &head);
        o.record(&rec(Kind::Chunk, 0, b"d"));
        assert_eq!(listing(&dir.out), ["s_0_360p.ts.part", "s_0_720p.ts.part"], "written as .part first");
        o.record(&rec(Kind::Done, 0, b"{}"));
        o.record(&rec(Kind::Done, 1, b"{}"));
        o.record(&rec(Kind::End, SEGMENT, br#"{"status":"ok"}"#));
        let w = o.finish(true).expect("written");
        assert!(w.problems.is_empty(), "{:?}", w.problems);
        assert_eq!(w.files, [dir.out.join("s_0_360p.ts"), dir.out.join("s_0_720p.ts")]);
        assert_eq!(std::fs::read(dir.out.join("s_0_720p.ts")).expect("read"), b"abd");
        assert_eq!(listing(&dir.out), ["s_0_360p.ts", "s_0_720p.ts"]);
    }

    #[test]
    fn a_failed_or_aborted_segment_leaves_no_file() {
        let dir = Scratch::new();
        let o = dir.fed(
            "s_1",
            &[
                start(&["720p", "360p"]),
                rec(Kind::Chunk, 0, b"ab"),
                rec(Kind::Chunk, 1, b"c"),
                rec(Kind::Error, 1, br#"{"code":"x"}"#),
            ],
        );
        assert_eq!(listing(&dir.out), ["s_1_720p.ts.part"], "the failed rendition's .part goes at once");
        let w = o.finish(false).expect("no io error");
        assert!(w.files.is_empty());
        assert!(listing(&dir.out).is_empty());
        // Dropped mid-segment (the connection went away): nothing either.
        drop(dir.fed("s_2", &[start(&["720p"]), rec(Kind::Chunk, 0, b"ab")]));
        assert!(listing(&dir.out).is_empty());
    }

    #[test]
    fn a_bad_name_is_refused_by_name_and_fails_the_segment() {
        let dir = Scratch::new();
        let mut recs = vec![start(&["720p", "../../evil", "a/b", "360p", "360P"])];
        recs.extend((0..5).flat_map(|i| [rec(Kind::Chunk, i, b"x"), rec(Kind::Done, i, b"{}")]));
        let o = dir.fed("s_0", &recs);
        assert_eq!(listing(&dir.out), ["s_0_720p.ts.part"], "nothing is written for a refused name");
        let w = o.finish(true).expect("no io error");
        let all = w.problems.join("\n");
        for name in ["\"../../evil\"", "\"a/b\"", "\"360p\"", "\"360P\""] {
            assert!(all.contains(name), "{name} in {all}");
        }
        assert!(w.files.is_empty());
        assert!(listing(&dir.out).is_empty());
        assert_eq!(listing(dir.root.path()), ["out"]);
    }

    #[test]
    fn records_out_of_order_are_problems_not_panics() {
        let dir = Scratch::new();
        let o = dir.fed(
            "s",
            &[
                rec(Kind::Chunk, 0, b"early"),
                rec(Kind::Done, 3, b""),
                start(&["a"]),
                rec(Kind::Start, SEGMENT, b"not json"),
                rec(Kind::Chunk, 7, b"unknown"),
                rec(Kind::Done, 0, b""),
                rec(Kind::Chunk, 0, b"late"),
            ],
        );
        let w = o.finish(true).expect("no io error");
        assert_eq!(w.problems.len(), 5, "{:?}", w.problems);
        assert!(listing(&dir.out).is_empty());
        let w = SegmentOutput::new(&dir.out, "s").finish(true).expect("no io error");
        assert_eq!(w.problems, ["no start record"]);
    }

    fn name() -> impl Strategy<Value = String> {
        prop_oneof![
            6 => "[a-z0-9]{1,6}",
            1 => r"[a-zA-Z./\\\x00\n]{0,4}",
            1 => Just("..".to_string()),
            1 => Just("720p".to_string()),
            1 => ".{95,110}",
            1 => any::<String>(),
        ]
    }

    fn start_payload() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            4 => prop::collection::vec(name(), 0..6)
                .prop_map(|n| serde_json::json!({ "renditions": n }).to_string().into_bytes()),
            1 => prop::collection::vec(any::<u8>(), 0..40),
            1 => Just(br#"{"renditions":[1,null,"a",["b"]]}"#.to_vec()),
        ]
    }

    /// `S (C)* D... Z` over names from [`name`]: a clean segment when the names are safe.
    fn well_formed() -> impl Strategy<Value = Vec<Record>> {
        let chunks = prop::collection::vec((any::<u8>(), prop::collection::vec(any::<u8>(), 0..16)), 0..12);
        (prop::collection::vec(name(), 1..4), chunks).prop_map(|(names, chunks)| {
            let n = names.len() as u8;
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            let mut v = vec![start(&names)];
            v.extend(chunks.iter().map(|(r, p)| rec(Kind::Chunk, r % n, p)));
            v.extend((0..n).map(|i| rec(Kind::Done, i, b"{}")));
            v.push(rec(Kind::End, SEGMENT, br#"{"status":"ok"}"#));
            v
        })
    }

    fn records() -> impl Strategy<Value = Vec<Record>> {
        prop_oneof![well_formed(), any_records()]
    }

    fn any_records() -> impl Strategy<Value = Vec<Record>> {
        let kind =
            prop_oneof![Just(Kind::Start), Just(Kind::Chunk), Just(Kind::Done), Just(Kind::Error), Just(Kind::End)];
        let rendition = prop_oneof![0u8..6, Just(SEGMENT), any::<u8>()];
        let one = (kind, rendition, prop::collection::vec(any::<u8>(), 0..24)).prop_map(|(k, r, p)| rec(k, r, &p));
        (start_payload(), prop::collection::vec(one, 0..40), any::<bool>()).prop_map(|(s, mut rest, first)| {
            if first {
                rest.insert(0, rec(Kind::Start, SEGMENT, &s));
            }
            rest
        })
    }

    /// What must hold after any stream: nothing beside the output directory, no directory or
    /// `.part` inside it, files only under safe names, and files only for a clean segment,
    /// each holding exactly its rendition's chunks.
    fn check(dir: &Scratch, recs: &[Record], server_ok: bool) -> Result<(), TestCaseError> {
        let w = dir.fed("s_0", recs).finish(server_ok).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let out = &dir.out;
        prop_assert_eq!(listing(dir.root.path()), vec!["out".to_string()]);
        let files = listing(out);
        for f in &files {
            prop_assert!(!out.join(f).is_dir() && !f.ends_with(".part"), "{f:?}");
            let name = f.strip_prefix("s_0_").and_then(|n| n.strip_suffix(".ts"));
            prop_assert!(name.is_some_and(|n| check_name(n).is_ok()), "{f:?}");
        }
        prop_assert_eq!(files.len(), w.files.len());
        if !(server_ok && w.problems.is_empty()) {
            prop_assert!(files.is_empty());
        }
        for path in &w.files {
            let stem = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            let i = recs
                .iter()
                .find(|r| r.kind == Kind::Start)
                .and_then(|s| serde_json::from_slice::<serde_json::Value>(&s.payload).ok())
                .and_then(|v| {
                    v["renditions"]
                        .as_array()?
                        .iter()
                        .position(|n| n.as_str().is_some_and(|n| stem == format!("s_0_{n}.ts")))
                });
            prop_assert!(i.is_some(), "{stem}");
            let expected: Vec<u8> = recs
                .iter()
                .filter(|r| r.kind == Kind::Chunk && Some(usize::from(r.rendition)) == i)
                .flat_map(|r| r.payload.iter().copied())
                .collect();
            prop_assert_eq!(std::fs::read(path).map_err(|e| TestCaseError::fail(e.to_string()))?, expected);
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn any_record_stream_writes_only_safe_files_inside_the_output_dir(
            recs in records(),
            server_ok in any::<bool>(),
        ) {
            let dir = Scratch::new();
            check(&dir, &recs, server_ok)?;
        }

        #[test]
        fn any_bytes_through_the_record_reader_never_panic(
            data in prop::collection::vec(any::<u8>(), 0..300),
            names in prop::collection::vec(name(), 0..4),
        ) {
            let dir = Scratch::new();
            let mut stream = record(Kind::Start, SEGMENT, serde_json::json!({ "renditions": names }).to_string().as_bytes()).to_vec();
            stream.extend_from_slice(&data);
            let mut reader = RecordReader::new();
            reader.push(&stream);
            let mut recs = Vec::new();
            while let Some(Ok(r)) = reader.poll() {
                recs.push(r);
            }
            check(&dir, &recs, true)?;
        }
    }
}
