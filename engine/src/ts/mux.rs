//! MPEG-TS muxer for one rendition: one H.264 stream plus any number of copied streams.
//!
//! Sans-IO: every call appends whole 188-byte packets to the caller's `Vec<u8>`.
//! * PAT and PMT are written at the start and before every keyframe, so every GOP (and so every
//!   HLS segment) is decodable on its own.
//! * The video PID carries the PCR, in the first packet of every video PES; the PCR runs
//!   [`PCR_DELAY`] ahead of the DTS, like ffmpeg's `muxdelay`, so a T-STD decoder has the data
//!   in time, and is derived from the DTS so consecutive segments share one clock.
//! * Each H.264 access unit starts with an access unit delimiter, as 2.14.1 requires.
//! * Copied streams keep their stream_id, PTS/DTS, payload bytes and PMT descriptors.

use super::crc::crc32_mpeg2;
use super::packet::{PACKET_SIZE, SYNC_BYTE};
use super::{TIMESTAMP_WRAP, stream_type};

pub const PAT_PID: u16 = 0;
pub const PMT_PID: u16 = 0x1000;
pub const VIDEO_PID: u16 = 0x100;
pub const FIRST_AUDIO_PID: u16 = 0x101;
pub const PROGRAM_NUMBER: u16 = 1;
/// PCR lead over the DTS, in 90 kHz ticks (0.7 s).
pub const PCR_DELAY: u64 = 63_000;

const AUD: [u8; 6] = [0, 0, 0, 1, 0x09, 0xF0];

/// A copied (non-video) stream of the output program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioTrack {
    pub stream_type: u8,
    /// PMT ES_info descriptors, verbatim.
    pub descriptors: Vec<u8>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MuxerConfig {
    /// Copied streams; their PIDs are assigned from [`FIRST_AUDIO_PID`] in this order.
    pub tracks: Vec<AudioTrack>,
}

/// See the module documentation.
#[derive(Debug, Clone)]
pub struct Muxer {
    config: MuxerConfig,
    cc: [u8; 8192],
    psi_written: bool,
}

impl Muxer {
    pub fn new(config: MuxerConfig) -> Self {
        Self { config, cc: [0; 8192], psi_written: false }
    }

    pub fn config(&self) -> &MuxerConfig {
        &self.config
    }

    /// The PID of copied track `i`.
    pub fn track_pid(i: usize) -> u16 {
        FIRST_AUDIO_PID + i as u16
    }

    /// Writes PAT and PMT.
    pub fn write_psi(&mut self, out: &mut Vec<u8>) {
        // PAT (2.4.4.3)
        let mut pat = vec![0x00, 0xB0, 0, 0x00, 0x01, 0xC1, 0x00, 0x00];
        pat.extend_from_slice(&PROGRAM_NUMBER.to_be_bytes());
        pat.extend_from_slice(&(0xE000 | PMT_PID).to_be_bytes());
        self.write_section(PAT_PID, pat, out);
        // PMT (2.4.4.8)
        let mut pmt = vec![0x02, 0xB0, 0];
        pmt.extend_from_slice(&PROGRAM_NUMBER.to_be_bytes());
        pmt.extend_from_slice(&[0xC1, 0x00, 0x00]);
        pmt.extend_from_slice(&(0xE000 | VIDEO_PID).to_be_bytes());
        pmt.extend_from_slice(&[0xF0, 0x00]);
        pmt.push(stream_type::H264);
        pmt.extend_from_slice(&(0xE000 | VIDEO_PID).to_be_bytes());
        pmt.extend_from_slice(&[0xF0, 0x00]);
        for (i, t) in self.config.tracks.iter().enumerate() {
            pmt.push(t.stream_type);
            pmt.extend_from_slice(&(0xE000 | Self::track_pid(i)).to_be_bytes());
            let dl = t.descriptors.len().min(0x3FF) as u16;
            pmt.extend_from_slice(&(0xF000 | dl).to_be_bytes());
            pmt.extend_from_slice(&t.descriptors[..usize::from(dl)]);
        }
        self.write_section(PMT_PID, pmt, out);
        self.psi_written = true;
    }

    /// `section` is the section without its length bytes filled and without CRC.
    fn write_section(&mut self, pid: u16, mut section: Vec<u8>, out: &mut Vec<u8>) {
        let len = section.len() - 3 + 4; // bytes after section_length, CRC included
        section[1] = 0xB0 | ((len >> 8) as u8 & 0x0F);
        section[2] = len as u8;
        let crc = crc32_mpeg2(&section);
        section.extend_from_slice(&crc.to_be_bytes());
        // pointer_field + section, stuffed with 0xFF; a PMT with many tracks may span packets.
        let mut payload = vec![0u8];
        payload.extend_from_slice(&section);
        let mut first = true;
        for chunk in payload.chunks(PACKET_SIZE - 4) {
            let start = out.len();
            out.extend_from_slice(&[SYNC_BYTE, 0, 0, 0]);
            self.header(&mut out[start..start + 4], pid, first, false, true);
            out.extend_from_slice(chunk);
            out.resize(start + PACKET_SIZE, 0xFF);
            first = false;
        }
    }

    fn header(&mut self, h: &mut [u8], pid: u16, start: bool, af: bool, payload: bool) {
        h[0] = SYNC_BYTE;
        h[1] = (if start { 0x40 } else { 0 }) | ((pid >> 8) as u8 & 0x1F);
        h[2] = pid as u8;
        let cc = &mut self.cc[usize::from(pid)];
        h[3] = (if af { 0x20 } else { 0 }) | (if payload { 0x10 } else { 0 }) | *cc;
        if payload {
            *cc = (*cc + 1) & 0x0F;
        }
    }

    /// Writes one encoded H.264 access unit (Annex B). PAT/PMT precede keyframes.
    pub fn write_video(&mut self, au: &[u8], pts: u64, dts: u64, keyframe: bool, out: &mut Vec<u8>) {
        if keyframe || !self.psi_written {
            self.write_psi(out);
        }
        let has_aud =
            au.len() > 4 && (au[..4] == [0, 0, 0, 1] && au[4] & 0x1F == 9 || au[..3] == [0, 0, 1] && au[3] & 0x1F == 9);
        let mut es = Vec::with_capacity(au.len() + AUD.len());
        if !has_aud {
            es.extend_from_slice(&AUD);
        }
        es.extend_from_slice(au);
        let pes = pes_header(0xE0, Some(pts), Some(dts), None);
        let pcr = dts.wrapping_sub(PCR_DELAY) & (TIMESTAMP_WRAP - 1);
        self.write_pes(VIDEO_PID, &pes, &es, Some(pcr), keyframe, out);
    }

    /// Writes one PES of copied track `track` with its original stream_id, timestamps and payload.
    pub fn write_track(
        &mut self,
        track: usize,
        stream_id: u8,
        pts: Option<u64>,
        dts: Option<u64>,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) {
        if !self.psi_written {
            self.write_psi(out);
        }
        let pes = pes_header(stream_id, pts, dts, Some(payload.len()));
        self.write_pes(Self::track_pid(track), &pes, payload, None, false, out);
    }

    fn write_pes(
        &mut self,
        pid: u16,
        header: &[u8],
        es: &[u8],
        pcr: Option<u64>,
        random_access: bool,
        out: &mut Vec<u8>,
    ) {
        let total = header.len() + es.len();
        let mut written = 0usize;
        let byte_at = |i: usize| -> &[u8] { if i < header.len() { &header[i..] } else { &es[i - header.len()..] } };
        let mut first = true;
        while written < total {
            let start = out.len();
            out.resize(start + PACKET_SIZE, 0xFF);
            // Adaptation field: PCR and random access on the first packet, stuffing on the last.
            let mut af: Vec<u8> = Vec::new();
            if first && (pcr.is_some() || random_access) {
                let mut flags = 0u8;
                if random_access {
                    flags |= 0x40;
                }
                af.push(0);
                if let Some(pcr) = pcr {
                    flags |= 0x10;
                    af.extend_from_slice(&encode_pcr(pcr));
                }
                af[0] = flags;
            }
            let af_bytes = if af.is_empty() { 0 } else { 1 + af.len() };
            let room = PACKET_SIZE - 4 - af_bytes;
            let remaining = total - written;
            let (af_len, take) = if remaining >= room {
                (if af.is_empty() { None } else { Some(af.len()) }, room)
            } else {
                // Stuff the adaptation field so the payload ends exactly at the packet end.
                let needed = PACKET_SIZE - 4 - remaining; // bytes of adaptation field incl. length
                if af.is_empty() && needed >= 2 {
                    af.push(0);
                }
                (Some(needed - 1), remaining)
            };
            let has_af = af_len.is_some();
            let pkt = &mut out[start..start + PACKET_SIZE];
            self.header(&mut pkt[..4], pid, first, has_af, true);
            let mut pos = 4;
            if let Some(len) = af_len {
                pkt[4] = len as u8;
                pkt[5..5 + af.len().min(len)].copy_from_slice(&af[..af.len().min(len)]);
                // The rest of the field (already 0xFF) is stuffing.
                pos = 5 + len;
            }
            let mut copied = 0;
            while copied < take {
                let src = byte_at(written + copied);
                let n = src.len().min(take - copied);
                pkt[pos + copied..pos + copied + n].copy_from_slice(&src[..n]);
                copied += n;
            }
            written += take;
            first = false;
        }
    }
}

fn encode_timestamp(prefix: u8, ts: u64) -> [u8; 5] {
    let ts = ts & (TIMESTAMP_WRAP - 1);
    [
        (prefix << 4) | (((ts >> 30) as u8 & 0x07) << 1) | 1,
        (ts >> 22) as u8,
        (((ts >> 15) as u8) << 1) | 1,
        (ts >> 7) as u8,
        ((ts as u8) << 1) | 1,
    ]
}

fn encode_pcr(base: u64) -> [u8; 6] {
    let base = base & (TIMESTAMP_WRAP - 1);
    [(base >> 25) as u8, (base >> 17) as u8, (base >> 9) as u8, (base >> 1) as u8, ((base as u8 & 1) << 7) | 0x7E, 0]
}

/// A PES header with PTS and, when it differs, DTS. `payload_len` sets PES_packet_length
/// (0, "unbounded", for video or when it would not fit 16 bits).
fn pes_header(stream_id: u8, pts: Option<u64>, dts: Option<u64>, payload_len: Option<usize>) -> Vec<u8> {
    let dts = dts.filter(|d| Some(*d) != pts);
    let mut h = vec![0, 0, 1, stream_id, 0, 0, 0x80, 0, 0];
    match (pts, dts) {
        (Some(p), Some(d)) => {
            h[7] = 0xC0;
            h.extend_from_slice(&encode_timestamp(0x3, p));
            h.extend_from_slice(&encode_timestamp(0x1, d));
        }
        (Some(p), None) => {
            h[7] = 0x80;
            h.extend_from_slice(&encode_timestamp(0x2, p));
        }
        _ => {}
    }
    h[8] = (h.len() - 9) as u8;
    if let Some(len) = payload_len {
        let pes_len = len + h.len() - 6;
        if pes_len <= 0xFFFF {
            h[4..6].copy_from_slice(&(pes_len as u16).to_be_bytes());
        }
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_encode_as_spec() {
        // 2.4.3.7: '0010' PTS[32..30] marker PTS[29..15] marker PTS[14..0] marker
        assert_eq!(encode_timestamp(0x2, 0), [0x21, 0, 1, 0, 1]);
        assert_eq!(encode_timestamp(0x2, (1 << 33) - 1), [0x2F, 0xFF, 0xFF, 0xFF, 0xFF]);
    }

    #[test]
    fn every_packet_is_188_bytes_with_sync() {
        let mut m = Muxer::new(MuxerConfig::default());
        let mut out = Vec::new();
        for len in [0usize, 1, 170, 171, 172, 183, 184, 185, 1000, 5000] {
            m.write_video(&vec![0xAB; len], 900_000, 897_000, len % 2 == 0, &mut out);
        }
        assert_eq!(out.len() % PACKET_SIZE, 0);
        assert!(out.chunks(PACKET_SIZE).all(|p| p[0] == SYNC_BYTE));
    }
}
