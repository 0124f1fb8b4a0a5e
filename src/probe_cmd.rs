//! `zerohop probe`: what the engine sees in a segment and whether it can transcode it (exit
//! status 2 when it cannot).

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};

pub fn probe(input: &Path) -> Result<ExitCode> {
    let data = std::fs::read(input).with_context(|| format!("reading {}", input.display()))?;
    let r = zerohop_engine::probe::probe(&data);
    println!("{}: {} bytes, {} TS packets", input.display(), data.len(), r.demux.packets);
    let d = &r.demux;
    if d.continuity_errors + d.transport_errors + d.sync_losses + d.bad_sections + d.bad_pes_headers > 0 {
        println!(
            "  container damage: {} continuity errors, {} transport errors, {} sync losses, {} bad sections, {} bad PES headers",
            d.continuity_errors, d.transport_errors, d.sync_losses, d.bad_sections, d.bad_pes_headers
        );
    }
    if let Some(p) = &r.program {
        println!("  program {} (PMT PID {}, PCR PID {})", p.program_number, p.pmt_pid, p.pcr_pid);
    }
    for s in &r.streams {
        let start = s.first_pts.map_or_else(|| "-".into(), |p| format!("{:.3} s", p as f64 / 90_000.0));
        println!(
            "  PID {:>5}  0x{:02x} {:<22} {:>5} PES, first PTS {start}",
            s.pid, s.stream_type, s.codec, s.pes_packets
        );
    }
    if let Some(sps) = &r.sps {
        println!(
            "  video: H.264 {} level {}.{}, {}x{}, {}-bit, chroma_format_idc {}, {}, {}",
            sps.profile_name(),
            sps.level_idc / 10,
            sps.level_idc % 10,
            sps.width,
            sps.height,
            sps.bit_depth_luma,
            sps.chroma_format_idc,
            if sps.frame_mbs_only { "progressive" } else { "interlaced" },
            sps.fps.map_or_else(|| "no VUI frame rate".into(), |f| format!("{f:.3} fps"))
        );
        println!("  pictures: {} access units, {} IDR, {} decoded", r.access_units, r.idr_frames, r.frames_decoded);
    }
    println!("  OpenH264 assembly: {}", zerohop_engine::build_info::OPENH264_ASM);
    println!("  CPU encoder (--cpu-encoder auto): {}", crate::encoder_args::describe_auto());
    match &r.verdict {
        Ok(()) => {
            println!("  transcodable: yes");
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            println!("  transcodable: no [{}] {e}", e.code());
            Ok(ExitCode::from(crate::exit::Exit::NotTranscodable))
        }
    }
}
