//! Push-based MPEG-TS demuxer: bytes in, programs and whole PES packets out.
//!
//! * Input may be pushed in pieces of any size; complete packets are parsed in place from the
//!   caller's slice and only a partial packet at the end of a push is kept (at most 187 bytes).
//! * PSI sections (PAT, PMT) may span packets; their CRC is checked and bad sections are skipped.
//! * A PES packet ends when its declared length is reached, when the next one starts on the same
//!   PID, or at [`Demuxer::finish`] — so the last access unit of a stream is never held back.
//! * Lost sync, continuity-counter gaps, transport errors and oversize PES packets are counted in
//!   [`DemuxStats`] and flagged on the affected [`Pes`]; they never stop the demuxer.
//! * Packets that arrive before the PAT/PMT are dropped until the program is known.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use super::crc::crc32_mpeg2;
use super::packet::{PACKET_SIZE, Packet, SYNC_BYTE};
use super::stream_type;

/// Upper bound on one PES packet (a 4K intra picture fits with room to spare); larger ones are
/// dropped and counted so a hostile stream cannot grow memory without bound.
pub const MAX_PES_SIZE: usize = 16 << 20;
const MAX_SECTION_SIZE: usize = 4096 + 3;

/// Errors of the container layer that make the input unusable as a whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DemuxError {
    #[error("not an MPEG transport stream: no 0x47 sync byte at a 188-byte stride in {bytes} bytes")]
    NotTransportStream { bytes: u64 },
    #[error("no PAT/PMT found in {packets} transport packets: the program's streams are unknown")]
    NoProgram { packets: u64 },
}

/// One elementary stream of a program, as its PMT entry describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElementaryStream {
    pub pid: u16,
    pub stream_type: u8,
    /// The ES_info descriptors, verbatim (language, registration, ...), for the muxer to copy.
    pub descriptors: Bytes,
}

impl ElementaryStream {
    pub fn is_video(&self) -> bool {
        stream_type::is_video(self.stream_type)
    }
}

/// The program the demuxer follows (the first one of the PAT).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgramInfo {
    pub program_number: u16,
    pub pmt_pid: u16,
    pub pcr_pid: u16,
    pub version: u8,
    pub streams: Vec<ElementaryStream>,
}

impl ProgramInfo {
    /// The first video stream of the program, whatever its codec.
    pub fn video(&self) -> Option<&ElementaryStream> {
        self.streams.iter().find(|s| s.is_video())
    }

    /// Every stream that is not video (audio, subtitles, data), in PMT order.
    pub fn others(&self) -> impl Iterator<Item = &ElementaryStream> {
        self.streams.iter().filter(|s| !s.is_video())
    }
}

/// A complete PES packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pes {
    pub pid: u16,
    pub stream_id: u8,
    /// 33-bit presentation time stamp, 90 kHz.
    pub pts: Option<u64>,
    /// 33-bit decoding time stamp; `None` when equal to the PTS.
    pub dts: Option<u64>,
    /// The first packet carried random_access_indicator.
    pub random_access: bool,
    /// Data may be missing: a continuity gap, a transport error or a signalled discontinuity
    /// happened while this PES was assembled.
    pub damaged: bool,
    /// The PES payload (elementary stream bytes), without the PES header.
    pub payload: Bytes,
}

/// What the demuxer hands out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DemuxEvent {
    /// The program was found, or its PMT changed version.
    Program(Arc<ProgramInfo>),
    Pes(Pes),
}

/// Counters of everything the demuxer saw and tolerated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DemuxStats {
    pub bytes: u64,
    pub packets: u64,
    /// Bytes skipped while looking for the sync byte.
    pub skipped_bytes: u64,
    pub sync_losses: u64,
    pub continuity_errors: u64,
    pub transport_errors: u64,
    pub scrambled_packets: u64,
    pub bad_sections: u64,
    pub bad_pes_headers: u64,
    pub oversize_pes: u64,
    pub pcrs: u64,
    pub pes_packets: u64,
    /// Packets dropped because the PAT/PMT had not been seen yet.
    pub packets_before_program: u64,
}

/// What the demuxer saw of one PID's PES packets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PesTally {
    pub pes_packets: u64,
    /// PTS of the first PES that carried one.
    pub first_pts: Option<u64>,
}

#[derive(Debug, Default)]
struct SectionBuf {
    data: Vec<u8>,
}

#[derive(Debug, Default)]
struct PesBuf {
    data: BytesMut,
    random_access: bool,
    damaged: bool,
    active: bool,
}

#[derive(Debug, Default)]
struct PidState {
    last_cc: Option<u8>,
}

/// The push-based demuxer. See the module documentation.
#[derive(Debug, Default)]
pub struct Demuxer {
    partial: Vec<u8>,
    pmt_pid: Option<u16>,
    program_number: u16,
    program: Option<Arc<ProgramInfo>>,
    sections: HashMap<u16, SectionBuf>,
    pes: HashMap<u16, PesBuf>,
    pids: HashMap<u16, PidState>,
    events: VecDeque<DemuxEvent>,
    stats: DemuxStats,
    tallies: HashMap<u16, PesTally>,
    synced: bool,
}

impl Demuxer {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn stats(&self) -> &DemuxStats {
        &self.stats
    }

    pub fn program(&self) -> Option<&Arc<ProgramInfo>> {
        self.program.as_ref()
    }

    /// The PES packets seen on `pid` so far.
    pub fn tally(&self, pid: u16) -> PesTally {
        self.tallies.get(&pid).copied().unwrap_or_default()
    }

    /// Feeds bytes; parsed events are queued for [`Demuxer::poll`].
    pub fn push(&mut self, mut data: &[u8]) {
        self.stats.bytes += data.len() as u64;
        // Complete a packet left over from the previous push.
        if !self.partial.is_empty() {
            let need = PACKET_SIZE - self.partial.len();
            let take = need.min(data.len());
            self.partial.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.partial.len() < PACKET_SIZE {
                return;
            }
            // `partial` is only ever started at a sync byte (see below).
            let mut pkt = [0u8; PACKET_SIZE];
            pkt.copy_from_slice(&self.partial);
            self.partial.clear();
            self.packet(&pkt);
        }
        while !data.is_empty() {
            if data[0] != SYNC_BYTE {
                let skip = self.find_sync(data);
                self.stats.skipped_bytes += skip as u64;
                if self.synced {
                    self.stats.sync_losses += 1;
                    self.synced = false;
                }
                data = &data[skip..];
                continue;
            }
            if data.len() < PACKET_SIZE {
                self.partial.extend_from_slice(data);
                return;
            }
            let (head, rest) = data.split_at(PACKET_SIZE);
            let pkt: &[u8; PACKET_SIZE] = head.try_into().expect("split_at gives PACKET_SIZE bytes");
            self.synced = true;
            self.packet(pkt);
            data = rest;
        }
    }

    /// Offset of the next plausible sync byte: a 0x47 followed by another 188 bytes later when
    /// the data reaches that far.
    fn find_sync(&self, data: &[u8]) -> usize {
        (1..data.len())
            .find(|&i| data[i] == SYNC_BYTE && data.get(i + PACKET_SIZE).is_none_or(|&b| b == SYNC_BYTE))
            .unwrap_or(data.len())
    }

    /// Ends the input: completes every PES in progress. Call [`Demuxer::poll`] afterwards.
    pub fn finish(&mut self) -> Result<(), DemuxError> {
        if !self.partial.is_empty() {
            self.stats.skipped_bytes += self.partial.len() as u64;
            self.partial.clear();
        }
        let mut pids: Vec<u16> = self.pes.keys().copied().collect();
        pids.sort_unstable();
        for pid in pids {
            self.complete_pes(pid);
        }
        if self.stats.packets == 0 {
            return Err(DemuxError::NotTransportStream { bytes: self.stats.bytes });
        }
        if self.program.is_none() {
            return Err(DemuxError::NoProgram { packets: self.stats.packets });
        }
        Ok(())
    }

    /// Next parsed event, if any.
    pub fn poll(&mut self) -> Option<DemuxEvent> {
        self.events.pop_front()
    }

    fn packet(&mut self, buf: &[u8; PACKET_SIZE]) {
        let pkt = match Packet::new(buf) {
            Ok(p) => p,
            Err(_) => {
                self.stats.transport_errors += 1;
                return;
            }
        };
        self.stats.packets += 1;
        let pid = pkt.pid();
        if pid == 0x1FFF {
            return; // null packet
        }
        if pkt.transport_error() {
            self.stats.transport_errors += 1;
            if let Some(p) = self.pes.get_mut(&pid) {
                p.damaged = true;
            }
            return;
        }
        if pkt.pcr().is_some() {
            self.stats.pcrs += 1;
        }
        // Continuity: 2.4.3.3, the counter increments with each packet carrying a payload; one
        // duplicate packet may be sent ("the continuity_counter ... shall not be incremented").
        let cc = pkt.continuity_counter();
        let state = self.pids.entry(pid).or_default();
        let mut gap = false;
        if pkt.has_payload() {
            if let Some(last) = state.last_cc {
                if cc == last && !pkt.discontinuity() {
                    return; // duplicate packet
                }
                if cc != (last + 1) & 0x0F && !pkt.discontinuity() {
                    gap = true;
                }
            }
            state.last_cc = Some(cc);
        }
        if gap {
            self.stats.continuity_errors += 1;
        }
        if pkt.scrambled() {
            self.stats.scrambled_packets += 1;
            return;
        }
        if pid == 0 || Some(pid) == self.pmt_pid {
            self.psi_packet(pid, &pkt);
            return;
        }
        let Some(program) = &self.program else {
            if pkt.has_payload() {
                self.stats.packets_before_program += 1;
            }
            return;
        };
        if !program.streams.iter().any(|s| s.pid == pid) {
            return;
        }
        self.pes_packet(pid, &pkt, gap || pkt.discontinuity());
    }

    fn pes_packet(&mut self, pid: u16, pkt: &Packet<'_>, damaged: bool) {
        let payload = pkt.payload();
        if pkt.payload_unit_start() {
            self.complete_pes(pid);
            let buf = self.pes.entry(pid).or_default();
            buf.active = true;
            buf.random_access = pkt.random_access();
            buf.damaged = false;
            buf.data.clear();
        }
        let buf = self.pes.entry(pid).or_default();
        if !buf.active {
            return; // joined mid-PES: wait for the next start
        }
        buf.damaged |= damaged;
        if buf.data.len() + payload.len() > MAX_PES_SIZE {
            self.stats.oversize_pes += 1;
            buf.active = false;
            buf.data.clear();
            return;
        }
        buf.data.extend_from_slice(payload);
        // A PES with a declared length is complete as soon as that length is reached.
        if buf.data.len() >= 6 {
            let declared = usize::from(u16::from_be_bytes([buf.data[4], buf.data[5]]));
            if declared != 0 && buf.data.len() >= declared + 6 {
                self.complete_pes(pid);
            }
        }
    }

    fn complete_pes(&mut self, pid: u16) {
        let Some(buf) = self.pes.get_mut(&pid) else { return };
        if !buf.active {
            return;
        }
        buf.active = false;
        let data = buf.data.split().freeze();
        let (random_access, damaged) = (buf.random_access, buf.damaged);
        match parse_pes(pid, data, random_access, damaged) {
            Some(pes) => {
                self.stats.pes_packets += 1;
                let t = self.tallies.entry(pid).or_default();
                t.pes_packets += 1;
                t.first_pts = t.first_pts.or(pes.pts);
                self.events.push_back(DemuxEvent::Pes(pes));
            }
            None => self.stats.bad_pes_headers += 1,
        }
    }

    fn psi_packet(&mut self, pid: u16, pkt: &Packet<'_>) {
        let mut payload = pkt.payload();
        if payload.is_empty() {
            return;
        }
        let buf = self.sections.entry(pid).or_default();
        if pkt.payload_unit_start() {
            let pointer = usize::from(payload[0]);
            if 1 + pointer > payload.len() {
                self.stats.bad_sections += 1;
                buf.data.clear();
                return;
            }
            // The bytes before the pointer finish a section begun in earlier packets.
            if !buf.data.is_empty() {
                buf.data.extend_from_slice(&payload[1..1 + pointer]);
                let data = std::mem::take(&mut buf.data);
                self.sections_in(pid, &data);
            }
            payload = &payload[1 + pointer..];
            let buf = self.sections.entry(pid).or_default();
            buf.data.clear();
            buf.data.extend_from_slice(payload);
        } else {
            if buf.data.is_empty() {
                return;
            }
            buf.data.extend_from_slice(payload);
        }
        let buf = self.sections.entry(pid).or_default();
        if buf.data.len() > MAX_SECTION_SIZE * 4 {
            buf.data.clear();
            self.stats.bad_sections += 1;
            return;
        }
        // Parse as soon as the first section in the buffer is complete.
        if buf.data.len() >= 3 {
            let len = 3 + (usize::from(buf.data[1] & 0x0F) << 8 | usize::from(buf.data[2]));
            if buf.data.len() >= len {
                let data = std::mem::take(&mut buf.data);
                self.sections_in(pid, &data);
            }
        }
    }

    /// Parses every complete section in `data` (stuffing 0xFF ends the list).
    fn sections_in(&mut self, pid: u16, mut data: &[u8]) {
        while data.len() >= 3 && data[0] != 0xFF {
            let len = 3 + (usize::from(data[1] & 0x0F) << 8 | usize::from(data[2]));
            if len > data.len() || len > MAX_SECTION_SIZE {
                return;
            }
            let section = &data[..len];
            if len < 12 || crc32_mpeg2(section) != 0 {
                self.stats.bad_sections += 1;
            } else if pid == 0 && section[0] == 0x00 {
                self.pat(section);
            } else if Some(pid) == self.pmt_pid && section[0] == 0x02 {
                self.pmt(pid, section);
            }
            data = &data[len..];
        }
    }

    fn pat(&mut self, section: &[u8]) {
        // 2.4.4.3: after the 8-byte header, 4-byte entries of program_number and PID, then CRC.
        let entries = &section[8..section.len() - 4];
        for e in entries.chunks_exact(4) {
            let program_number = u16::from_be_bytes([e[0], e[1]]);
            let pid = (u16::from(e[2] & 0x1F) << 8) | u16::from(e[3]);
            if program_number != 0 {
                if self.pmt_pid != Some(pid) {
                    self.pmt_pid = Some(pid);
                    self.program_number = program_number;
                    self.sections.remove(&pid);
                }
                return;
            }
        }
    }

    fn pmt(&mut self, pmt_pid: u16, section: &[u8]) {
        // 2.4.4.8
        let program_number = u16::from_be_bytes([section[3], section[4]]);
        if program_number != self.program_number {
            return;
        }
        let version = (section[5] >> 1) & 0x1F;
        if self.program.as_ref().is_some_and(|p| p.version == version) {
            return;
        }
        let pcr_pid = (u16::from(section[8] & 0x1F) << 8) | u16::from(section[9]);
        let info_len = usize::from(section[10] & 0x0F) << 8 | usize::from(section[11]);
        let end = section.len() - 4;
        let mut pos = 12 + info_len;
        let mut streams = Vec::new();
        while pos + 5 <= end {
            let st = section[pos];
            let pid = (u16::from(section[pos + 1] & 0x1F) << 8) | u16::from(section[pos + 2]);
            let es_len = usize::from(section[pos + 3] & 0x0F) << 8 | usize::from(section[pos + 4]);
            let desc_end = (pos + 5 + es_len).min(end);
            streams.push(ElementaryStream {
                pid,
                stream_type: st,
                descriptors: Bytes::copy_from_slice(&section[pos + 5..desc_end]),
            });
            pos = pos + 5 + es_len;
        }
        let info = Arc::new(ProgramInfo { program_number, pmt_pid, pcr_pid, version, streams });
        self.program = Some(info.clone());
        self.events.push_back(DemuxEvent::Program(info));
    }
}

/// Reads a 33-bit timestamp from its 5-byte PES encoding (2.4.3.7), checking the marker bits.
fn read_timestamp(b: &[u8]) -> Option<u64> {
    if b.len() < 5 || b[0] & 1 != 1 || b[2] & 1 != 1 || b[4] & 1 != 1 {
        return None;
    }
    Some(
        (u64::from(b[0] >> 1) & 0x07) << 30
            | u64::from(b[1]) << 22
            | u64::from(b[2] >> 1) << 15
            | u64::from(b[3]) << 7
            | u64::from(b[4] >> 1),
    )
}

/// Splits a PES packet into its header fields and payload; `None` when the header is invalid.
fn parse_pes(pid: u16, data: Bytes, random_access: bool, damaged: bool) -> Option<Pes> {
    if data.len() < 6 || data[..3] != [0, 0, 1] {
        return None;
    }
    let stream_id = data[3];
    let declared = usize::from(u16::from_be_bytes([data[4], data[5]]));
    let end = if declared == 0 { data.len() } else { (6 + declared).min(data.len()) };
    let damaged = damaged || (declared != 0 && data.len() < 6 + declared);
    // Stream ids without the optional header (2.4.3.7, table 2-22).
    let no_header = matches!(stream_id, 0xBC | 0xBE | 0xBF | 0xF0 | 0xF1 | 0xF2 | 0xF8 | 0xFF);
    if no_header {
        return Some(Pes { pid, stream_id, pts: None, dts: None, random_access, damaged, payload: data.slice(6..end) });
    }
    if data.len() < 9 || data[6] & 0xC0 != 0x80 {
        return None;
    }
    let flags = data[7] >> 6;
    let header_len = usize::from(data[8]);
    let payload_start = 9 + header_len;
    if payload_start > end {
        return None;
    }
    let opt = &data[9..payload_start];
    let (pts, dts) = match flags {
        0b10 => (Some(read_timestamp(opt)?), None),
        0b11 => {
            let pts = read_timestamp(opt)?;
            let dts = read_timestamp(opt.get(5..)?)?;
            (Some(pts), if dts == pts { None } else { Some(dts) })
        }
        _ => (None, None),
    };
    Some(Pes { pid, stream_id, pts, dts, random_access, damaged, payload: data.slice(payload_start..end) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ts::{AudioTrack, Muxer, MuxerConfig};

    fn stream() -> Vec<u8> {
        let mut m = Muxer::new(MuxerConfig { tracks: vec![AudioTrack { stream_type: 0x0F, descriptors: vec![] }] });
        let mut out = Vec::new();
        for i in 0..10u64 {
            m.write_video(
                &[0, 0, 0, 1, 0x65, i as u8, 1, 2, 3],
                1000 + i * 3000,
                1000 + i * 3000,
                i % 5 == 0,
                &mut out,
            );
            m.write_track(0, 0xC0, Some(1000 + i * 3000), None, &[0xFF, 0xF1, i as u8], &mut out);
        }
        out
    }

    fn events(data: &[u8]) -> (Demuxer, Vec<DemuxEvent>) {
        let mut d = Demuxer::new();
        d.push(data);
        let _ = d.finish();
        let mut v = Vec::new();
        while let Some(e) = d.poll() {
            v.push(e);
        }
        (d, v)
    }

    #[test]
    fn waits_for_a_pat_that_is_missing_at_the_start() {
        let full = stream();
        // Cut the first PAT and PMT (the first two packets): everything before the next
        // keyframe's PAT/PMT is dropped, everything after it comes out.
        let (d, ev) = events(&full[2 * PACKET_SIZE..]);
        assert!(matches!(ev[0], DemuxEvent::Program(_)));
        let video: Vec<u64> = ev
            .iter()
            .filter_map(|e| match e {
                DemuxEvent::Pes(p) if p.pid == 0x100 => p.pts,
                _ => None,
            })
            .collect();
        assert_eq!(video, (5..10).map(|i| 1000 + i * 3000).collect::<Vec<u64>>());
        assert!(d.stats().packets_before_program > 0);
    }

    #[test]
    fn resyncs_after_garbage_and_counts_continuity_gaps() {
        let full = stream();
        let mut data = vec![0x12, 0x47, 0x00];
        data.extend_from_slice(&full[..PACKET_SIZE * 6]);
        // Drop one packet in the middle: a continuity gap on its PID.
        data.extend_from_slice(&full[PACKET_SIZE * 7..]);
        let (d, ev) = events(&data);
        assert_eq!(d.stats().skipped_bytes, 3);
        assert_eq!(d.stats().continuity_errors, 1);
        assert!(ev.iter().any(|e| matches!(e, DemuxEvent::Pes(p) if p.damaged)));
    }

    #[test]
    fn bad_section_crc_is_skipped() {
        let mut full = stream();
        full[10] ^= 0xFF; // inside the first PAT section
        let (d, ev) = events(&full);
        assert!(d.stats().bad_sections >= 1);
        // The PAT before the next keyframe still brings the program.
        assert!(ev.iter().any(|e| matches!(e, DemuxEvent::Program(_))));
    }
}
