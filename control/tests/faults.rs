//! Faults in split mode, on loopback with TLS: transcoders that stall or send a broken result
//! stream, and an orchestrator that is killed and restarted under its transcoders.
//!
//! What the broadcaster sees must be either the complete, correct renditions or a clear in-band
//! error: never output cut short and passed off as complete, never duplicated bytes.
//!
//! The misbehaving transcoders here are real HTTP/2 clients that speak zerohop's link protocol
//! wrongly on purpose (what a buggy or hostile third-party transcoder would send), not mocks.

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{
    LADDER, Renditions, error_code, fixture, local, push_collect, spawn_transcoder, tls_identity, transcoder_config,
    transport, wait_for_transcoders,
};
use http::Method;
use http_body::Frame;
use http_body_util::BodyExt;
use tokio::sync::mpsc;
use zerohop_control::body::ChannelBody;
use zerohop_control::framing::{self, Kind, SEGMENT};
use zerohop_control::headers;
use zerohop_control::link::{self, LineReader, Report, ToTranscoder};
use zerohop_control::node::TranscoderSecrets;
use zerohop_control::transcoder;
use zerohop_control::{Client, ClientError, Node, NodeConfig, PushOutcome, Upload};
use zerohop_engine::probe::decode_video;

const SECRET: &str = "fault-tolerance-is-a-feature";
/// Short, so a stalled task is failed over quickly; still far above what the small fixture
/// takes through a transcoder (0.1 to 0.25 s here, measured under a parallel `cargo test`).
const DEADLINE: Duration = Duration::from_secs(3);
/// The deadline where a test shows that a failure is acted on at once, not at the deadline:
/// far beyond anything the test waits for.
const NO_DEADLINE: Duration = Duration::from_secs(60);
const SEGMENT_FILE: &str = "h264_360p25_baseline_noaudio.ts";

fn config(tls: Arc<rustls::ServerConfig>, listen: std::net::SocketAddr) -> NodeConfig {
    config_with(tls, listen, DEADLINE)
}

fn config_with(tls: Arc<rustls::ServerConfig>, listen: std::net::SocketAddr, deadline: Duration) -> NodeConfig {
    let mut cfg = NodeConfig::new(listen, Some(tls));
    cfg.max_sessions = 0; // every segment goes to a remote transcoder
    cfg.task_deadline = deadline;
    cfg.transcoders = TranscoderSecrets::parse_secrets(&format!("good {SECRET}\nrogue {SECRET}\n")).expect("secrets");
    cfg
}

async fn orchestrator(deadline: Duration) -> (Node, String) {
    let (tls, fp) = tls_identity();
    (Node::start(config_with(tls, "127.0.0.1:0".parse().expect("addr"), deadline)).await.expect("node"), fp)
}

/// A well-behaved transcoder on its own runtime (killable like a process).
fn good_transcoder(addr: &str, fp: &str) -> tokio::runtime::Runtime {
    spawn_transcoder(transcoder_config(addr, fp, "good", SECRET)).0
}

#[derive(Debug, Clone, Copy)]
enum Misbehaviour {
    /// Takes the task and never asks for its input (connection open, no bytes).
    StallBeforeInput,
    /// Reads the input, sends a start record and one chunk, then goes silent.
    StallAfterChunk,
    /// Answers with bytes that are not result records.
    Garbage,
    /// One well-formed chunk, then bytes that are not records.
    ChunkThenGarbage,
}

/// The one chunk a misbehaving transcoder sends: a TS null packet (what the broadcaster must
/// see exactly once, followed by an error).
fn rogue_chunk() -> Bytes {
    let mut p = vec![0xffu8; 188];
    p[..4].copy_from_slice(&[0x47, 0x1f, 0xff, 0x10]);
    Bytes::from(p)
}

/// Registers a misbehaving transcoder with a large capacity (so placement prefers it) and
/// returns the task ids it is given.
async fn rogue(node: &Node, fp: &str, how: Misbehaviour) -> mpsc::UnboundedReceiver<u64> {
    let client = Arc::new(Client::connect(&node.local_addr().to_string(), &transport(fp), None).await.expect("dial"));
    let (reports, body) = ChannelBody::channel(4);
    reports.send(Ok(Frame::data(Report { capacity: 8, load: 0 }.encode("cpu")))).await.expect("report");
    let req = client
        .request(Method::POST, "/v1/transcoders/link")
        .header(headers::TRANSCODER_ID, "rogue")
        .header(http::header::AUTHORIZATION, format!("Bearer {SECRET}"))
        .header(headers::CAPACITY, 8)
        .header(headers::CAPABILITIES, link::encode_capabilities("cpu", &[], transcoder::CPU_MAX_OUTPUT))
        .body(body)
        .expect("request");
    let resp = client.send(req).await.expect("link");
    assert_eq!(resp.status(), http::StatusCode::OK);
    let (seen, tasks) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let _link_open = reports;
        let mut body = resp.into_body();
        let mut lines = LineReader::default();
        while let Some(Ok(frame)) = body.frame().await {
            let Ok(data) = frame.into_data() else { continue };
            lines.push(&data);
            while let Some(Ok(line)) = lines.poll() {
                if let Some(ToTranscoder::Task { task, .. }) = ToTranscoder::parse(&line) {
                    let _ = seen.send(task);
                    tokio::spawn(misbehave(client.clone(), task, how));
                }
            }
        }
    });
    tasks
}

async fn misbehave(client: Arc<Client>, task: u64, how: Misbehaviour) {
    let auth = format!("Bearer {SECRET}");
    if matches!(how, Misbehaviour::StallBeforeInput) {
        return std::future::pending().await;
    }
    // Read the whole input, as a transcoder would.
    let req = client
        .request(Method::GET, &format!("/v1/tasks/{task}/input"))
        .header(headers::TRANSCODER_ID, "rogue")
        .header(http::header::AUTHORIZATION, &auth)
        .body(ChannelBody::empty())
        .expect("request");
    let input = client.send(req).await.expect("input");
    let _ = input.into_body().collect().await;
    let (tx, body) = ChannelBody::channel(8);
    let start = framing::record(Kind::Start, SEGMENT, format!("{{\"task\":{task}}}").as_bytes());
    let garbage = Bytes::from_static(b"this is not a zerohop result record\n");
    let frames: Vec<Bytes> = match how {
        Misbehaviour::StallBeforeInput => unreachable!(),
        Misbehaviour::StallAfterChunk => vec![start, framing::record(Kind::Chunk, 0, &rogue_chunk())],
        Misbehaviour::Garbage => vec![garbage],
        Misbehaviour::ChunkThenGarbage => vec![start, framing::record(Kind::Chunk, 0, &rogue_chunk()), garbage],
    };
    for f in frames {
        tx.send(Ok(Frame::data(f))).await.expect("results body");
    }
    if matches!(how, Misbehaviour::StallAfterChunk) {
        // Hold the result stream open and send nothing more.
        tokio::spawn(async move {
            let _open = tx;
            std::future::pending::<()>().await
        });
    } else {
        drop(tx);
    }
    let req = client
        .request(Method::POST, &format!("/v1/tasks/{task}/results"))
        .header(headers::TRANSCODER_ID, "rogue")
        .header(http::header::AUTHORIZATION, &auth)
        .body(body)
        .expect("request");
    let _ = client.send(req).await;
}

async fn push(c: &mut Client, seq: u64, data: Bytes) -> Result<(PushOutcome, Renditions), ClientError> {
    // A stream per segment: each starts a fresh session, so its bytes equal a fresh local run.
    push_collect(c, &format!("s{seq}"), seq, Upload::Full(data), || {}).await
}

/// The test segment with what a complete answer to it is: the engine's own output, and the
/// source's picture count.
struct Reference {
    input: Bytes,
    expected: Vec<Vec<u8>>,
    frames: usize,
}

impl Reference {
    fn segment() -> Reference {
        let input = fixture(SEGMENT_FILE);
        Reference { expected: local(input.clone()), frames: decode_video(&input).expect("source").len(), input }
    }

    /// The renditions are complete and byte-identical to the engine's own output.
    fn assert_complete(&self, outs: &Renditions) {
        assert_eq!(outs.len(), self.expected.len(), "every rendition arrived");
        for (i, bytes) in outs {
            assert!(bytes == &self.expected[usize::from(*i)], "rendition {i} differs from the local engine's output");
            assert_eq!(decode_video(bytes).expect("decode").len(), self.frames);
        }
    }

    /// The node serves the segment as `seq` now: ok, complete, byte-identical. `what` names the
    /// case in a failure.
    async fn assert_served(&self, c: &mut Client, seq: u64, what: &str) {
        let (o, outs) = push(c, seq, self.input.clone()).await.expect("push");
        assert!(o.ok(), "{what}: {o:?}");
        self.assert_complete(&outs);
    }
}

/// An orchestrator with a good transcoder and a rogue one (preferred by placement), both
/// registered, and a broadcaster's client.
struct Pair {
    node: Node,
    c: Client,
    good: tokio::runtime::Runtime,
    /// The task ids the rogue is given.
    rogue_tasks: mpsc::UnboundedReceiver<u64>,
}

async fn good_and_rogue(how: Misbehaviour, deadline: Duration) -> Pair {
    let (node, fp) = orchestrator(deadline).await;
    let addr = node.local_addr().to_string();
    let mut c = Client::connect(&addr, &transport(&fp), None).await.expect("connect");
    let good = good_transcoder(&addr, &fp);
    wait_for_transcoders(&mut c, 1).await;
    let rogue_tasks = rogue(&node, &fp, how).await;
    wait_for_transcoders(&mut c, 2).await;
    Pair { node, c, good, rogue_tasks }
}

/// A transcoder that takes a task and stalls before sending a byte is failed over at the
/// deadline; the segment completes on a healthy transcoder, complete and identical.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_or_garbage_sending_transcoder_is_failed_over_before_any_byte_is_sent() {
    let r = Reference::segment();
    // A stall ends at the deadline; a broken stream is retried at once, which a deadline far
    // beyond the whole test shows.
    for (how, deadline) in [(Misbehaviour::StallBeforeInput, DEADLINE), (Misbehaviour::Garbage, NO_DEADLINE)] {
        let Pair { node, mut c, good, mut rogue_tasks } = good_and_rogue(how, deadline).await;

        let (o, outs) = push(&mut c, 0, r.input.clone()).await.expect("push");
        assert!(rogue_tasks.try_recv().is_ok(), "{how:?}: placement chose the rogue (larger capacity) first");
        assert!(o.ok(), "{how:?}: {o:?}");
        r.assert_complete(&outs);
        if matches!(how, Misbehaviour::StallBeforeInput) {
            assert!(o.ttlb >= DEADLINE, "{how:?}: the retry waited for the deadline ({:?})", o.ttlb);
        } else {
            assert!(o.ttlb < deadline, "{how:?}: a broken stream is retried at once, not at the deadline");
        }
        // The node goes on serving; new work goes to the healthy transcoder while the rogue
        // is on probation.
        r.assert_served(&mut c, 1, &format!("{how:?}")).await;
        good.shutdown_background();
        node.shutdown().await;
    }
}

/// A transcoder that fails after a result byte went out cannot be retried: the broadcaster gets
/// exactly the bytes that were sent, once, then an in-band `transcoder_lost` error — never a
/// stream that ends as if complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transcoder_failing_after_its_first_chunk_ends_the_segment_with_an_error() {
    let r = Reference::segment();
    for how in [Misbehaviour::ChunkThenGarbage, Misbehaviour::StallAfterChunk] {
        let Pair { node, mut c, good, mut rogue_tasks } = good_and_rogue(how, DEADLINE).await;

        let (o, outs) = push(&mut c, 0, r.input.clone()).await.expect("an in-band error, not a broken response");
        assert!(rogue_tasks.try_recv().is_ok(), "{how:?}: the rogue had the task");
        assert!(!o.ok(), "{how:?}: must not look complete: {o:?}");
        assert_eq!(error_code(&o), Some("transcoder_lost"), "{how:?}: {o:?}");
        assert_eq!(outs.len(), 1, "{how:?}: only the rogue's one chunk was relayed");
        assert!(outs[&0] == rogue_chunk().to_vec(), "{how:?}: the chunk arrived exactly once");
        if matches!(how, Misbehaviour::StallAfterChunk) {
            assert!(o.ttlb >= DEADLINE, "{how:?}: ended by the deadline ({:?})", o.ttlb);
        }
        // The next segment of the stream goes elsewhere and completes.
        r.assert_served(&mut c, 1, &format!("{how:?}")).await;
        good.shutdown_background();
        node.shutdown().await;
    }
}

/// The orchestrator is killed like a process and restarted on the same address with the same
/// certificate: the transcoder, never restarted, reconnects with backoff and takes work again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transcoders_reconnect_to_a_restarted_orchestrator_and_resume() {
    let (tls, fp) = tls_identity();
    let orch_rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("rt");
    let first = orch_rt
        .spawn(Node::start(config(tls.clone(), "127.0.0.1:0".parse().expect("addr"))))
        .await
        .expect("join")
        .expect("node");
    let listen = first.local_addr();
    let addr = listen.to_string();
    let good = good_transcoder(&addr, &fp);
    let r = Reference::segment();
    {
        let mut c = Client::connect(&addr, &transport(&fp), None).await.expect("connect");
        wait_for_transcoders(&mut c, 1).await;
        r.assert_served(&mut c, 0, "before the restart").await;
    }
    // Kill the orchestrator: its runtime, listener and every connection go at once.
    drop(first);
    orch_rt.shutdown_background();

    let restarted = tokio::time::Instant::now();
    // The killed runtime's threads drop its listener asynchronously: retry the bind briefly.
    let mut node = None;
    for _ in 0..100 {
        match Node::start(config(tls.clone(), listen)).await {
            Ok(n) => {
                node = Some(n);
                break;
            }
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => tokio::time::sleep(Duration::from_millis(20)).await,
            Err(e) => panic!("restart: {e}"),
        }
    }
    let node = node.expect("restart on the same address within 2 s");
    let mut c = Client::connect(&addr, &transport(&fp), None).await.expect("connect");
    wait_for_transcoders(&mut c, 1).await;
    eprintln!("transcoder back {:?} after the orchestrator restarted", restarted.elapsed());
    r.assert_served(&mut c, 1, "after the restart").await;
    good.shutdown_background();
    node.shutdown().await;
}

/// A broadcaster that hangs up mid-response in split mode: the remote task is cancelled, the
/// transcoder's capacity comes back, and the next segment is served normally.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcaster_hanging_up_mid_segment_gives_the_transcoder_back() {
    // A deadline beyond the wait below: the capacity that comes back was not freed by it.
    let (node, fp) = orchestrator(NO_DEADLINE).await;
    let addr = node.local_addr().to_string();
    let mut c = Client::connect(&addr, &transport(&fp), None).await.expect("connect");
    let good = good_transcoder(&addr, &fp);
    wait_for_transcoders(&mut c, 1).await;
    async fn load(c: &mut Client) -> Option<u64> {
        common::transcoder_list(c).await.first()?["load"].as_u64()
    }
    // A slow upload, abandoned once the first rendition chunk has arrived.
    let input = fixture("h264_720p30_main_slices_aac.ts");
    let (first_chunk_tx, first_chunk) = tokio::sync::oneshot::channel::<()>();
    let mut gone = Client::connect(&addr, &transport(&fp), None).await.expect("connect");
    let hangup = tokio::spawn(async move {
        let mut tx = Some(first_chunk_tx);
        let paced = Upload::Paced { data: input, piece: 4096, interval: Duration::from_millis(20) };
        let push = gone.push("quitter", 0, Some(LADDER), paced, |r| {
            if r.kind == Kind::Chunk
                && let Some(tx) = tx.take()
            {
                let _ = tx.send(());
            }
        });
        tokio::select! {
            _ = push => panic!("the push finished before the broadcaster hung up"),
            _ = tokio::time::sleep(Duration::from_secs(30)) => panic!("no chunk within 30 s"),
            _ = async { first_chunk.await.ok() } => {}
        }
        drop(gone); // hang up: the connection closes
    });
    // While it runs, the transcoder is busy.
    common::wait_until("the transcoder takes the segment", common::EVENT, async || load(&mut c).await == Some(1)).await;
    hangup.await.expect("hang up");
    // Its capacity comes back without waiting for the task deadline.
    const { assert!(common::EVENT.as_secs() < NO_DEADLINE.as_secs()) };
    common::wait_until("the abandoned segment's transcoder is freed", common::EVENT, async || {
        load(&mut c).await == Some(0)
    })
    .await;
    Reference::segment().assert_served(&mut c, 7, "after the hang-up").await;
    good.shutdown_background();
    node.shutdown().await;
}
